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
	outTimestamp, err := ws.checkOutput(out)
	if err != nil {
		return nil, err
	}
	rel, err := ws.signRelease(kr, pl, outTimestamp, now, expiry)
	if err != nil {
		return nil, err
	}
	mdOut := filepath.Join(out, "metadata")
	for _, f := range rel.files {
		if err := checkUnchanged(filepath.Join(mdOut, f.name), f.data); err != nil {
			return nil, err
		}
	}
	res := rel.result(out)
	if err := os.MkdirAll(mdOut, 0o755); err != nil {
		return nil, err
	}
	if !opt.skipCopy {
		if res.Copied, err = ws.copyTargets(out, pl, progress); err != nil {
			return nil, err
		}
		// The same checks as 'fwctl verify', of the output as it will be
		// once timestamp.json is replaced, before anything refers to it.
		progress("verify the output")
		if err := rel.verify(out, now); err != nil {
			return nil, err
		}
	}
	// Record the publish in the workspace before the output refers to any
	// of it: if this process dies from here on, the next publish takes new
	// snapshot and timestamp versions and writes the same bytes under the
	// names this one may have written.
	if pl.rootPlan != nil {
		progress("root version " + strconv.FormatInt(pl.root.Signed.Version, 10))
	}
	if err := ws.record(rel); err != nil {
		return nil, err
	}
	for _, f := range rel.files {
		if b, err := os.ReadFile(filepath.Join(mdOut, f.name)); err == nil && bytes.Equal(b, f.data) {
			continue // written by an earlier, interrupted publish
		}
		progress("write metadata/" + f.name)
		if err := atomicfile.Write(filepath.Join(mdOut, f.name), f.data, 0o644); err != nil {
			return nil, err
		}
	}
	progress("write metadata/timestamp.json")
	if _, err = writePublishedTimestamp(out, rel.timestamp, rel.timestampBytes, func() error {
		return kr.signOnline(rootAuthority(pl.root, metadata.TIMESTAMP), metadata.TIMESTAMP, func(k crypto.Signer) error {
			_, err := rel.timestamp.Sign(signer.TUF(k))
			return err
		})
	}); err != nil {
		return nil, err
	}
	res.Versions[metadata.TIMESTAMP] = rel.timestamp.Signed.Version
	return res, nil
}

// release is everything one publish signed, as bytes.
type release struct {
	pl             *plan
	files          []outFile // out/metadata, in write order (timestamp apart)
	record         []outFile // the workspace's metadata/, in write order
	targetsBytes   []byte
	snapshot       *metadata.Metadata[metadata.SnapshotType]
	timestamp      *metadata.Metadata[metadata.TimestampType]
	timestampBytes []byte
}

// signRelease signs snapshot and timestamp over pl's targets and
// delegated roles, with versions following the workspace's record (and,
// for the timestamp, the output's current one, which fwrepo may have
// re-signed), and lays out the files to write.
func (ws *Workspace) signRelease(kr *keyring, pl *plan, outTimestamp *metadata.Metadata[metadata.TimestampType], now time.Time, expiry func(string) time.Duration) (*release, error) {
	wsmd := filepath.Join(ws.Dir, "metadata")
	prevSnapshot, err := readRecorded(wsmd, "snapshot.json", metadata.Snapshot().FromBytes)
	if err != nil {
		return nil, err
	}
	prevTimestamp, err := readRecorded(wsmd, "timestamp.json", metadata.Timestamp().FromBytes)
	if err != nil {
		return nil, err
	}
	sign := func(role string, sign func(crypto.Signer) error) error {
		return kr.signOnline(rootAuthority(pl.root, role), role, sign)
	}
	rel := &release{pl: pl}
	targets := pl.targets.targets
	if rel.targetsBytes, err = targets.ToBytes(true); err != nil {
		return nil, err
	}
	var rootBytes []byte
	if pl.rootPlan != nil {
		if rootBytes, err = pl.root.ToBytes(true); err != nil {
			return nil, err
		}
	}

	snapshot := metadata.Snapshot(expires(now, expiry(metadata.SNAPSHOT)))
	if prevSnapshot != nil {
		snapshot.Signed.Version = prevSnapshot.Signed.Version + 1
	}
	snapshot.Signed.Meta["targets.json"] = metaFile(targets.Signed.Version, rel.targetsBytes)
	var delegated []outFile // ROLE.json
	for _, dp := range pl.delegated {
		b, err := dp.targets.ToBytes(true)
		if err != nil {
			return nil, err
		}
		snapshot.Signed.Meta[dp.role+".json"] = metaFile(dp.targets.Signed.Version, b)
		delegated = append(delegated, outFile{dp.role + ".json", b})
		rel.files = append(rel.files, outFile{layout.Versioned(dp.targets.Signed.Version, dp.role), b})
	}
	if err := sign(metadata.SNAPSHOT, func(k crypto.Signer) error { _, err := snapshot.Sign(signer.TUF(k)); return err }); err != nil {
		return nil, err
	}
	snapshotBytes, err := snapshot.ToBytes(true)
	if err != nil {
		return nil, err
	}

	timestamp := metadata.Timestamp(expires(now, expiry(metadata.TIMESTAMP)))
	timestamp.Signed.Version = 1
	for _, ts := range []*metadata.Metadata[metadata.TimestampType]{prevTimestamp, outTimestamp} {
		if ts != nil && ts.Signed.Version >= timestamp.Signed.Version {
			timestamp.Signed.Version = ts.Signed.Version + 1
		}
	}
	timestamp.Signed.Meta["snapshot.json"] = metaFile(snapshot.Signed.Version, snapshotBytes)
	if err := sign(metadata.TIMESTAMP, func(k crypto.Signer) error { _, err := timestamp.Sign(signer.TUF(k)); return err }); err != nil {
		return nil, err
	}
	if rel.timestampBytes, err = timestamp.ToBytes(true); err != nil {
		return nil, err
	}
	rel.snapshot, rel.timestamp = snapshot, timestamp

	// out/metadata: every root of the chain, then targets, delegated roles
	// (already listed), snapshot.
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
		files = append(files, outFile{layout.Versioned(pl.root.Signed.Version, metadata.ROOT), rootBytes})
	}
	files = append(files, outFile{layout.Versioned(targets.Signed.Version, metadata.TARGETS), rel.targetsBytes})
	rel.files = append(append(files, rel.files...), outFile{layout.Versioned(snapshot.Signed.Version, metadata.SNAPSHOT), snapshotBytes})

	// The workspace's record: roots first, the unversioned names that say
	// "last published" last.
	if pl.rootPlan != nil {
		rel.record = append(rel.record, outFile{layout.Versioned(pl.root.Signed.Version, metadata.ROOT), rootBytes}, outFile{"root.json", rootBytes})
	}
	rel.record = append(append(rel.record, delegated...),
		outFile{layout.Versioned(targets.Signed.Version, metadata.TARGETS), rel.targetsBytes},
		outFile{layout.Versioned(snapshot.Signed.Version, metadata.SNAPSHOT), snapshotBytes},
		outFile{"targets.json", rel.targetsBytes}, outFile{"snapshot.json", snapshotBytes}, outFile{"timestamp.json", rel.timestampBytes})
	return rel, nil
}

// metaFile describes a metadata file in snapshot or timestamp.
func metaFile(version int64, b []byte) *metadata.MetaFiles {
	h := sha256.Sum256(b)
	return &metadata.MetaFiles{Version: version, Length: int64(len(b)), Hashes: metadata.Hashes{"sha256": h[:]}}
}

// result is what Publish reports for rel written to out.
func (rel *release) result(out string) *PublishResult {
	n := len(rel.pl.targets.targets.Signed.Targets)
	for _, dp := range rel.pl.delegated {
		n += len(dp.targets.Signed.Targets)
	}
	return &PublishResult{Out: out, Targets: n, Versions: map[string]int64{
		metadata.ROOT: rel.pl.root.Signed.Version, metadata.TARGETS: rel.pl.targets.targets.Signed.Version,
		metadata.SNAPSHOT: rel.snapshot.Signed.Version, metadata.TIMESTAMP: rel.timestamp.Signed.Version}}
}

// copyTargets copies every target of pl the output lacks (hash-named, so
// one it holds is the same file), checking each against its hash.
func (ws *Workspace) copyTargets(out string, pl *plan, progress func(string)) ([]string, error) {
	all := verify.SortedTargetFiles(pl.targets.targets.Signed.Targets)
	for _, dp := range pl.delegated {
		all = append(all, verify.SortedTargetFiles(dp.targets.Signed.Targets)...)
	}
	var copied []string
	for _, tf := range all {
		dst := filepath.Join(out, "targets", filepath.FromSlash(layout.HashedTarget(tf.Path, tf.Hashes["sha256"])))
		if _, err := os.Stat(dst); err == nil {
			continue
		}
		progress("copy " + tf.Path)
		if err := copyVerified(filepath.Join(ws.Dir, "targets", filepath.FromSlash(tf.Path)), dst, tf); err != nil {
			return nil, err
		}
		copied = append(copied, tf.Path)
	}
	return copied, nil
}

// verify checks out as it will be once rel's metadata is written, from
// the first root, as a device would.
func (rel *release) verify(out string, now time.Time) error {
	overlay := map[string][]byte{layout.Timestamp: rel.timestampBytes}
	for _, f := range rel.files {
		overlay[layout.Metadata(f.name)] = f.data
	}
	first := rel.files[0] // 1.root.json: the chain starts there
	if _, err := verify.Verify(context.Background(), verify.WithFiles(verify.DirSource(out), overlay), first.data, now); err != nil {
		return fmt.Errorf("refusing to publish: %w from %s (check the workspace's metadata/ for damaged files): %w", ErrWouldNotVerify, first.name, err)
	}
	return nil
}

// record writes rel into the workspace: the published metadata, the
// signed targets as the new staged ones, and no pending signatures.
func (ws *Workspace) record(rel *release) error {
	for _, f := range rel.record {
		if err := atomicfile.Write(filepath.Join(ws.Dir, "metadata", f.name), f.data, 0o644); err != nil {
			return err
		}
	}
	if err := atomicfile.Write(ws.stagedTargetsPath(), rel.targetsBytes, 0o644); err != nil {
		return err
	}
	return ws.clearPending()
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
	return verify.VersionedFiles(filepath.Join(ws.Dir, "metadata"), "root")
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
