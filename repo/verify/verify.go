package verify

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/trustedmetadata"

	"github.com/fwctl/fwctl/manifests"
	"github.com/fwctl/fwctl/repo/layout"
)

// Result reports a verified repository.
type Result struct {
	Versions map[string]int64 `json:"versions"`
	// Delegated lists the delegated targets roles verified (named roles
	// and hashed bins), breadth first from the top-level targets.
	Delegated []VerifiedRole `json:"delegated,omitempty"`
	Targets   []Target       `json:"targets"`

	targets  map[string]*metadata.TargetFiles
	director manifests.DirectorSet
}

// VerifyDir verifies a published repository directory: Verify reading dir.
func VerifyDir(dir string, trustedRoot []byte, now time.Time) (*Result, error) {
	return Verify(context.Background(), DirSource(dir), trustedRoot, now)
}

// Verify verifies a published repository the way a device does: starting
// from trustedRoot, it follows the root chain, then checks timestamp,
// snapshot and targets (signatures, thresholds, versions, hashes, expiry at
// now), then every delegated targets role reachable from targets (the same
// checks against the delegating role's keys and threshold, and that each of
// its targets is within the delegated paths; a failure is a *RoleError),
// then streams every target file and checks its length, hash and firmware
// metadata. It reads no more of any file than signed metadata records for
// it (or, where none does, than a device would), so a directory, a bucket
// and a served repository are verified alike. Errors reading src wrap
// fs.ErrNotExist for a missing file and ErrUnreachable for a transport
// failure.
func Verify(ctx context.Context, src Source, trustedRoot []byte, now time.Time) (*Result, error) {
	return verify(ctx, src, trustedRoot, now, true)
}

// VerifyMetadata is Verify without reading the target files: every
// metadata check, and each target's firmware metadata, but no target's
// length and hash against its file. For metadata whose targets were
// verified elsewhere (a site mirror checks a director's assignment
// against the image state it verified before, instead of hashing the
// image again for every device).
func VerifyMetadata(ctx context.Context, src Source, trustedRoot []byte, now time.Time) (*Result, error) {
	return verify(ctx, src, trustedRoot, now, false)
}

func verify(ctx context.Context, src Source, trustedRoot []byte, now time.Time, files bool) (*Result, error) {
	tm, err := trustedmetadata.New(trustedRoot)
	if err != nil {
		return nil, fmt.Errorf("trusted root: %w", err)
	}
	tm.RefTime = now
	for v := tm.Root.Signed.Version + 1; ; v++ {
		b, err := ReadLimited(ctx, src, fmt.Sprintf("metadata/%d.root.json", v), layout.MaxRootLength, false)
		if errors.Is(err, fs.ErrNotExist) {
			break
		}
		if err != nil {
			return nil, err
		}
		if _, err := tm.UpdateRoot(b); err != nil {
			return nil, fmt.Errorf("root version %d: %w", v, err)
		}
	}
	read := func(name string, limit int64, signed bool) ([]byte, error) {
		b, err := ReadLimited(ctx, src, "metadata/"+name, limit, signed)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", name, err)
		}
		return b, nil
	}
	b, err := read("timestamp.json", layout.MaxTimestampLength, false)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: is %s the repository's root (the one holding metadata/ and targets/), and was it published?", err, src)
	}
	if err != nil {
		return nil, err
	}
	if _, err := tm.UpdateTimestamp(b); err != nil {
		return nil, fmt.Errorf("timestamp: %w", err)
	}
	snap := tm.Timestamp.Signed.Meta["snapshot.json"]
	limit, signed := MetaLimit(snap, layout.MaxSnapshotLength)
	b, err = read(fmt.Sprintf("%d.snapshot.json", snap.Version), limit, signed)
	if err != nil && !isLengthMismatch(err) {
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	if _, err := tm.UpdateSnapshot(b, false); err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	tmeta := tm.Snapshot.Signed.Meta["targets.json"]
	limit, signed = MetaLimit(tmeta, layout.MaxTargetsLength)
	b, err = read(fmt.Sprintf("%d.targets.json", tmeta.Version), limit, signed)
	if err != nil && !isLengthMismatch(err) {
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("targets: %w", err)
	}
	targets, err := tm.UpdateTargets(b)
	if err != nil {
		return nil, fmt.Errorf("targets: %w", err)
	}
	res := &Result{Targets: nil, targets: targets.Signed.Targets, Versions: map[string]int64{
		metadata.ROOT: tm.Root.Signed.Version, metadata.TIMESTAMP: tm.Timestamp.Signed.Version,
		metadata.SNAPSHOT: tm.Snapshot.Signed.Version, metadata.TARGETS: targets.Signed.Version}}
	res.director = directorSet(tm, targets)
	delegated, delegatedTargets, err := verifyDelegated(ctx, tm, src)
	if err != nil {
		return nil, err
	}
	res.Delegated = delegated
	all := map[string]*metadata.TargetFiles{}
	for i, m := range append([]map[string]*metadata.TargetFiles{targets.Signed.Targets}, delegatedTargets...) {
		for _, tf := range SortedTargetFiles(m) {
			if err := verifyTarget(ctx, src, tf, files); err != nil {
				if i > 0 {
					err = fmt.Errorf("delegated role %s: %w", delegated[i-1].Role, err)
				}
				return nil, err
			}
			all[tf.Path] = tf
		}
	}
	res.Targets = ListTargets(all)
	return res, nil
}

// isLengthMismatch reports a file longer than signed metadata records.
func isLengthMismatch(err error) bool {
	var e *metadata.ErrLengthOrHashMismatch
	return errors.As(err, &e)
}

// verifyTarget checks a target's firmware metadata and, with file, its
// file.
func verifyTarget(ctx context.Context, src Source, tf *metadata.TargetFiles, file bool) error {
	if _, err := TargetFirmware(tf); err != nil && !errors.Is(err, manifests.ErrNotFirmware) {
		return fmt.Errorf("target %s: %w", tf.Path, err)
	}
	if !file {
		return nil
	}
	return verifyFile(ctx, src, TargetFile(tf), tf)
}

// verifyFile streams name from src, reading at most one byte more than
// tf's signed length, and checks its length and SHA-256.
func verifyFile(ctx context.Context, src Source, name string, tf *metadata.TargetFiles) error {
	f, err := src.Open(ctx, name)
	if err != nil {
		return fmt.Errorf("target %s: %w", tf.Path, err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, io.LimitReader(f, tf.Length+1))
	if err != nil {
		return fmt.Errorf("target %s: %w", tf.Path, err)
	}
	if n != tf.Length {
		return fmt.Errorf("target %s: length %d, metadata says %d", tf.Path, n, tf.Length)
	}
	if got, want := hex.EncodeToString(h.Sum(nil)), hex.EncodeToString(tf.Hashes["sha256"]); got != want {
		return fmt.Errorf("target %s: sha256 %s, metadata says %s: the file was modified", tf.Path, got, want)
	}
	return nil
}

// DirectorAssigned applies the director's device rule
// (manifests.DirectorPick) for device id to a verified director repository
// and returns the target assigned to it, or nil when nothing is.
func (r *Result) DirectorAssigned(id string) (*Target, error) {
	t, _, err := manifests.DirectorPick(r.director, id)
	if err != nil || t == nil {
		return nil, err
	}
	for i := range r.Targets {
		if r.Targets[i].Path == t.Path {
			return &r.Targets[i], nil
		}
	}
	return nil, fmt.Errorf("%w: director target %s is not among the verified targets", manifests.ErrInvalidAssignment, t.Path)
}

func directorSet(tm *trustedmetadata.TrustedMetadata, targets *metadata.Metadata[metadata.TargetsType]) manifests.DirectorSet {
	ds := manifests.DirectorSet{TargetsVersion: targets.Signed.Version, Delegations: targets.Signed.Delegations != nil}
	if b, ok := targets.Signed.UnrecognizedFields["director"]; ok {
		ds.Binding, _ = json.Marshal(b)
	}
	sm, tmeta := tm.Timestamp.Signed.Meta["snapshot.json"], tm.Snapshot.Signed.Meta["targets.json"]
	ds.HashChained = sm != nil && tmeta != nil && len(sm.Hashes) > 0 && len(tmeta.Hashes) > 0
	for _, tf := range SortedTargetFiles(targets.Signed.Targets) {
		t := manifests.DirectorTarget{Path: tf.Path}
		if tf.Custom != nil {
			t.Custom = *tf.Custom
		}
		ds.Targets = append(ds.Targets, t)
	}
	return ds
}

// File returns the signed description of the verified target at path.
func (r *Result) File(path string) (*metadata.TargetFiles, bool) {
	tf, ok := r.targets[path]
	return tf, ok
}
