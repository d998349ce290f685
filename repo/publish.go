package repo

import (
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
// Files that nothing references yet are written first; timestamp.json, which
// clients read first, is replaced atomically at the very end, so a client
// sees either the previous release or this one, never a mixture.
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
	prevSnapshot, _ := metadata.Snapshot().FromFile(filepath.Join(ws.Dir, "metadata", "snapshot.json"))

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
	snapshot := metadata.Snapshot(now.Add(expiry(metadata.SNAPSHOT)))
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
	for _, p := range []string{filepath.Join(ws.Dir, "metadata", "timestamp.json"), filepath.Join(out, "metadata", "timestamp.json")} {
		if ts, err := metadata.Timestamp().FromFile(p); err == nil && ts.Signed.Version >= tsVersion {
			tsVersion = ts.Signed.Version + 1
		}
	}
	sh := sha256.Sum256(snapshotBytes)
	timestamp := metadata.Timestamp(now.Add(expiry(metadata.TIMESTAMP)))
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

	// Write the output repository: targets, roots, targets and snapshot
	// metadata under new names, then the timestamp.
	ntargets := len(targets.Signed.Targets)
	for _, dp := range pl.delegated {
		ntargets += len(dp.targets.Signed.Targets)
	}
	res := &PublishResult{Out: out, Targets: ntargets, Versions: map[string]int64{
		metadata.ROOT: root.Signed.Version, metadata.TARGETS: targets.Signed.Version,
		metadata.SNAPSHOT: snapshot.Signed.Version, metadata.TIMESTAMP: timestamp.Signed.Version}}
	mdOut := filepath.Join(out, "metadata")
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
	if pl.rootPlan != nil {
		// The new root joins the workspace's chain before it is published:
		// a crash after this point leaves a workspace that is still valid.
		name := fmt.Sprintf("%d.root.json", root.Signed.Version)
		if err := writeMetadata(filepath.Join(ws.Dir, "metadata", name), root); err != nil {
			return nil, err
		}
		if err := writeMetadata(filepath.Join(ws.Dir, "metadata", "root.json"), root); err != nil {
			return nil, err
		}
		progress("root version " + strconv.FormatInt(root.Signed.Version, 10))
	}
	roots, err := ws.rootFiles()
	if err != nil {
		return nil, err
	}
	for _, r := range roots {
		b, err := os.ReadFile(filepath.Join(ws.Dir, "metadata", r))
		if err != nil {
			return nil, err
		}
		if err := atomicfile.Write(filepath.Join(mdOut, r), b, 0o644); err != nil {
			return nil, err
		}
	}
	files := []struct {
		name string
		data []byte
	}{
		{fmt.Sprintf("%d.targets.json", targets.Signed.Version), targetsBytes},
	}
	for _, d := range delegated {
		files = append(files, struct {
			name string
			data []byte
		}{fmt.Sprintf("%d.%s.json", d.version, d.name), d.data})
	}
	files = append(files, []struct {
		name string
		data []byte
	}{
		{fmt.Sprintf("%d.snapshot.json", snapshot.Signed.Version), snapshotBytes},
	}...)
	for _, f := range files {
		progress("write metadata/" + f.name)
		if err := atomicfile.Write(filepath.Join(mdOut, f.name), f.data, 0o644); err != nil {
			return nil, err
		}
	}
	progress("write metadata/timestamp.json")
	timestampBytes, err = writePublishedTimestamp(out, timestamp, timestampBytes, func() error {
		return sign(metadata.TIMESTAMP, func(k crypto.Signer) error { _, err := timestamp.Sign(signer.TUF(k)); return err })
	})
	if err != nil {
		return nil, err
	}
	res.Versions[metadata.TIMESTAMP] = timestamp.Signed.Version

	// Record what was published in the workspace.
	wsmd := filepath.Join(ws.Dir, "metadata")
	for name, data := range map[string][]byte{
		"targets.json": targetsBytes, "snapshot.json": snapshotBytes, "timestamp.json": timestampBytes,
		fmt.Sprintf("%d.targets.json", targets.Signed.Version):   targetsBytes,
		fmt.Sprintf("%d.snapshot.json", snapshot.Signed.Version): snapshotBytes,
	} {
		if err := atomicfile.Write(filepath.Join(wsmd, name), data, 0o644); err != nil {
			return nil, err
		}
	}
	for _, d := range delegated {
		if err := atomicfile.Write(filepath.Join(wsmd, d.name+".json"), d.data, 0o644); err != nil {
			return nil, err
		}
	}
	if err := atomicfile.Write(ws.stagedTargetsPath(), targetsBytes, 0o644); err != nil {
		return nil, err
	}
	if err := ws.clearPending(); err != nil {
		return nil, err
	}
	return res, nil
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
