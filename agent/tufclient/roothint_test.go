package tufclient

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// hinting makes the simulator answer timestamp.json with RootHintHeader
// naming its newest root, as fwrepo does.
func (s *sim) hinting() {
	s.hook = func(w http.ResponseWriter, r *http.Request) bool {
		if r.URL.Path == "/metadata/timestamp.json" {
			s.mu.Lock()
			v := s.root.Signed.Version
			s.mu.Unlock()
			w.Header().Set(RootHintHeader, strconv.FormatInt(v, 10))
		}
		return false
	}
}

func (s *sim) takeRequests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.requests
	s.requests = nil
	return r
}

func updateOnce(t *testing.T, s *sim, dir string, after time.Duration) *Client {
	t.Helper()
	c := s.client(dir)
	c.RefTime = s.now.Add(after)
	root, err := c.TrustedRoot()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Update(context.Background(), root); err != nil {
		t.Fatal(err)
	}
	return c
}

// A poll with nothing new costs one request (timestamp.json) against a
// server that hints its root version; the first poll, and one at least
// every RootProbeInterval, still asks for root N+1 first.
func TestNoUpdatePollIsOneRequest(t *testing.T) {
	s := newSim(t)
	s.hinting()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "root.json"), s.rootBytes(1), 0o644)
	updateOnce(t, s, dir, 0)
	if got, want := s.takeRequests(), []string{"/metadata/2.root.json", "/metadata/timestamp.json", "/metadata/1.snapshot.json", "/metadata/1.targets.json"}; !slices.Equal(got, want) {
		t.Fatalf("first update requested %v, want %v", got, want)
	}
	for i := range 3 {
		updateOnce(t, s, dir, time.Duration(i+1)*time.Hour)
		if got, want := s.takeRequests(), []string{"/metadata/timestamp.json"}; !slices.Equal(got, want) {
			t.Fatalf("no-update poll %d requested %v, want %v", i, got, want)
		}
	}
	updateOnce(t, s, dir, DefaultRootProbeInterval+time.Hour)
	if got, want := s.takeRequests(), []string{"/metadata/2.root.json", "/metadata/timestamp.json"}; !slices.Equal(got, want) {
		t.Fatalf("poll after the probe interval requested %v, want %v", got, want)
	}
	updateOnce(t, s, dir, DefaultRootProbeInterval+2*time.Hour)
	if got, want := s.takeRequests(), []string{"/metadata/timestamp.json"}; !slices.Equal(got, want) {
		t.Fatalf("poll after that requested %v, want %v", got, want)
	}
}

// Root rotation is found on the next poll whether or not the server
// hints: with the hint through it, without (a static file server or CDN)
// through the probe TUF's workflow makes on every update, and also when
// the hint disappears after it was seen.
func TestRootRotationFound(t *testing.T) {
	for _, tt := range []struct {
		name        string
		hint, after bool // the server hints before / after the rotation
	}{{"hinted", true, true}, {"static server", false, false}, {"hint gone", true, false}, {"hint appears", false, true}} {
		t.Run(tt.name, func(t *testing.T) {
			s := newSim(t)
			if tt.hint {
				s.hinting()
			}
			dir := t.TempDir()
			os.WriteFile(filepath.Join(dir, "root.json"), s.rootBytes(1), 0o644)
			updateOnce(t, s, dir, 0)
			updateOnce(t, s, dir, time.Minute)
			// Rotate the root and the timestamp key: the old timestamp
			// key no longer verifies anything.
			s.newRoot(func(r *metadata.RootType) {})
			s.replaceRootKeys(metadata.TIMESTAMP)
			s.newRoot(nil)
			s.bump(false)
			s.publish()
			s.hook = nil
			if tt.after {
				s.hinting()
			}
			s.takeRequests()
			c := updateOnce(t, s, dir, 2*time.Minute)
			got, _ := c.TrustedRoot()
			if string(got) != string(s.rootBytes(3)) {
				t.Fatalf("trusted root is not version 3 after the rotation (requests %v)", s.takeRequests())
			}
			// And the next poll is cheap again with a hint, or probes
			// without one.
			s.takeRequests()
			updateOnce(t, s, dir, 3*time.Minute)
			want := []string{"/metadata/timestamp.json"}
			if !tt.after {
				want = []string{"/metadata/4.root.json", "/metadata/timestamp.json"}
			}
			if got := s.takeRequests(); !slices.Equal(got, want) {
				t.Fatalf("poll after the rotation requested %v, want %v", got, want)
			}
		})
	}
}

// A hint that lies low (a network attacker, a stale server) withholds a
// new root no longer than RootProbeInterval, as withholding by a 404
// would; and a negative interval probes on every update.
func TestLowHintBoundedByInterval(t *testing.T) {
	s := newSim(t)
	s.hinting()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "root.json"), s.rootBytes(1), 0o644)
	updateOnce(t, s, dir, 0)
	s.newRoot(nil)
	s.bump(false)
	s.publish()
	s.hook = func(w http.ResponseWriter, r *http.Request) bool {
		if r.URL.Path == "/metadata/timestamp.json" {
			w.Header().Set(RootHintHeader, "1")
		}
		return false
	}
	c := updateOnce(t, s, dir, time.Hour)
	if got, _ := c.TrustedRoot(); string(got) != string(s.rootBytes(1)) {
		t.Fatal("root 2 found although the hint said 1 within the probe interval")
	}
	c = updateOnce(t, s, dir, DefaultRootProbeInterval+time.Hour)
	if got, _ := c.TrustedRoot(); string(got) != string(s.rootBytes(2)) {
		t.Fatal("root 2 not found by the probe after the interval")
	}
	s.takeRequests()
	for i := range 2 {
		c = s.client(dir)
		c.RootProbeInterval = -1
		c.RefTime = s.now.Add(DefaultRootProbeInterval + time.Duration(2+i)*time.Hour)
		root, _ := c.TrustedRoot()
		if _, err := c.Update(context.Background(), root); err != nil {
			t.Fatal(err)
		}
		if got, want := s.takeRequests(), []string{"/metadata/3.root.json", "/metadata/timestamp.json"}; !slices.Equal(got, want) {
			t.Fatalf("a negative RootProbeInterval: requested %v, want %v", got, want)
		}
	}
}

// A timestamp signed by a key of a root the hint does not name yet (a
// stale hint) is not an error: the client probes as TUF orders it.
func TestStaleHintProbes(t *testing.T) {
	s := newSim(t)
	s.hook = func(w http.ResponseWriter, r *http.Request) bool {
		if r.URL.Path == "/metadata/timestamp.json" {
			w.Header().Set(RootHintHeader, "1")
		}
		return false
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "root.json"), s.rootBytes(1), 0o644)
	updateOnce(t, s, dir, 0)
	s.replaceRootKeys(metadata.TIMESTAMP)
	s.newRoot(nil)
	s.bump(false)
	s.publish()
	s.takeRequests()
	c := updateOnce(t, s, dir, time.Hour)
	if got, _ := c.TrustedRoot(); string(got) != string(s.rootBytes(2)) {
		t.Fatalf("root 2 not found (requests %v)", s.takeRequests())
	}
	if got, want := s.takeRequests(), []string{"/metadata/timestamp.json", "/metadata/2.root.json", "/metadata/3.root.json", "/metadata/timestamp.json", "/metadata/2.snapshot.json"}; !slices.Equal(got, want) {
		t.Fatalf("requested %v, want %v", got, want)
	}
}
