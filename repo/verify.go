package repo

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/trustedmetadata"

	"github.com/fwctl/fwctl/manifests"
)

// VerifyResult reports a verified repository.
type VerifyResult struct {
	Versions map[string]int64 `json:"versions"`
	// Delegated lists the delegated targets roles verified (named roles
	// and hashed bins), breadth first from the top-level targets.
	Delegated []VerifiedRole `json:"delegated,omitempty"`
	Targets   []Target       `json:"targets"`

	targets map[string]*metadata.TargetFiles
}

// VerifyDir verifies a published repository directory the way a device
// does: starting from trustedRoot, it follows the root chain, then checks
// timestamp, snapshot and targets (signatures, thresholds, versions, hashes,
// expiry at now), then every delegated targets role reachable from targets
// (the same checks against the delegating role's keys and threshold, and
// that each of its targets is within the delegated paths; a failure is a
// *RoleError), then streams every target file and checks its length, hash
// and firmware metadata.
func VerifyDir(dir string, trustedRoot []byte, now time.Time) (*VerifyResult, error) {
	md := filepath.Join(dir, "metadata")
	tm, err := trustedmetadata.New(trustedRoot)
	if err != nil {
		return nil, fmt.Errorf("trusted root: %w", err)
	}
	tm.RefTime = now
	for v := tm.Root.Signed.Version + 1; ; v++ {
		b, err := os.ReadFile(filepath.Join(md, fmt.Sprintf("%d.root.json", v)))
		if errors.Is(err, os.ErrNotExist) {
			break
		}
		if err != nil {
			return nil, err
		}
		if _, err := tm.UpdateRoot(b); err != nil {
			return nil, fmt.Errorf("root version %d: %w", v, err)
		}
	}
	read := func(name string) ([]byte, error) {
		b, err := os.ReadFile(filepath.Join(md, name))
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", name, err)
		}
		return b, nil
	}
	b, err := read("timestamp.json")
	if err != nil {
		return nil, err
	}
	if _, err := tm.UpdateTimestamp(b); err != nil {
		return nil, fmt.Errorf("timestamp: %w", err)
	}
	b, err = read(fmt.Sprintf("%d.snapshot.json", tm.Timestamp.Signed.Meta["snapshot.json"].Version))
	if err != nil {
		return nil, err
	}
	if _, err := tm.UpdateSnapshot(b, false); err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	b, err = read(fmt.Sprintf("%d.targets.json", tm.Snapshot.Signed.Meta["targets.json"].Version))
	if err != nil {
		return nil, err
	}
	targets, err := tm.UpdateTargets(b)
	if err != nil {
		return nil, fmt.Errorf("targets: %w", err)
	}
	res := &VerifyResult{Targets: nil, targets: targets.Signed.Targets, Versions: map[string]int64{
		metadata.ROOT: tm.Root.Signed.Version, metadata.TIMESTAMP: tm.Timestamp.Signed.Version,
		metadata.SNAPSHOT: tm.Snapshot.Signed.Version, metadata.TARGETS: targets.Signed.Version}}
	delegated, delegatedTargets, err := verifyDelegated(tm, md)
	if err != nil {
		return nil, err
	}
	res.Delegated = delegated
	all := map[string]*metadata.TargetFiles{}
	for i, m := range append([]map[string]*metadata.TargetFiles{targets.Signed.Targets}, delegatedTargets...) {
		for _, tf := range sortedTargetFiles(m) {
			if err := verifyTarget(dir, tf); err != nil {
				if i > 0 {
					err = fmt.Errorf("delegated role %s: %w", delegated[i-1].Role, err)
				}
				return nil, err
			}
			all[tf.Path] = tf
		}
	}
	res.Targets = listTargets(all)
	return res, nil
}

// verifyTarget checks a target's firmware metadata and its file.
func verifyTarget(dir string, tf *metadata.TargetFiles) error {
	if _, err := parseTarget(tf); err != nil && !errors.Is(err, manifests.ErrNotFirmware) {
		return fmt.Errorf("target %s: %w", tf.Path, err)
	}
	return verifyFile(filepath.Join(dir, "targets", filepath.FromSlash(HashedTargetPath(tf))), tf)
}

func verifyFile(path string, tf *metadata.TargetFiles) error {
	f, err := os.Open(path)
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
