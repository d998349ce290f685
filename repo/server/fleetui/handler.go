package fleetui

import (
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/fwctl/fwctl/repo/inventory/rollout"
)

// Prefix is where the fleet view lives.
const Prefix = "/ui/"

// Cookie names: the session, and the login form's CSRF token (before
// there is a session).
const (
	SessionCookie = "fwrepo_session"
	loginCookie   = "fwrepo_login"
)

// Defaults of Options.
const (
	DefaultSessionTTL = 8 * time.Hour
	DefaultRefresh    = 5 * time.Second
	DefaultMaxDevices = 1000
	maxSessions       = 10000
	maxForm           = 4 << 10
)

// Options configure Handler.
type Options struct {
	Fleet Fleet
	Log   *slog.Logger
	// SessionTTL is how long a login lasts (default DefaultSessionTTL).
	SessionTTL time.Duration
	// Refresh is the pages' reload interval (default DefaultRefresh).
	Refresh time.Duration
	// MaxDevices bounds the devices listed on the page.
	MaxDevices int
	// Now is the clock (default time.Now).
	Now func() time.Time
}

type handler struct {
	opt      Options
	sessions sessions
	mux      *http.ServeMux
}

// Handler serves the fleet view under Prefix (and redirects /ui there).
func Handler(opt Options) http.Handler {
	if opt.Log == nil {
		opt.Log = slog.New(slog.DiscardHandler)
	}
	if opt.SessionTTL <= 0 {
		opt.SessionTTL = DefaultSessionTTL
	}
	if opt.Refresh <= 0 {
		opt.Refresh = DefaultRefresh
	}
	if opt.MaxDevices <= 0 {
		opt.MaxDevices = DefaultMaxDevices
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	h := &handler{opt: opt, sessions: sessions{max: maxSessions}, mux: http.NewServeMux()}
	h.mux.HandleFunc("GET /ui", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, Prefix, http.StatusSeeOther) })
	h.mux.HandleFunc("GET "+Prefix+"login", h.loginForm)
	h.mux.HandleFunc("POST "+Prefix+"login", h.login)
	h.mux.HandleFunc("POST "+Prefix+"logout", h.authed(h.logout))
	h.mux.HandleFunc("GET "+Prefix+"{$}", h.authed(h.fleet))
	h.mux.HandleFunc("GET "+Prefix+"devices/{id}", h.authed(h.device))
	h.mux.HandleFunc("POST "+Prefix+"rollouts/{id}/{action}", h.authed(h.act))
	h.mux.HandleFunc(Prefix, h.authed(func(w http.ResponseWriter, r *http.Request, _ *session, _ string) {
		h.fail(w, http.StatusNotFound, "no such page")
	}))
	return http.NewCrossOriginProtection().Handler(h)
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("Cache-Control", "no-store")
	hd.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("Referrer-Policy", "no-referrer")
	h.mux.ServeHTTP(w, r)
}

// authed wraps a page that needs a session: without one (or with an
// expired one, or a revoked token) a GET goes to the login form and
// anything else is refused with 403. POSTs need the session's CSRF token.
func (h *handler) authed(f func(http.ResponseWriter, *http.Request, *session, string)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c, err := r.Cookie(SessionCookie)
		var s *session
		if err == nil {
			s = h.sessions.get(c.Value, h.opt.Now())
		}
		if s != nil {
			// The token is checked again: a revoked one ends the session.
			op, err := h.opt.Fleet.Authenticate(r.Context(), s.token)
			switch {
			case errors.Is(err, ErrBadToken):
				h.sessions.drop(c.Value)
				s = nil
			case err != nil:
				h.opt.Log.Error("fleet view: authenticate", "err", err)
				h.fail(w, http.StatusServiceUnavailable, "cannot check the session's token now; retry later")
				return
			default:
				s.op = op
			}
		}
		if s == nil {
			if r.Method == http.MethodGet || r.Method == http.MethodHead {
				http.Redirect(w, r, Prefix+"login", http.StatusSeeOther)
				return
			}
			h.fail(w, http.StatusForbidden, "log in first")
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			r.Body = http.MaxBytesReader(w, r.Body, maxForm)
			if err := r.ParseForm(); err != nil || !sameToken(r.PostFormValue("csrf"), s.csrf) {
				h.opt.Log.Info("fleet view: request without the session's CSRF token refused", "path", r.URL.Path, "operator", s.op.Name, "remote", r.RemoteAddr)
				h.fail(w, http.StatusForbidden, "the form is stale or was not sent by this page (CSRF token missing or wrong): reload the page and retry")
				return
			}
		}
		f(w, r, s, c.Value)
	}
}

func (h *handler) secure(r *http.Request) bool { return r.TLS != nil }

func (h *handler) setCookie(w http.ResponseWriter, r *http.Request, name, value, path string, maxAge int) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: value, Path: path, MaxAge: maxAge,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: h.secure(r)})
}

func (h *handler) loginForm(w http.ResponseWriter, r *http.Request) {
	h.renderLogin(w, r, http.StatusOK, "")
}

func (h *handler) renderLogin(w http.ResponseWriter, r *http.Request, code int, msg string) {
	csrf := randomID()
	h.setCookie(w, r, loginCookie, csrf, Prefix+"login", 600)
	h.render(w, code, "login", loginPage{CSRF: csrf, Error: msg})
}

func (h *handler) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxForm)
	c, err := r.Cookie(loginCookie)
	if err != nil || r.ParseForm() != nil || !sameToken(r.PostFormValue("csrf"), c.Value) {
		h.renderLogin(w, r, http.StatusForbidden, "The login form expired or was not sent by this page; try again.")
		return
	}
	tok := strings.TrimSpace(r.PostFormValue("token"))
	op, err := h.opt.Fleet.Authenticate(r.Context(), tok)
	if errors.Is(err, ErrBadToken) || err == nil && op == nil {
		h.opt.Log.Info("fleet view: login refused", "remote", r.RemoteAddr)
		h.renderLogin(w, r, http.StatusUnauthorized, "Token not recognised (revoked or mistyped?). Create one with 'fwrepo token create --role viewer|operator NAME'.")
		return
	}
	if err != nil {
		h.opt.Log.Error("fleet view: login", "err", err)
		h.renderLogin(w, r, http.StatusServiceUnavailable, "Cannot check tokens now; retry later.")
		return
	}
	now := h.opt.Now()
	id, ok := h.sessions.add(&session{token: tok, op: op, csrf: randomID(), expires: now.Add(h.opt.SessionTTL)}, now)
	if !ok {
		h.renderLogin(w, r, http.StatusServiceUnavailable, "Too many sessions; retry later.")
		return
	}
	h.setCookie(w, r, loginCookie, "", Prefix+"login", -1)
	h.setCookie(w, r, SessionCookie, id, Prefix, int(h.opt.SessionTTL/time.Second))
	h.opt.Log.Info("fleet view: login", "operator", op.Name, "role", op.Role, "remote", r.RemoteAddr)
	http.Redirect(w, r, Prefix, http.StatusSeeOther)
}

func (h *handler) logout(w http.ResponseWriter, r *http.Request, s *session, id string) {
	h.sessions.drop(id)
	h.setCookie(w, r, SessionCookie, "", Prefix, -1)
	h.opt.Log.Info("fleet view: logout", "operator", s.op.Name)
	http.Redirect(w, r, Prefix+"login", http.StatusSeeOther)
}

// actions the view offers (creating rollouts stays with the CLI and API).
var actions = map[string]bool{rollout.Start: true, rollout.Approve: true, rollout.Pause: true, rollout.Resume: true, rollout.Abort: true}

func (h *handler) act(w http.ResponseWriter, r *http.Request, s *session, _ string) {
	if !s.op.CanChange {
		h.opt.Log.Info("fleet view: change refused to a viewer", "operator", s.op.Name, "path", r.URL.Path)
		h.fail(w, http.StatusForbidden, "token "+s.op.Name+" has role "+s.op.Role+"; changing rollouts needs the operator role")
		return
	}
	id, action := r.PathValue("id"), r.PathValue("action")
	if !actions[action] {
		h.fail(w, http.StatusNotFound, "unknown rollout action")
		return
	}
	if err := h.opt.Fleet.Act(r.Context(), id, action, s.op); err != nil {
		h.opt.Log.Info("fleet view: rollout action failed", "rollout", id, "action", action, "operator", s.op.Name, "err", err)
		h.sessions.setFlash(s, "Could not "+action+" rollout "+id+": "+err.Error())
	} else {
		h.opt.Log.Info("fleet view: rollout action", "rollout", id, "action", action, "operator", s.op.Name)
		h.sessions.setFlash(s, "Rollout "+id+": "+action+" done.")
	}
	http.Redirect(w, r, Prefix+"#rollout-"+url.PathEscape(id), http.StatusSeeOther)
}

func (h *handler) fleet(w http.ResponseWriter, r *http.Request, s *session, _ string) {
	ctx := r.Context()
	rs, err := h.opt.Fleet.Rollouts(ctx)
	if err != nil {
		h.opt.Log.Error("fleet view: rollouts", "err", err)
		h.fail(w, http.StatusServiceUnavailable, "cannot read the rollouts now; retry later")
		return
	}
	devs, err := h.opt.Fleet.Devices(ctx)
	if err != nil {
		h.opt.Log.Error("fleet view: devices", "err", err)
		h.fail(w, http.StatusServiceUnavailable, "cannot read the devices now; retry later")
		return
	}
	p := fleetPage{Operator: s.op, CSRF: s.csrf, Flash: h.sessions.takeFlash(s), Rollouts: rs, Total: len(devs),
		Refresh: int(h.opt.Refresh / time.Second), Now: h.opt.Now()}
	if p.Refresh < 1 {
		p.Refresh = 1
	}
	if len(devs) > h.opt.MaxDevices {
		devs = devs[:h.opt.MaxDevices]
	}
	p.Exposure, p.ExposureError = h.exposure(r)
	if p.Exposure != nil {
		for i := range devs {
			devs[i].Exposed = len(p.Exposure.ByDevice[devs[i].ID])
		}
		for _, n := range p.Exposure.ByDevice {
			if len(n) > 0 {
				p.ExposedDevices++
			}
		}
	}
	p.Devices = devs
	h.render(w, http.StatusOK, "fleet", p)
}

// exposure returns the fleet's exposure, or (when it cannot be answered)
// the message to show instead: the rest of the page does not depend on it.
func (h *handler) exposure(r *http.Request) (*Exposure, string) {
	e, err := h.opt.Fleet.Exposure(r.Context())
	if err != nil {
		h.opt.Log.Error("fleet view: exposure", "err", err)
		return nil, "cannot answer which advisories affect the fleet now: " + err.Error()
	}
	return e, ""
}

// maxEvents bounds the attempts a device page lists ('fwrepo devices
// history' has them all).
const maxEvents = 1000

func (h *handler) device(w http.ResponseWriter, r *http.Request, s *session, _ string) {
	d, err := h.opt.Fleet.Device(r.Context(), r.PathValue("id"), maxEvents)
	if errors.Is(err, ErrNoDevice) {
		h.fail(w, http.StatusNotFound, "no registered device with that ID")
		return
	}
	if err != nil {
		h.opt.Log.Error("fleet view: device", "err", err)
		h.fail(w, http.StatusServiceUnavailable, "cannot read the device now; retry later")
		return
	}
	p := devicePage{Operator: s.op, CSRF: s.csrf, Device: d, MaxEvents: maxEvents, MaxRollouts: MaxDeviceRollouts,
		Refresh: max(int(h.opt.Refresh/time.Second), 1), Now: h.opt.Now()}
	var e *Exposure
	if e, p.ExposureError = h.exposure(r); e != nil {
		p.Advisories, p.PastSupport = e.ByDevice[d.ID], e.PastSupport[d.ID]
		d.Exposed = len(p.Advisories)
	}
	h.render(w, http.StatusOK, "device", p)
}

func (h *handler) fail(w http.ResponseWriter, code int, msg string) {
	h.render(w, code, "error", errorPage{Code: code, Status: http.StatusText(code), Message: msg})
}
