package repo

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/fwctl/fwctl/internal/atomicfile"
	"github.com/fwctl/fwctl/repo/blob"
	"github.com/fwctl/fwctl/repo/layout"
	"github.com/fwctl/fwctl/repo/upload"
	"github.com/fwctl/fwctl/repo/verify"
	"github.com/fwctl/fwctl/signer"
)

// PublishOptions control Publish.
type PublishOptions struct {
	// Expiry overrides the workspace's expiry for the roles given.
	Expiry map[string]time.Duration
	// Progress, when set, is told about each file written.
	Progress func(msg string)

	// skipCopy leaves target files out (benchmarks of metadata signing).
	skipCopy bool
}

// PublishResult reports what Publish wrote.
type PublishResult struct {
	Out      string           `json:"out"`
	Versions map[string]int64 `json:"versions"`
	Targets  int              `json:"targets"`
	Copied   []string         `json:"copied"`
}

// ErrForeignRelease is wrapped when the output holds a release this
// workspace did not publish (another workspace, or an older copy of this
// one, published there since): publishing over it would hide it.
var ErrForeignRelease = errors.New("the output holds a release this workspace did not publish")

// ErrImmutable is wrapped when a publish would write different bytes under
// a name that is already published and never changes (N.ROLE.json, a
// target): caches keep such files forever.
var ErrImmutable = errors.New("would rewrite a published file that never changes")

// ErrWouldNotVerify is wrapped when the release a publish signed would not
// verify from the first root as a device verifies it (damaged workspace
// metadata, an expired role, a delegated role listing targets outside its
// paths): nothing that refers to it was written.
var ErrWouldNotVerify = errors.New("the new release would not verify")

// Publish signs the staged targets, a new snapshot and a new timestamp, and
// writes a consistent-snapshot TUF repository to out:
//
//	out/metadata/N.root.json, N.targets.json, N.snapshot.json, timestamp.json
//	out/targets/PATH-DIR/SHA256.NAME
//
// It is one verified transaction, safe to kill at any instant and to run
// again:
//
//  1. sign everything in memory; refuse damaged workspace metadata;
//  2. refuse an output whose current release this workspace did not
//     publish (ErrForeignRelease), and any published versioned file that
//     would get different bytes (ErrImmutable);
//  3. copy the targets (hash-named), then verify the complete output, as
//     'fwctl verify' would, from the first root, with the new metadata in
//     place, before anything references it;
//  4. record the publish in the workspace, so that a rerun never reissues
//     a version it may already have written;
//  5. write the versioned metadata, then replace timestamp.json, which
//     clients read first, atomically and last, so a client sees either the
//     previous release or this one, never a mixture.
func (ws *Workspace) Publish(out string, opt PublishOptions) (*PublishResult, error) {
	expiry := func(role string) time.Duration {
		if d, ok := opt.Expiry[role]; ok {
			return d
		}
		return ws.expiry(role)
	}
	progress := opt.Progress
	if progress == nil {
		progress = func(string) {}
	}
	now := ws.Now().UTC()
	kr, err := ws.keyring()
	if err != nil {
		return nil, err
	}
	defer kr.close()
	_, refresh := opt.Expiry[metadata.TARGETS]
	pl, err := ws.plan(kr, expiry, refresh)
	if err != nil {
		return nil, err
	}
	if len(pl.missing) > 0 {
		// Keep what was signed so far, so the ceremony adds to it.
		if err := ws.savePending(pl); err != nil {
			return nil, err
		}
		return nil, &ThresholdError{Missing: pl.missing}
	}
	root := pl.root
	targets := pl.targets.targets
	wsmd := filepath.Join(ws.Dir, "metadata")
	prevSnapshot, err := readRecorded(wsmd, "snapshot.json", metadata.Snapshot().FromBytes)
	if err != nil {
		return nil, err
	}
	prevTimestamp, err := readRecorded(wsmd, "timestamp.json", metadata.Timestamp().FromBytes)
	if err != nil {
		return nil, err
	}
	outTimestamp, err := ws.checkOutput(out)
	if err != nil {
		return nil, err
	}

	sign := func(role string, sign func(crypto.Signer) error) error {
		return kr.signOnline(rootAuthority(root, role), role, sign)
	}

	targetsBytes, err := targets.ToBytes(true)
	if err != nil {
		return nil, err
	}
	type roleFile struct {
		name    string
		version int64
		data    []byte
	}
	var delegated []roleFile
	for _, dp := range pl.delegated {
		b, err := dp.targets.ToBytes(true)
		if err != nil {
			return nil, err
		}
		delegated = append(delegated, roleFile{dp.role, dp.targets.Signed.Version, b})
	}

	// snapshot
	snapshot := metadata.Snapshot(expires(now, expiry(metadata.SNAPSHOT)))
	if prevSnapshot != nil {
		snapshot.Signed.Version = prevSnapshot.Signed.Version + 1
	}
	th := sha256.Sum256(targetsBytes)
	snapshot.Signed.Meta["targets.json"] = &metadata.MetaFiles{Version: targets.Signed.Version,
		Length: int64(len(targetsBytes)), Hashes: metadata.Hashes{"sha256": th[:]}}
	for _, d := range delegated {
		h := sha256.Sum256(d.data)
		snapshot.Signed.Meta[d.name+".json"] = &metadata.MetaFiles{Version: d.version,
			Length: int64(len(d.data)), Hashes: metadata.Hashes{"sha256": h[:]}}
	}
	if err := sign(metadata.SNAPSHOT, func(k crypto.Signer) error { _, err := snapshot.Sign(signer.TUF(k)); return err }); err != nil {
		return nil, err
	}
	snapshotBytes, err := snapshot.ToBytes(true)
	if err != nil {
		return nil, err
	}

	// timestamp: newer than both the workspace's and the published one, which
	// fwrepo may have re-signed online in between.
	tsVersion := int64(1)
	for _, ts := range []*metadata.Metadata[metadata.TimestampType]{prevTimestamp, outTimestamp} {
		if ts != nil && ts.Signed.Version >= tsVersion {
			tsVersion = ts.Signed.Version + 1
		}
	}
	sh := sha256.Sum256(snapshotBytes)
	timestamp := metadata.Timestamp(expires(now, expiry(metadata.TIMESTAMP)))
	timestamp.Signed.Version = tsVersion
	timestamp.Signed.Meta["snapshot.json"] = &metadata.MetaFiles{Version: snapshot.Signed.Version,
		Length: int64(len(snapshotBytes)), Hashes: metadata.Hashes{"sha256": sh[:]}}
	if err := sign(metadata.TIMESTAMP, func(k crypto.Signer) error { _, err := timestamp.Sign(signer.TUF(k)); return err }); err != nil {
		return nil, err
	}
	timestampBytes, err := timestamp.ToBytes(true)
	if err != nil {
		return nil, err
	}

	// What goes to out/metadata, in write order: roots, targets, delegated
	// roles, snapshot (timestamp.json last, apart).
	var rootBytes []byte
	if pl.rootPlan != nil {
		if rootBytes, err = root.ToBytes(true); err != nil {
			return nil, err
		}
	}
	roots, err := ws.rootFiles()
	if err != nil {
		return nil, err
	}
	var files []outFile
	for _, r := range roots {
		b, err := os.ReadFile(filepath.Join(wsmd, r))
		if err != nil {
			return nil, err
		}
		files = append(files, outFile{r, b})
	}
	if pl.rootPlan != nil {
		files = append(files, outFile{layout.Versioned(root.Signed.Version, metadata.ROOT), rootBytes})
	}
	files = append(files, outFile{layout.Versioned(targets.Signed.Version, metadata.TARGETS), targetsBytes})
	for _, d := range delegated {
		files = append(files, outFile{layout.Versioned(d.version, d.name), d.data})
	}
	files = append(files, outFile{layout.Versioned(snapshot.Signed.Version, metadata.SNAPSHOT), snapshotBytes})
	mdOut := filepath.Join(out, "metadata")
	for _, f := range files {
		if err := checkUnchanged(filepath.Join(mdOut, f.name), f.data); err != nil {
			return nil, err
		}
	}

	ntargets := len(targets.Signed.Targets)
	for _, dp := range pl.delegated {
		ntargets += len(dp.targets.Signed.Targets)
	}
	res := &PublishResult{Out: out, Targets: ntargets, Versions: map[string]int64{
		metadata.ROOT: root.Signed.Version, metadata.TARGETS: targets.Signed.Version,
		metadata.SNAPSHOT: snapshot.Signed.Version, metadata.TIMESTAMP: timestamp.Signed.Version}}
	if err := os.MkdirAll(mdOut, 0o755); err != nil {
		return nil, err
	}
	all := verify.SortedTargetFiles(targets.Signed.Targets)
	for _, dp := range pl.delegated {
		all = append(all, verify.SortedTargetFiles(dp.targets.Signed.Targets)...)
	}
	for _, tf := range all {
		if opt.skipCopy {
			break
		}
		dst := filepath.Join(out, "targets", filepath.FromSlash(layout.HashedTarget(tf.Path, tf.Hashes["sha256"])))
		if _, err := os.Stat(dst); err == nil {
			continue
		}
		progress("copy " + tf.Path)
		if err := copyVerified(filepath.Join(ws.Dir, "targets", filepath.FromSlash(tf.Path)), dst, tf); err != nil {
			return nil, err
		}
		res.Copied = append(res.Copied, tf.Path)
	}

	if !opt.skipCopy {
		// The same checks as 'fwctl verify', of the output as it will be
		// once timestamp.json is replaced, before anything refers to it.
		progress("verify the output")
		overlay := map[string][]byte{layout.Timestamp: timestampBytes}
		for _, f := range files {
			overlay[layout.Metadata(f.name)] = f.data
		}
		if _, err := verify.Verify(context.Background(), verify.WithFiles(verify.DirSource(out), overlay), files[0].data, now); err != nil {
			return nil, fmt.Errorf("refusing to publish: %w from %s (check the workspace's metadata/ for damaged files): %w", ErrWouldNotVerify, files[0].name, err)
		}
	}

	// Record the publish in the workspace before the output refers to any
	// of it: if this process dies from here on, the next publish takes new
	// snapshot and timestamp versions and writes the same bytes under the
	// names this one may have written.
	var record []outFile
	if pl.rootPlan != nil {
		record = append(record, outFile{layout.Versioned(root.Signed.Version, metadata.ROOT), rootBytes}, outFile{"root.json", rootBytes})
		progress("root version " + strconv.FormatInt(root.Signed.Version, 10))
	}
	for _, d := range delegated {
		record = append(record, outFile{d.name + ".json", d.data})
	}
	record = append(record, outFile{layout.Versioned(targets.Signed.Version, metadata.TARGETS), targetsBytes},
		outFile{layout.Versioned(snapshot.Signed.Version, metadata.SNAPSHOT), snapshotBytes},
		outFile{"targets.json", targetsBytes}, outFile{"snapshot.json", snapshotBytes}, outFile{"timestamp.json", timestampBytes})
	for _, f := range record {
		if err := atomicfile.Write(filepath.Join(wsmd, f.name), f.data, 0o644); err != nil {
			return nil, err
		}
	}
	if err := atomicfile.Write(ws.stagedTargetsPath(), targetsBytes, 0o644); err != nil {
		return nil, err
	}
	if err := ws.clearPending(); err != nil {
		return nil, err
	}

	for _, f := range files {
		if b, err := os.ReadFile(filepath.Join(mdOut, f.name)); err == nil && bytes.Equal(b, f.data) {
			continue // written by an earlier, interrupted publish
		}
		progress("write metadata/" + f.name)
		if err := atomicfile.Write(filepath.Join(mdOut, f.name), f.data, 0o644); err != nil {
			return nil, err
		}
	}
	progress("write metadata/timestamp.json")
	if _, err = writePublishedTimestamp(out, timestamp, timestampBytes, func() error {
		return sign(metadata.TIMESTAMP, func(k crypto.Signer) error { _, err := timestamp.Sign(signer.TUF(k)); return err })
	}); err != nil {
		return nil, err
	}
	res.Versions[metadata.TIMESTAMP] = timestamp.Signed.Version
	return res, nil
}

// outFile is a metadata file a publish writes: a name and its bytes.
type outFile struct {
	name string
	data []byte
}

// expires is the expiry of metadata signed at now for lifetime d, in the
// form the TUF specification fixes: UTC, whole seconds.
func expires(now time.Time, d time.Duration) time.Time {
	return now.UTC().Add(d).Truncate(time.Second)
}

// readRecorded reads the workspace's record of a published role (nil if it
// was never published) and refuses a damaged one: guessing from it would
// reissue versions already published.
func readRecorded[T any](dir, name string, parse func([]byte) (*T, error)) (*T, error) {
	b, err := os.ReadFile(filepath.Join(dir, name))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	md, err := parse(b)
	if err != nil {
		return nil, fmt.Errorf("workspace %s is damaged (%d bytes): %w; restore it (and the N.%s files) from a backup of the workspace, or copy metadata/%s from the published repository it last published to",
			filepath.Join(dir, name), len(b), err, name, publishedName(name))
	}
	return md, nil
}

// publishedName says which published file holds what the workspace
// records as name.
func publishedName(name string) string {
	if name == "timestamp.json" {
		return name
	}
	return "N." + name + " (N: the version timestamp.json, then snapshot name)"
}

// checkUnchanged refuses to write data over a published file at path that
// holds other bytes.
func checkUnchanged(path string, data []byte) error {
	cur, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if !bytes.Equal(cur, data) {
		return fmt.Errorf("%w: %s is already published with other bytes (%d, this publish has %d); nothing was written. Another workspace published there, or this workspace's metadata/ was restored from an older copy: publish from the workspace that wrote it",
			ErrImmutable, path, len(cur), len(data))
	}
	return nil
}

// checkOutput reads out's current timestamp (nil if there is none) and
// refuses to go on unless the snapshot it names is one this workspace
// published: otherwise this publish would hide a release from devices.
func (ws *Workspace) checkOutput(out string) (*metadata.Metadata[metadata.TimestampType], error) {
	p := filepath.Join(out, filepath.FromSlash(layout.Timestamp))
	b, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	ts, err := metadata.Timestamp().FromBytes(b)
	if err != nil {
		return nil, fmt.Errorf("%s does not parse (%v): refusing to publish over a repository in an unknown state; find out who wrote it, and remove it only if %s should hold this workspace's releases alone", p, err, out)
	}
	m := ts.Signed.Meta["snapshot.json"]
	if m == nil {
		return nil, fmt.Errorf("%s names no snapshot: refusing to publish over it", p)
	}
	mine, err := os.ReadFile(filepath.Join(ws.Dir, "metadata", layout.Versioned(m.Version, metadata.SNAPSHOT)))
	h := sha256.Sum256(mine)
	if err == nil && (m.Length == 0 || m.Length == int64(len(mine))) && bytes.Equal(m.Hashes["sha256"], h[:]) {
		return ts, nil
	}
	last := "never published"
	if s, err := metadata.Snapshot().FromFile(filepath.Join(ws.Dir, "metadata", "snapshot.json")); err == nil {
		last = fmt.Sprintf("snapshot v%d", s.Signed.Version)
	}
	release := fmt.Sprintf("timestamp v%d naming snapshot v%d", ts.Signed.Version, m.Version)
	if sn, err := metadata.Snapshot().FromFile(filepath.Join(out, "metadata", layout.Versioned(m.Version, metadata.SNAPSHOT))); err == nil {
		if tm := sn.Signed.Meta["targets.json"]; tm != nil {
			release += fmt.Sprintf(" and targets v%d", tm.Version)
		}
	}
	return nil, fmt.Errorf("%w: %s holds %s, which this workspace (last publish: %s) did not publish; publishing would hide that release from devices. Publish from the workspace that made it (or copy its metadata/ here first)",
		ErrForeignRelease, out, release, last)
}

// writePublishedTimestamp replaces out's timestamp.json with ts (encoded
// as b) through blob.Replace, the same compare-and-swap fwrepo's online
// re-sign and Upload use, so the three cannot interleave. If fwrepo
// re-signed the published timestamp since Publish chose ts's version, ts
// is re-signed (sign) one version above the stored one: a device that
// already fetched fwrepo's would refuse an equal version. It returns the
// bytes written.
func writePublishedTimestamp(out string, ts *metadata.Metadata[metadata.TimestampType], b []byte, sign func() error) ([]byte, error) {
	return blob.Replace(context.Background(), blob.Dir(out), layout.Timestamp, upload.TimestampAttempts, func(cur []byte, _ string) ([]byte, error) {
		c, err := metadata.Timestamp().FromBytes(cur)
		if cur == nil || err != nil || c.Signed.Version < ts.Signed.Version {
			return b, nil
		}
		ts.Signed.Version = c.Signed.Version + 1
		ts.ClearSignatures()
		if err := sign(); err != nil {
			return nil, err
		}
		b, err = ts.ToBytes(true)
		return b, err
	})
}

// rootFiles lists N.root.json in version order.
func (ws *Workspace) rootFiles() ([]string, error) {
	return versionedFiles(filepath.Join(ws.Dir, "metadata"), "root")
}

// versionedFiles lists the files N.ROLE.json in dir, in version order.
func versionedFiles(dir, role string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	names := make([]string, len(entries))
	for i, e := range entries {
		names[i] = e.Name()
	}
	return layout.SortVersioned(names, role), nil
}

// copyVerified copies src to dst, checking it still matches tf.
func copyVerified(src, dst string, tf *metadata.TargetFiles) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("target %s: %w", tf.Path, err)
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	return atomicfile.WriteFrom(dst, func(w io.Writer) error {
		h := sha256.New()
		n, err := io.Copy(io.MultiWriter(w, h), in)
		if err != nil {
			return err
		}
		if n != tf.Length || hex.EncodeToString(h.Sum(nil)) != hex.EncodeToString(tf.Hashes["sha256"]) {
			return errors.New("workspace copy of " + tf.Path + " no longer matches its recorded hash; re-add the image")
		}
		return nil
	}, 0o644)
}

// signOnline signs for an online role (snapshot, timestamp) with every key
// of a this workspace holds, and fails with a *ThresholdError when that is
// fewer than a's threshold.
func (kr *keyring) signOnline(a authority, role string, sign func(crypto.Signer) error) error {
	n := 0
	for _, id := range a.keyIDs {
		k, err := kr.signer(id)
		if err != nil {
			return fmt.Errorf("%s key: %w", role, err)
		}
		if k == nil {
			continue
		}
		if err := sign(k); err != nil {
			return fmt.Errorf("sign %s: %w", role, err)
		}
		n++
	}
	if n < a.threshold {
		return &ThresholdError{Missing: []Missing{{Role: role, Have: n, Need: a.threshold, By: a.by + " (online role: its keys must be in " + filepath.Join(kr.ws.Dir, "keys") + ")"}}}
	}
	return nil
}

// SignTimestamp replaces ts's signatures with the workspace's timestamp
// keys, as the root it last published names them: Upload uses it to
// re-sign a release's timestamp with a version above one fwrepo re-signed
// while the release was uploading.
func (ws *Workspace) SignTimestamp(ts *metadata.Metadata[metadata.TimestampType]) error {
	root, err := metadata.Root().FromFile(filepath.Join(ws.Dir, "metadata", "root.json"))
	if err != nil {
		return fmt.Errorf("read the workspace's root: %w", err)
	}
	kr, err := ws.keyring()
	if err != nil {
		return err
	}
	defer kr.close()
	ts.ClearSignatures()
	return kr.signOnline(rootAuthority(root, metadata.TIMESTAMP), metadata.TIMESTAMP, func(k crypto.Signer) error {
		_, err := ts.Sign(signer.TUF(k))
		return err
	})
}
