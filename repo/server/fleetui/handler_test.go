package fleetui

import (
	"context"
	"errors"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// testFleet is a Fleet of fixed contents that records actions.
type testFleet struct {
	mu      sync.Mutex
	tokens  map[string]*Operator
	devices []Device
	rolls   []Rollout
	acted   []string
	events  []Event
	// exposure is Exposure's answer, or exposureErr.
	exposure    *Exposure
	exposureErr error
}

func (f *testFleet) Authenticate(_ context.Context, tok string) (*Operator, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if op := f.tokens[tok]; op != nil {
		return op, nil
	}
	return nil, ErrBadToken
}
func (f *testFleet) Devices(context.Context) ([]Device, error)   { return f.devices, nil }
func (f *testFleet) Rollouts(context.Context) ([]Rollout, error) { return f.rolls, nil }
func (f *testFleet) Device(_ context.Context, id string, maxEvents int) (*DeviceDetail, error) {
	for _, d := range f.devices {
		if d.ID == id {
			v := &DeviceDetail{Device: d, KeyID: "k1", Registered: time.Unix(0, 0), Target: "acme/1.0/fw.img", Events: f.events,
				Rollout: &DeviceRollout{ID: "r1", Status: "running", Phase: "failed"}}
			last := time.Unix(3600, 0)
			v.Rollouts = []DeviceRollout{
				{ID: "r1", Status: "running", Wave: 1, Phase: "failed", Target: "acme/2.0/fw.img", Error: "fell-back: " + xss, LastAt: &last},
				{ID: "r0", Status: "halted", Wave: 0, Phase: "succeeded", Target: "acme/1.9/fw.img", Reason: "halted: " + xss},
			}
			if len(v.Events) > maxEvents {
				v.Events, v.More = v.Events[:maxEvents], true
			}
			return v, nil
		}
	}
	return nil, ErrNoDevice
}
func (f *testFleet) Exposure(context.Context) (*Exposure, error) {
	if f.exposureErr != nil {
		return nil, f.exposureErr
	}
	return f.exposure, nil
}
func (f *testFleet) Act(_ context.Context, id, action string, op *Operator) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.acted = append(f.acted, id+"/"+action+"/"+op.Name)
	return nil
}

const xss = `<script>window.pwned=1</script>"'&`

func newTestFleet() *testFleet {
	seen := time.Now().Add(-time.Minute)
	adv := Advisory{ID: "CVE-2024-7264", Aliases: []string{"DSA-" + xss}, Summary: "curl " + xss, Devices: 1,
		Components: []string{"curl 7.88.1" + xss}, FixedBy: []string{"acme/1.1/fw.img"}}
	return &testFleet{
		events: []Event{
			{At: seen, Received: seen, Target: "acme/2.0/fw.img", Version: "2.0", Outcome: "fell-back", Error: "unhealthy: " + xss},
			{At: seen.Add(-time.Second), Received: seen, Target: "acme/2.0/fw.img", Version: "2.0", Outcome: "installed"},
		},
		exposure: &Exposure{Advisories: []Advisory{adv}, ByDevice: map[string][]Advisory{"gw-" + xss: {adv}},
			PastSupport: map[string]string{"gw-" + xss: "2026-06-30"}},
		tokens: map[string]*Operator{
			"op-token":     {Name: "alice", Role: "operator", CanChange: true},
			"viewer-token": {Name: "victor", Role: "viewer"},
			"bob-token":    {Name: "bob", Role: "operator", CanChange: true},
		},
		devices: []Device{{ID: "gw-" + xss, Hardware: "acme", Version: "1.0" + xss, RunningSlot: "A", LastSeen: &seen, Identity: "file",
			Slots: []Slot{{Name: "A", Status: "confirmed" + xss, Version: "1.0", Running: true}}, LastOutcome: "failed", LastError: "boom " + xss}},
		rolls: []Rollout{{ID: "r1", Target: "acme/2.0/fw.img", Status: "running", Reason: "halted: " + xss,
			Waves: []Wave{{Devices: 2, Succeeded: 1, Failed: 1}}, Failures: []Failure{{DeviceID: "gw-1", Reason: "fell-back: " + xss}},
			Actions: []string{"pause", "abort"}},
			{ID: "r2", Target: "acme/2.0/fw.img", Status: "waiting-approval", Approval: true, CreatedBy: "alice",
				Waves: []Wave{{Devices: 1, Pending: 1}}, Actions: []string{"approve", "abort"}}},
	}
}

type client struct {
	t   *testing.T
	srv *httptest.Server
	c   *http.Client
}

func newClient(t *testing.T, h http.Handler) *client {
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	jar, _ := cookiejar.New(nil)
	return &client{t: t, srv: srv, c: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

func (c *client) do(method, path string, form url.Values) (int, string, http.Header) {
	c.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, _ := http.NewRequest(method, c.srv.URL+path, body)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := c.c.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func csrfOf(t *testing.T, page string) string {
	t.Helper()
	m := csrfRE.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no CSRF token in page:\n%s", page)
	}
	return m[1]
}

// login logs in with tok and returns the fleet page.
func (c *client) login(tok string) (int, string) {
	c.t.Helper()
	_, page, _ := c.do("GET", "/ui/login", nil)
	code, _, hd := c.do("POST", "/ui/login", url.Values{"csrf": {csrfOf(c.t, page)}, "token": {tok}})
	if code != http.StatusSeeOther {
		return code, ""
	}
	if sc := hd.Values("Set-Cookie"); !strings.Contains(strings.Join(sc, ";"), "HttpOnly") || !strings.Contains(strings.Join(sc, ";"), "SameSite=Strict") {
		c.t.Errorf("session cookie %q: want HttpOnly and SameSite=Strict", sc)
	}
	code, page, _ = c.do("GET", "/ui/", nil)
	return code, page
}

func TestDenyByDefault(t *testing.T) {
	c := newClient(t, Handler(Options{Fleet: newTestFleet()}))
	for _, tc := range []struct {
		method, path string
		want         int
	}{
		{"GET", "/ui/", http.StatusSeeOther},
		{"GET", "/ui", http.StatusSeeOther},
		{"GET", "/ui/anything", http.StatusSeeOther},
		{"POST", "/ui/rollouts/r1/pause", http.StatusForbidden},
		{"POST", "/ui/logout", http.StatusForbidden},
		{"PUT", "/ui/", http.StatusForbidden},
	} {
		if code, _, _ := c.do(tc.method, tc.path, url.Values{}); code != tc.want {
			t.Errorf("%s %s without a session: %d, want %d", tc.method, tc.path, code, tc.want)
		}
	}
}

func TestLogin(t *testing.T) {
	f := newTestFleet()
	c := newClient(t, Handler(Options{Fleet: f}))
	if code, _ := c.login("wrong"); code != http.StatusUnauthorized {
		t.Errorf("bad token: %d, want 401", code)
	}
	// A login form post without the form's CSRF token is refused.
	if code, _, _ := c.do("POST", "/ui/login", url.Values{"token": {"op-token"}}); code != http.StatusForbidden {
		t.Errorf("login without CSRF token: %d, want 403", code)
	}
	code, page := c.login("op-token")
	if code != 200 || !strings.Contains(page, "alice") || !strings.Contains(page, `id="pause-r1"`) {
		t.Fatalf("operator's page: %d\n%s", code, page)
	}
	csrf := csrfOf(t, page)
	// A POST without the session's CSRF token is refused and not acted on.
	if code, _, _ := c.do("POST", "/ui/rollouts/r1/pause", url.Values{"csrf": {"forged"}}); code != http.StatusForbidden {
		t.Errorf("POST with a wrong CSRF token: %d, want 403", code)
	}
	if code, _, _ := c.do("POST", "/ui/rollouts/r1/pause", url.Values{"csrf": {csrf}}); code != http.StatusSeeOther {
		t.Errorf("pause: %d, want 303", code)
	}
	if len(f.acted) != 1 || f.acted[0] != "r1/pause/alice" {
		t.Errorf("acted %v, want one pause by alice", f.acted)
	}
	if code, _, _ := c.do("POST", "/ui/logout", url.Values{"csrf": {csrf}}); code != http.StatusSeeOther {
		t.Errorf("logout: %d", code)
	}
	if code, _, _ := c.do("GET", "/ui/", nil); code != http.StatusSeeOther {
		t.Errorf("after logout: %d, want a redirect to the login form", code)
	}
}

func TestViewerCannotChange(t *testing.T) {
	f := newTestFleet()
	c := newClient(t, Handler(Options{Fleet: f}))
	code, page := c.login("viewer-token")
	if code != 200 || strings.Contains(page, "<button type=\"submit\" class=\"action") {
		t.Fatalf("viewer's page: %d, want no action buttons\n%s", code, page)
	}
	if code, _, _ := c.do("POST", "/ui/rollouts/r1/pause", url.Values{"csrf": {csrfOf(t, page)}}); code != http.StatusForbidden {
		t.Errorf("viewer's pause: %d, want 403", code)
	}
	if len(f.acted) != 0 {
		t.Errorf("acted %v for a viewer", f.acted)
	}
}

func TestSessionEnds(t *testing.T) {
	now := time.Now()
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	f := newTestFleet()
	c := newClient(t, Handler(Options{Fleet: f, SessionTTL: time.Hour, Now: clock}))
	if code, _ := c.login("op-token"); code != 200 {
		t.Fatal(code)
	}
	mu.Lock()
	now = now.Add(time.Hour)
	mu.Unlock()
	if code, _, _ := c.do("GET", "/ui/", nil); code != http.StatusSeeOther {
		t.Errorf("expired session: %d, want a redirect to the login form", code)
	}
	// A revoked token ends its sessions at once.
	if code, _ := c.login("op-token"); code != 200 {
		t.Fatal(code)
	}
	f.mu.Lock()
	delete(f.tokens, "op-token")
	f.mu.Unlock()
	if code, _, _ := c.do("GET", "/ui/", nil); code != http.StatusSeeOther {
		t.Errorf("revoked token's session: %d, want a redirect to the login form", code)
	}
}

// TestEscapes: device reports and failure reasons are attacker-influenced;
// the page shows them as text, and forbids scripts anyway.
func TestEscapes(t *testing.T) {
	c := newClient(t, Handler(Options{Fleet: newTestFleet()}))
	code, page := c.login("op-token")
	if code != 200 {
		t.Fatal(code)
	}
	if strings.Contains(page, "<script") {
		t.Errorf("page contains a raw <script>:\n%s", page)
	}
	if n := strings.Count(page, "&lt;script&gt;window.pwned=1&lt;/script&gt;"); n < 6 {
		t.Errorf("escaped script text appears %d times, want at least 6 (device ID, version, slot, error, reason, failure)", n)
	}
	_, _, hd := c.do("GET", "/ui/", nil)
	if csp := hd.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
		t.Errorf("CSP %q", csp)
	}
}

var refreshRE = regexp.MustCompile(`<meta http-equiv="refresh" content="([^"]*)">`)

// TestRefreshReloads: an action redirects to /ui/#rollout-ID, and a meta
// refresh without a URL then targets the document's URL with that
// fragment, which a browser treats as a fragment navigation: the page
// never reloaded after the first click (the fleet view's wave progress
// froze in Chromium). The refresh must name the page's URL without one.
func TestRefreshReloads(t *testing.T) {
	c := newClient(t, Handler(Options{Fleet: newTestFleet(), Refresh: 3 * time.Second}))
	_, page := c.login("op-token")
	code, _, hd := c.do("POST", "/ui/rollouts/r1/pause", url.Values{"csrf": {csrfOf(t, page)}})
	if code != http.StatusSeeOther || !strings.Contains(hd.Get("Location"), "#") {
		t.Fatalf("pause: %d to %q, want 303 to the rollout's fragment", code, hd.Get("Location"))
	}
	_, page, _ = c.do("GET", "/ui/", nil)
	m := refreshRE.FindStringSubmatch(page)
	if m == nil || m[1] != "3; url=/ui/" {
		t.Errorf("meta refresh %q, want %q (the page's URL, no fragment)", m, "3; url=/ui/")
	}
}

// TestApproveButton: the approve button is offered to operators other
// than the rollout's creator; the creator sees that it waits for another.
func TestApproveButton(t *testing.T) {
	for _, tc := range []struct {
		token       string
		button, msg bool
	}{
		{"op-token", false, true}, // alice created r2
		{"bob-token", true, false},
		{"viewer-token", false, false},
	} {
		c := newClient(t, Handler(Options{Fleet: newTestFleet()}))
		_, page := c.login(tc.token)
		if got := strings.Contains(page, `id="approve-r2"`); got != tc.button {
			t.Errorf("%s: approve button shown %v, want %v", tc.token, got, tc.button)
		}
		if got := strings.Contains(page, `id="approval-note-r2"`); got != tc.msg {
			t.Errorf("%s: 'waiting for another operator' shown %v, want %v", tc.token, got, tc.msg)
		}
	}
}

// TestDevicePage: the device list links to each device's page, which
// shows its version, slots, identity strength (a file identity as
// weaker), tags, rollout, every reported attempt and the advisories that
// affect its release, all escaped; an unknown device is a 404.
func TestDevicePage(t *testing.T) {
	f := newTestFleet()
	c := newClient(t, Handler(Options{Fleet: f}))
	_, list := c.login("viewer-token")
	link := regexp.MustCompile(`<a class="device-link" href="([^"]+)">`).FindStringSubmatch(list)
	if link == nil || !strings.Contains(list, `data-exposed="1"`) || !strings.Contains(list, `id="exposed-devices">1<`) {
		t.Fatalf("device list: no link to the device page or no exposure count:\n%s", list)
	}
	href := html.UnescapeString(link[1])
	code, page, _ := c.do("GET", href, nil)
	if code != 200 {
		t.Fatalf("GET %s: %d\n%s", link[1], code, page)
	}
	for _, want := range []string{
		`data-identity="file"`, "file (weaker)", "can be copied off it", // identity strength
		`id="device-version">1.0&lt;script&gt;`, // version, escaped
		`data-status="confirmed&lt;script&gt;`,  // slot state
		`class="event" data-outcome="fell-back"`, `class="event" data-outcome="installed"`, "unhealthy: &lt;script&gt;",
		`id="advisory-CVE-2024-7264"`, "curl 7.88.1&lt;script&gt;", "acme/1.1/fw.img", `id="past-support"`,
		`href="/ui/#rollout-r1"`,
		// every rollout it was in, ended ones included, escaped
		`id="device-rollout-r1" data-rollout="r1" data-status="running" data-wave="2" data-phase="failed"`,
		`id="device-rollout-r0" data-rollout="r0" data-status="halted" data-wave="1" data-phase="succeeded"`,
		`<span class="reason device-rollout-error">fell-back: &lt;script&gt;`, `<span class="reason rollout-history-reason">halted: &lt;script&gt;`,
		"acme/1.9/fw.img", "1970-01-01T01:00:00Z", `href="/ui/#rollout-r0"`,
		`content="5; url=/ui/devices/gw-%3Cscript%3E`, // the refresh reloads this page
	} {
		if !strings.Contains(page, want) {
			t.Errorf("device page lacks %q", want)
		}
	}
	if strings.Contains(page, "<script") {
		t.Errorf("device page contains a raw <script>:\n%s", page)
	}
	if code, _, _ := c.do("GET", "/ui/devices/nope", nil); code != http.StatusNotFound {
		t.Errorf("unknown device: %d, want 404", code)
	}
	// Without a session the page is not shown.
	anon := newClient(t, Handler(Options{Fleet: f}))
	if code, _, _ := anon.do("GET", href, nil); code != http.StatusSeeOther {
		t.Errorf("device page without a session: %d, want a redirect to the login form", code)
	}
}

// TestExposureUnavailable: when exposure cannot be answered the page
// still shows the fleet, and says why exposure is missing.
func TestExposureUnavailable(t *testing.T) {
	f := newTestFleet()
	f.exposureErr = errors.New("stored advisory X: bad " + xss)
	c := newClient(t, Handler(Options{Fleet: f}))
	code, page := c.login("op-token")
	if code != 200 || !strings.Contains(page, `id="rollout-r1"`) || !strings.Contains(page, "cannot answer which advisories affect the fleet now") {
		t.Fatalf("fleet page with exposure failing: %d\n%s", code, page)
	}
	f.exposureErr, f.exposure = nil, &Exposure{}
	_, page, _ = c.do("GET", "/ui/", nil)
	if !strings.Contains(page, "No imported advisory affects a release") {
		t.Errorf("no exposure: page does not say so")
	}
}
