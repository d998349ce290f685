package operator

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/fwctl/fwctl/manifests"
	"github.com/fwctl/fwctl/repo/inventory"
	"github.com/fwctl/fwctl/repo/inventory/rollout"
)

// Prefix is where the operator API lives.
const Prefix = "/api/v1/fleet/"

// maxBody bounds an operator request's body.
const maxBody = 64 << 10

type ctxKey struct{}

// FromContext returns the operator token a request authenticated with
// (nil: none).
func FromContext(ctx context.Context) *inventory.Token {
	t, _ := ctx.Value(ctxKey{}).(*inventory.Token)
	return t
}

// WithToken returns ctx carrying an authenticated token (for other
// front-ends on the same Service, such as the fleet view).
func WithToken(ctx context.Context, t *inventory.Token) context.Context {
	return context.WithValue(ctx, ctxKey{}, t)
}

// Authenticate returns the operator token r carries in "Authorization:
// Bearer TOKEN", or the HTTP status to refuse it with (401).
func Authenticate(db *inventory.DB, r *http.Request) (*inventory.Token, int, error) {
	h := r.Header.Get("Authorization")
	tok, ok := strings.CutPrefix(h, "Bearer ")
	if !ok || tok == "" {
		return nil, http.StatusUnauthorized, errors.New("operator token required: send 'Authorization: Bearer TOKEN' (create one with 'fwrepo token create --role viewer|operator NAME')")
	}
	t, err := db.Authenticate(r.Context(), strings.TrimSpace(tok))
	if errors.Is(err, inventory.ErrBadToken) {
		return nil, http.StatusUnauthorized, err
	}
	if err != nil {
		return nil, http.StatusInternalServerError, err
	}
	return t, 0, nil
}

// Handler serves the operator API under Prefix. Every request needs a
// token: GET needs the viewer role, anything else the operator role.
func Handler(s *Service, log *slog.Logger) http.Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	a := &api{s: s, log: log, mux: http.NewServeMux()}
	read := func(pattern string, f func(*http.Request) (any, error)) { a.route(pattern, inventory.RoleViewer, f) }
	change := func(pattern string, f func(*http.Request) (any, error)) { a.route(pattern, inventory.RoleOperator, f) }
	read("GET "+Prefix+"whoami", func(r *http.Request) (any, error) { return FromContext(r.Context()), nil })
	read("GET "+Prefix+"devices", a.devices)
	read("GET "+Prefix+"devices/{id}", a.device)
	read("GET "+Prefix+"devices/{id}/history", a.history)
	change("POST "+Prefix+"devices/{id}/tags", a.tag)
	change("DELETE "+Prefix+"devices/{id}", a.removeDevice)
	read("GET "+Prefix+"rollouts", func(r *http.Request) (any, error) {
		rs, err := s.DB.Rollouts(r.Context())
		return map[string]any{"rollouts": rs}, err
	})
	read("GET "+Prefix+"rollouts/{id}", func(r *http.Request) (any, error) { return s.DB.Status(r.Context(), r.PathValue("id")) })
	change("POST "+Prefix+"rollouts", a.create)
	change("POST "+Prefix+"rollouts/{id}/{action}", a.act)
	return a
}

type api struct {
	s   *Service
	log *slog.Logger
	mux *http.ServeMux
}

// httpError carries a status.
type httpError struct {
	code int
	err  error
}

func (e *httpError) Error() string { return e.err.Error() }
func (e *httpError) Unwrap() error { return e.err }

func (a *api) route(pattern, role string, f func(*http.Request) (any, error)) {
	a.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		t := FromContext(r.Context())
		if !t.Allows(role) {
			reply(w, http.StatusForbidden, map[string]string{"error": "token " + t.Name + " has role " + t.Role + "; this needs the " + role + " role"})
			return
		}
		v, err := f(r)
		if err != nil {
			code := status(err)
			if code == http.StatusInternalServerError {
				a.log.Error("operator API", "path", r.URL.Path, "err", err)
			}
			reply(w, code, map[string]string{"error": err.Error()})
			return
		}
		code := http.StatusOK
		if r.Method == http.MethodPost && r.Pattern == "POST "+Prefix+"rollouts" {
			code = http.StatusCreated
		}
		reply(w, code, v)
	})
}

func (a *api) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	w.Header().Set("Cache-Control", "no-store")
	// Deny by default: nothing under the prefix, not even a 404, without
	// a valid token.
	t, code, err := Authenticate(a.s.DB, r)
	if err != nil {
		if code == http.StatusUnauthorized {
			w.Header().Set("WWW-Authenticate", `Bearer realm="fwrepo operator API"`)
		}
		reply(w, code, map[string]string{"error": err.Error()})
		a.log.Info("operator request refused", "method", r.Method, "path", r.URL.Path, "status", code, "remote", r.RemoteAddr)
		return
	}
	sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
	a.mux.ServeHTTP(sw, r.WithContext(WithToken(r.Context(), t)))
	a.log.Info("operator request", "method", r.Method, "path", r.URL.Path, "status", sw.code, "token", t.Name, "role", t.Role,
		"duration_ms", time.Since(start).Milliseconds())
}

type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int)        { w.code = code; w.ResponseWriter.WriteHeader(code) }
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func status(err error) int {
	var he *httpError
	switch {
	case errors.As(err, &he):
		return he.code
	case errors.Is(err, inventory.ErrUnknownDevice), errors.Is(err, inventory.ErrDeviceRemoved), errors.Is(err, inventory.ErrUnknownRollout):
		return http.StatusNotFound
	case errors.Is(err, rollout.ErrInvalidSpec), errors.Is(err, inventory.ErrInvalidTag), errors.Is(err, inventory.ErrNoDevices),
		errors.Is(err, manifests.ErrInvalidAssignment):
		return http.StatusBadRequest
	case errors.Is(err, rollout.ErrApproval):
		return http.StatusForbidden
	case errors.Is(err, rollout.ErrTransition), errors.Is(err, inventory.ErrRolloutExists), errors.Is(err, inventory.ErrDeviceBusy),
		errors.Is(err, inventory.ErrConflict):
		return http.StatusConflict
	}
	return http.StatusInternalServerError
}

func decode(r *http.Request, v any) error {
	b, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, maxBody))
	if err != nil {
		return &httpError{http.StatusBadRequest, err}
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return &httpError{http.StatusBadRequest, errors.New("request body: " + err.Error())}
	}
	return nil
}

// DeviceList is the answer of GET devices: the devices (filtered by
// ?tag=key=value, repeatable).
type DeviceList struct {
	Devices []*inventory.Device `json:"devices"`
}

func (a *api) devices(r *http.Request) (any, error) {
	filter, err := inventory.ParseTags(r.URL.Query()["tag"])
	if err != nil {
		return nil, err
	}
	devs, err := a.s.DB.Group(r.Context(), filter)
	if devs == nil {
		devs = []*inventory.Device{}
	}
	return DeviceList{Devices: devs}, err
}

// DeviceDetail is the answer of GET devices/{id}.
type DeviceDetail struct {
	*inventory.Device
	// Rollout is the rollout the device is in that has not ended.
	Rollout *inventory.Rollout `json:"rollout,omitempty"`
}

func (a *api) device(r *http.Request) (any, error) {
	dev, err := a.s.DB.Device(r.Context(), r.PathValue("id"))
	if err != nil {
		return nil, err
	}
	ro, err := a.s.DB.DeviceRollout(r.Context(), dev.ID)
	return DeviceDetail{Device: dev, Rollout: ro}, err
}

func (a *api) history(r *http.Request) (any, error) {
	limit, _ := strconv.Atoi(r.URL.Query().Get("limit"))
	ev, err := a.s.DB.History(r.Context(), r.PathValue("id"), limit)
	return map[string]any{"device_id": r.PathValue("id"), "events": ev}, err
}

// TagRequest is the body of POST devices/{id}/tags.
type TagRequest struct {
	Set    map[string]string `json:"set,omitempty"`
	Remove []string          `json:"remove,omitempty"`
}

func (a *api) tag(r *http.Request) (any, error) {
	var req TagRequest
	if err := decode(r, &req); err != nil {
		return nil, err
	}
	id := r.PathValue("id")
	if len(req.Set) > 0 {
		if err := a.s.DB.SetTags(r.Context(), id, req.Set); err != nil {
			return nil, err
		}
	}
	if len(req.Remove) > 0 {
		if err := a.s.DB.RemoveTags(r.Context(), id, req.Remove); err != nil {
			return nil, err
		}
	}
	return a.s.DB.Device(r.Context(), id)
}

func (a *api) removeDevice(r *http.Request) (any, error) {
	dev, err := a.s.DB.RemoveDevice(r.Context(), r.PathValue("id"))
	if err != nil {
		return nil, err
	}
	a.log.Info("device removed", "device", dev.ID, "by", FromContext(r.Context()).Name)
	return map[string]any{"device_id": dev.ID, "removed": true}, nil
}

// CreateRequest is the body of POST rollouts.
type CreateRequest struct {
	ID string `json:"id,omitempty"`
	rollout.Spec
}

func (a *api) create(r *http.Request) (any, error) {
	var req CreateRequest
	if err := decode(r, &req); err != nil {
		return nil, err
	}
	return a.s.Create(r.Context(), req.ID, req.Spec, FromContext(r.Context()).Name)
}

func (a *api) act(r *http.Request) (any, error) {
	action := r.PathValue("action")
	switch action {
	case rollout.Start, rollout.Approve, rollout.Pause, rollout.Resume, rollout.Abort:
	default:
		return nil, &httpError{http.StatusNotFound, errors.New("unknown rollout action " + strconv.Quote(action) + ": want start, approve, pause, resume or abort")}
	}
	return a.s.Act(r.Context(), r.PathValue("id"), action, FromContext(r.Context()).Name)
}

func reply(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}
