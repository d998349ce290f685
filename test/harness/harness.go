// Package harness is the one test harness shared by the end-to-end tests
// (test/) and the power-loss tests (test/powerloss): a release (a signing
// workspace whose repository is published and served by fwrepo's real
// server), a simulated device's files (two file slots, a kernel command
// line, a config), and, for the bootloader's side, agent.SimulateBoot.
// It is test-only: no product imports it, and it holds no assertions of
// its own beyond failing the test when setting up fails.
package harness

import (
	"encoding/json"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/fwctl/fwctl/repo"
	"github.com/fwctl/fwctl/repo/server"
)

// Hardware is the hardware ID the test devices report.
const Hardware = "acme-gw-v2"

// Release is a signing workspace (plaintext test keys) and its published
// repository.
type Release struct {
	T   testing.TB
	WS  *repo.Workspace
	Dir string // the release's temporary directory
	Pub string // the published repository
	// Wrap, when set, intercepts requests before the repository handler.
	Wrap func(w http.ResponseWriter, r *http.Request, next http.Handler)

	srv *httptest.Server
}

// NewRelease creates a workspace in a temporary directory.
func NewRelease(t testing.TB) *Release {
	t.Helper()
	dir := t.TempDir()
	ws := InitWorkspace(t, filepath.Join(dir, "ws"), repo.InitOptions{})
	return &Release{T: t, WS: ws, Dir: dir, Pub: filepath.Join(dir, "pub")}
}

// InitWorkspace creates a workspace in dir with unencrypted keys (opt's
// other fields as given) and opens it.
func InitWorkspace(t testing.TB, dir string, opt repo.InitOptions) *repo.Workspace {
	t.Helper()
	opt.InsecurePlaintext = true
	if _, err := repo.Init(dir, opt); err != nil {
		t.Fatal(err)
	}
	ws, err := repo.Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	return ws
}

// Add stages img as a firmware target (file name opt.Name, default
// firmware.img; hardware default Hardware).
func (r *Release) Add(img []byte, opt repo.AddOptions) *repo.Target {
	r.T.Helper()
	if len(opt.Hardware) == 0 {
		opt.Hardware = []string{Hardware}
	}
	name := opt.Name
	if name == "" {
		name = "firmware.img"
	}
	dir, err := os.MkdirTemp(r.Dir, "image-")
	if err != nil {
		r.T.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, img, 0o644); err != nil {
		r.T.Fatal(err)
	}
	tg, err := r.WS.AddTarget(p, opt)
	if err != nil {
		r.T.Fatal(err)
	}
	return tg
}

// Publish publishes the workspace to Pub.
func (r *Release) Publish() {
	r.T.Helper()
	if _, err := r.WS.Publish(r.Pub, repo.PublishOptions{}); err != nil {
		r.T.Fatal(err)
	}
}

// Handler is fwrepo's server for Pub, behind Wrap when it is set.
func (r *Release) Handler() http.Handler {
	r.T.Helper()
	// Revalidate at once: tests publish and fetch within one second.
	h, err := server.New(server.Options{Dir: r.Pub, Revalidate: time.Nanosecond})
	if err != nil {
		r.T.Fatal(err)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if r.Wrap != nil {
			r.Wrap(w, req, h)
			return
		}
		h.ServeHTTP(w, req)
	})
}

// Serve serves Pub for the rest of the test and returns its URL (the same
// server on every call).
func (r *Release) Serve() string {
	r.T.Helper()
	if r.srv == nil {
		r.srv = httptest.NewServer(r.Handler())
		r.T.Cleanup(r.srv.Close)
	}
	return r.srv.URL
}

// Root returns the first root.json, the one devices are provisioned with.
func (r *Release) Root() []byte {
	r.T.Helper()
	b, err := os.ReadFile(filepath.Join(r.WS.Dir, "metadata", "1.root.json"))
	if err != nil {
		r.T.Fatal(err)
	}
	return b
}

// Device is the file layout of a simulated device: slot A holds the factory
// image, slot B is empty, the kernel command line says slot A is running,
// and config.json points the agent at them with paths relative to Dir.
type Device struct {
	Dir string
	// Config is the agent configuration written to config.json.
	Config map[string]any
}

// DeviceConfig is the base configuration of a simulated device for
// repository url: file slots slotA.img and slotB.img, state in state/, the
// booted slot from the cmdline file. Callers add the bootloader and tune the
// rest before WriteDevice.
func DeviceConfig(url string) map[string]any {
	return map[string]any{
		"repository": url, "hardware": Hardware, "state_dir": "state",
		"slots":       map[string]string{"A": "slotA.img", "B": "slotB.img"},
		"booted_slot": map[string]string{"cmdline": "cmdline"},
	}
}

// WriteDevice writes a device's files into dir (created if needed).
func WriteDevice(dir string, cfg map[string]any, factory []byte) (*Device, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	d := &Device{Dir: dir, Config: maps.Clone(cfg)}
	if err := os.WriteFile(filepath.Join(dir, "slotA.img"), factory, 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "cmdline"), []byte("console=ttyS0 fwctl.slot=A\n"), 0o644); err != nil {
		return nil, err
	}
	return d, d.WriteConfig()
}

// WriteConfig (re)writes config.json from Config.
func (d *Device) WriteConfig() error {
	b, err := json.MarshalIndent(d.Config, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(d.Dir, "config.json"), b, 0o644)
}

// ConfigPath is the device's config.json.
func (d *Device) ConfigPath() string { return filepath.Join(d.Dir, "config.json") }
