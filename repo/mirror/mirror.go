package mirror

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/fwctl/fwctl/internal/atomicfile"
	"github.com/fwctl/fwctl/manifests"
	"github.com/fwctl/fwctl/repo/blob"
	"github.com/fwctl/fwctl/repo/bundle"
	"github.com/fwctl/fwctl/repo/layout"
	"github.com/fwctl/fwctl/repo/online/director"
	"github.com/fwctl/fwctl/repo/server"
	"github.com/fwctl/fwctl/repo/verify"
)

// Mirror pulls Upstream into Dir and serves the last state that verified.
// It holds no signing keys: it cannot re-sign a timestamp, so devices
// behind it see upstream's timestamps (and their expiry) unchanged.
type Mirror struct {
	Upstream verify.Source
	// Dir holds one directory per verified state (state-N, N the
	// timestamp version) and the symlink current to the one served.
	Dir string
	// Root is the trusted root the mirror verifies from (as provisioned
	// on devices).
	Root []byte
	Log  *slog.Logger
	// Director, when set, mirrors a director's metadata for the devices
	// of the site too (see Director).
	Director *Director

	cur     atomic.Pointer[state]
	serve   http.Handler
	version int64
}

type state struct {
	dir string
	h   http.Handler
	// targets are the state's verified targets (nil for a state loaded
	// by Open, until first needed).
	targets []verify.Target
}

// Open loads the state a previous run left (Dir/current), if any.
func (m *Mirror) Open() error {
	if m.Log == nil {
		m.Log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(m.Dir, 0o755); err != nil {
		return err
	}
	m.serve = http.HandlerFunc(m.serveImages)
	if m.Director != nil {
		for _, id := range m.Director.Devices {
			if !manifests.ValidDeviceID(id) {
				return fmt.Errorf("director device %q: not a valid device ID", id)
			}
		}
		r, err := metadata.Root().FromBytes(m.Director.Root)
		if err != nil {
			return fmt.Errorf("director root: %w", err)
		}
		// The provisioned root is served too, as upstream does (devices
		// re-read it under their device path; the root hint counts from
		// it).
		roots := filepath.Join(m.directorStore(), manifests.DirectorRoot)
		if err := os.MkdirAll(roots, 0o755); err != nil {
			return err
		}
		first := filepath.Join(roots, layout.Versioned(r.Signed.Version, metadata.ROOT))
		if _, err := os.Stat(first); errors.Is(err, os.ErrNotExist) {
			if err := atomicfile.Write(first, m.Director.Root, 0o644); err != nil {
				return err
			}
		}
		m.serve = director.Handler(blob.Dir(m.directorStore()), m.serve)
	}
	target, err := os.Readlink(filepath.Join(m.Dir, "current"))
	if err != nil {
		return nil // nothing mirrored yet
	}
	return m.activate(filepath.Join(m.Dir, target), 0, nil)
}

func (m *Mirror) activate(dir string, version int64, targets []verify.Target) error {
	h, err := server.New(server.Options{Dir: dir, Logger: m.Log, NoAccessLog: true})
	if err != nil {
		return err
	}
	m.cur.Store(&state{dir: dir, h: h, targets: targets})
	if version > 0 {
		m.version = version
	}
	return nil
}

// Sync syncs the image repository and then, with Director set, each
// device's director metadata (checked against the image state served).
// Each keeps its last verified state on failure.
func (m *Mirror) Sync(ctx context.Context) error {
	err := m.syncImages(ctx)
	if m.Director != nil {
		err = errors.Join(err, m.syncDirector(ctx))
	}
	return err
}

// syncImages verifies upstream exactly as a device would (root chain from Root,
// thresholds, versions, expiry, every target's length and hash) and, only
// if all of it verifies, writes it to a new state directory and switches
// to it whole. On any failure the last verified state stays served.
func (m *Mirror) syncImages(ctx context.Context) error {
	res, err := verify.Verify(ctx, m.Upstream, m.Root, time.Now())
	if err != nil {
		return fmt.Errorf("upstream %s does not verify, keeping the last verified state: %w", m.Upstream, err)
	}
	v := res.Versions[metadata.TIMESTAMP]
	if v == m.version && m.cur.Load() != nil {
		return nil
	}
	var all []string
	for _, t := range res.Targets {
		all = append(all, t.Path)
	}
	if len(all) == 0 {
		return fmt.Errorf("upstream %s has no targets", m.Upstream)
	}
	plan, err := bundle.Prepare(ctx, m.Upstream, bundle.Options{Releases: all, TrustedRoot: m.Root, FromRootVersion: 1})
	if err != nil {
		return fmt.Errorf("upstream %s, keeping the last verified state: %w", m.Upstream, err)
	}
	name := "state-" + strconv.FormatInt(v, 10) + "-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	dir := filepath.Join(m.Dir, name)
	if err := plan.WriteDir(ctx, m.Upstream, dir+"/"); err != nil {
		os.RemoveAll(dir)
		return fmt.Errorf("copy upstream state: %w", err)
	}
	// Re-verify what was written: the copy, not the upstream, is served.
	copied, err := verify.VerifyDir(dir, m.Root, time.Now())
	if err != nil {
		os.RemoveAll(dir)
		return fmt.Errorf("copied state does not verify, keeping the last verified state: %w", err)
	}
	old := m.cur.Load()
	if err := m.activate(dir, v, copied.Targets); err != nil {
		return err
	}
	tmp := filepath.Join(m.Dir, ".current.tmp")
	os.Remove(tmp)
	if err := os.Symlink(name, tmp); err == nil {
		os.Rename(tmp, filepath.Join(m.Dir, "current"))
	}
	if old != nil && old.dir != dir {
		os.RemoveAll(old.dir)
	}
	m.Log.Info("mirrored a verified state", "upstream", m.Upstream.String(), "timestamp_version", v, "targets", len(all))
	return nil
}

// Run syncs every interval until ctx ends, logging failures.
func (m *Mirror) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if err := m.Sync(ctx); err != nil {
			m.Log.Warn("mirror sync failed; serving the last verified state", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// ServeHTTP serves the current verified state (503 before the first) and,
// with Director set, the verified director metadata under /director/.
// Call Open first.
func (m *Mirror) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	m.serve.ServeHTTP(w, r)
}

func (m *Mirror) serveImages(w http.ResponseWriter, r *http.Request) {
	s := m.cur.Load()
	if s == nil {
		http.Error(w, "mirror has no verified state yet", http.StatusServiceUnavailable)
		return
	}
	s.h.ServeHTTP(w, r)
}
