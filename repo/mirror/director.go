package mirror

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/trustedmetadata"

	"github.com/fwctl/fwctl/internal/atomicfile"
	"github.com/fwctl/fwctl/manifests"
	"github.com/fwctl/fwctl/repo/layout"
	"github.com/fwctl/fwctl/repo/verify"
)

// Director mirrors an Uptane-style director's metadata for the devices of
// a site: each device's timestamp, snapshot and targets, and the director
// root chain, pulled as a TUF client from Root and served under the
// upstream's paths (/director/metadata/N.root.json,
// /director/devices/ID/metadata/…) by repo/online/director's handler, with
// the same Fwctl-Root-Version hint on every timestamp.
type Director struct {
	// Upstream serves /director/ (usually the image upstream).
	Upstream verify.Source
	// Root is the director root devices are provisioned with.
	Root []byte
	// Devices are the device IDs of the site.
	Devices []string
}

// directorStore is where the verified director metadata lives, in
// fwrepo's store layout (director/metadata/, director/devices/ID/metadata/).
func (m *Mirror) directorStore() string { return filepath.Join(m.Dir, "director-store") }

// deviceSource presents the verified local state to verify.VerifyMetadata
// as one device's director repository: metadata/N.root.json are the
// director roots already mirrored (verified before), anything else does
// not exist (the fetched upstream bytes are laid over it with
// verify.WithFiles).
type deviceSource struct{ store string }

func (s deviceSource) Open(ctx context.Context, name string) (io.ReadCloser, error) {
	if file, ok := strings.CutPrefix(name, layout.MetadataDir+"/"); ok {
		if strings.HasSuffix(file, ".root.json") && !strings.Contains(file, "/") {
			return os.Open(filepath.Join(s.store, manifests.DirectorRoot, file))
		}
	}
	return nil, fmt.Errorf("%s: %w", name, fs.ErrNotExist)
}

func (s deviceSource) String() string { return "the mirror's verified state" }

// syncWorkers is how many devices' director metadata the mirror fetches
// at once.
const syncWorkers = 8

// syncDirector mirrors every device; a device whose upstream metadata does
// not verify keeps its last verified state.
func (m *Mirror) syncDirector(ctx context.Context) error {
	d := m.Director
	s := m.cur.Load()
	if s == nil {
		return errors.New("director: no verified image state yet, the director's assignments cannot be checked against it")
	}
	if s.targets == nil { // a state loaded by Open
		res, err := verify.VerifyDir(s.dir, m.Root, time.Now())
		if err != nil {
			return fmt.Errorf("director: the image state served does not verify (%w): the director's assignments cannot be checked against it", err)
		}
		s.targets = res.Targets
	}
	images := map[string]verify.Target{}
	for _, tg := range s.targets {
		images[tg.Path] = tg
	}
	var errs []error
	if err := m.syncOlderRoots(ctx); err != nil {
		errs = append(errs, fmt.Errorf("director roots older than the provisioned one: %w", err))
	}
	// Devices are independent (each its own directory; the roots they
	// share are written atomically with the same bytes): a few at a time,
	// so that a site of many devices behind a slow link syncs in a
	// fraction of the serial time.
	var (
		mu      sync.Mutex
		wg      sync.WaitGroup
		changed int
		ids     = make(chan string)
	)
	for range min(syncWorkers, len(d.Devices)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for id := range ids {
				ok, err := m.syncDevice(ctx, id, images)
				mu.Lock()
				if err != nil {
					errs = append(errs, fmt.Errorf("director metadata of device %s: %w", id, err))
				}
				if ok {
					changed++
				}
				mu.Unlock()
			}
		}()
	}
	for _, id := range d.Devices {
		ids <- id
	}
	close(ids)
	wg.Wait()
	slices.SortFunc(errs, func(a, b error) int { return strings.Compare(a.Error(), b.Error()) })
	if changed > 0 {
		m.Log.Info("mirrored verified director metadata", "upstream", d.Upstream.String(), "devices_changed", changed)
	}
	return errors.Join(errs...)
}

// syncOlderRoots mirrors the director roots older than the one the mirror
// was provisioned with (Director.Root), once: a device provisioned before
// a director root rotation asks for every version after its own, and
// without them would never reach the root that signs its metadata. They
// are served only if upstream's chain 1, 2, … leads, every step verified,
// to the provisioned root's exact bytes; a device checks each against the
// root it holds anyway.
func (m *Mirror) syncOlderRoots(ctx context.Context) error {
	d := m.Director
	pinned, err := metadata.Root().FromBytes(d.Root)
	if err != nil {
		return err
	}
	n := pinned.Signed.Version
	dir := filepath.Join(m.directorStore(), manifests.DirectorRoot)
	if n <= 1 {
		return nil
	}
	if _, err := os.Stat(filepath.Join(dir, layout.Versioned(1, metadata.ROOT))); err == nil {
		return nil // mirrored before
	}
	chain := make([][]byte, 0, n)
	for v := int64(1); v < n; v++ {
		b, err := verify.ReadLimited(ctx, d.Upstream, manifests.DirectorRoot+"/"+layout.Versioned(v, metadata.ROOT), layout.MaxRootLength, false)
		if errors.Is(err, fs.ErrNotExist) {
			return nil // upstream no longer serves them
		}
		if err != nil {
			return err
		}
		chain = append(chain, b)
	}
	tm, err := trustedmetadata.New(chain[0])
	if err != nil {
		return fmt.Errorf("upstream's 1.root.json: %w", err)
	}
	for i, b := range append(chain[1:], d.Root) {
		if _, err := tm.UpdateRoot(b); err != nil {
			return fmt.Errorf("upstream's root chain does not lead to the provisioned root (version %d: %w); not serving it", i+2, err)
		}
	}
	for i := len(chain) - 1; i >= 0; i-- { // 1.root.json last: it marks the chain complete
		if err := atomicfile.Write(filepath.Join(dir, layout.Versioned(int64(i+1), metadata.ROOT)), chain[i], 0o644); err != nil {
			return err
		}
	}
	m.Log.Info("mirrored the director roots older than the provisioned one", "versions", len(chain))
	return nil
}

// syncDevice fetches one device's director metadata, verifies exactly the
// fetched bytes, checks that no version goes back from what the mirror
// serves, and writes it (timestamp last). It reports whether anything new
// was written.
func (m *Mirror) syncDevice(ctx context.Context, id string, images map[string]verify.Target) (bool, error) {
	d := m.Director
	store := m.directorStore()
	dev := manifests.DirectorDevice(id)
	keep := func(err error) (bool, error) {
		return false, fmt.Errorf("from %s does not verify, keeping the last verified state: %w", d.Upstream, err)
	}
	read := func(name string, limit int64, signed bool) ([]byte, error) {
		return verify.ReadLimited(ctx, d.Upstream, name, limit, signed)
	}
	ts, err := read(dev+"/timestamp.json", layout.MaxTimestampLength, false)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil // not assigned upstream (or no longer served): keep what we have
	}
	if err != nil {
		return false, fmt.Errorf("upstream %s: %w (keeping the last verified state)", d.Upstream, err)
	}
	oldTS, _ := os.ReadFile(filepath.Join(store, dev, "timestamp.json"))
	if bytes.Equal(ts, oldTS) {
		return false, nil
	}
	// Which files the timestamp names (unverified yet: verify.Verify below
	// checks all of it).
	t, err := metadata.Timestamp().FromBytes(ts)
	if err != nil {
		return keep(fmt.Errorf("timestamp: %w", err))
	}
	sm := t.Signed.Meta["snapshot.json"]
	if sm == nil {
		return keep(errors.New("timestamp names no snapshot"))
	}
	limit, signed := verify.MetaLimit(sm, layout.MaxSnapshotLength)
	snapName := layout.Versioned(sm.Version, metadata.SNAPSHOT)
	snap, err := read(dev+"/"+snapName, limit, signed)
	if err != nil {
		return keep(err)
	}
	sn, err := metadata.Snapshot().FromBytes(snap)
	if err != nil {
		return keep(fmt.Errorf("snapshot: %w", err))
	}
	tm := sn.Signed.Meta["targets.json"]
	if tm == nil {
		return keep(errors.New("snapshot names no targets"))
	}
	limit, signed = verify.MetaLimit(tm, layout.MaxTargetsLength)
	tgtName := layout.Versioned(tm.Version, metadata.TARGETS)
	tgt, err := read(dev+"/"+tgtName, limit, signed)
	if err != nil {
		return keep(err)
	}
	files := map[string][]byte{
		"metadata/timestamp.json": ts,
		"metadata/" + snapName:    snap,
		"metadata/" + tgtName:     tgt,
	}
	newRoots := map[string][]byte{}
	for v := newestRoot(store, d.Root) + 1; ; v++ {
		name := layout.Versioned(v, metadata.ROOT)
		b, err := read(manifests.DirectorRoot+"/"+name, layout.MaxRootLength, false)
		if errors.Is(err, fs.ErrNotExist) {
			break
		}
		if err != nil {
			return false, fmt.Errorf("upstream %s: %w (keeping the last verified state)", d.Upstream, err)
		}
		files["metadata/"+name], newRoots[name] = b, b
	}
	res, err := verify.VerifyMetadata(ctx, verify.WithFiles(deviceSource{store}, files), d.Root, time.Now())
	if err != nil {
		return keep(err)
	}
	if err := checkAssignment(res, id, images); err != nil {
		return keep(err)
	}
	if err := checkNotBack(store, dev, oldTS, res); err != nil {
		return keep(err)
	}
	// Versioned files are never rewritten: the same name with other bytes
	// is a fork.
	for name, b := range map[string][]byte{snapName: snap, tgtName: tgt} {
		if have, err := os.ReadFile(filepath.Join(store, dev, name)); err == nil && !bytes.Equal(have, b) {
			return keep(fmt.Errorf("upstream serves another %s than the one mirrored before", name))
		}
	}
	if err := os.MkdirAll(filepath.Join(store, dev), 0o755); err != nil {
		return false, err
	}
	if err := os.MkdirAll(filepath.Join(store, manifests.DirectorRoot), 0o755); err != nil {
		return false, err
	}
	for name, b := range newRoots {
		if err := atomicfile.Write(filepath.Join(store, manifests.DirectorRoot, name), b, 0o644); err != nil {
			return false, err
		}
	}
	for name, b := range map[string][]byte{snapName: snap, tgtName: tgt} {
		if err := atomicfile.Write(filepath.Join(store, dev, name), b, 0o644); err != nil {
			return false, err
		}
	}
	if err := atomicfile.Write(filepath.Join(store, dev, "timestamp.json"), ts, 0o644); err != nil {
		return false, err
	}
	return true, nil
}

// newestRoot is the newest director root version the mirror holds (the
// provisioned root's when it holds none).
func newestRoot(store string, pinned []byte) int64 {
	v := int64(0)
	if r, err := metadata.Root().FromBytes(pinned); err == nil {
		v = r.Signed.Version
	}
	for {
		if _, err := os.Stat(filepath.Join(store, manifests.DirectorRoot, layout.Versioned(v+1, metadata.ROOT))); err != nil {
			return v
		}
		v++
	}
}

// checkAssignment refuses what the device would (manifests.DirectorPick:
// targets not bound to this device, also empty ones, which would freeze
// it; no hash chain down to them; more than one target, or one assigned
// to another device), and a target the image state the mirror serves
// (verified, every file hashed, when it was mirrored) does not list with
// the same length and sha256.
func checkAssignment(res *verify.Result, id string, images map[string]verify.Target) error {
	tg, err := res.DirectorAssigned(id)
	if err != nil || tg == nil {
		return err
	}
	img, ok := images[tg.Path]
	if !ok {
		return fmt.Errorf("director target %s is not in the image repository's state the mirror serves", tg.Path)
	}
	if img.Length != tg.Length || img.SHA256 != tg.SHA256 {
		return fmt.Errorf("the director's %s (sha256 %s, %d bytes) is not the image repository's (sha256 %s, %d bytes)", tg.Path, tg.SHA256, tg.Length, img.SHA256, img.Length)
	}
	return nil
}

// checkNotBack refuses metadata older than what the mirror serves: a
// lower timestamp, snapshot or targets version, or the same timestamp
// version with other bytes.
func checkNotBack(store, dev string, oldTS []byte, res *verify.Result) error {
	if oldTS == nil {
		return nil
	}
	t, err := metadata.Timestamp().FromBytes(oldTS)
	if err != nil {
		return fmt.Errorf("the mirrored timestamp: %w", err)
	}
	if v := res.Versions[metadata.TIMESTAMP]; v <= t.Signed.Version {
		return fmt.Errorf("timestamp version %d, the mirror serves %d: a rollback", v, t.Signed.Version)
	}
	sm := t.Signed.Meta["snapshot.json"]
	if sm == nil {
		return nil
	}
	if v := res.Versions[metadata.SNAPSHOT]; v < sm.Version {
		return fmt.Errorf("snapshot version %d, the mirror serves %d: a rollback", v, sm.Version)
	}
	b, err := os.ReadFile(filepath.Join(store, dev, layout.Versioned(sm.Version, metadata.SNAPSHOT)))
	if err != nil {
		return err
	}
	sn, err := metadata.Snapshot().FromBytes(b)
	if err != nil {
		return fmt.Errorf("the mirrored snapshot: %w", err)
	}
	if tm := sn.Signed.Meta["targets.json"]; tm != nil && res.Versions[metadata.TARGETS] < tm.Version {
		return fmt.Errorf("targets version %d, the mirror serves %d: a rollback", res.Versions[metadata.TARGETS], tm.Version)
	}
	return nil
}
