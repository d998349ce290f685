package repo

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/fwctl/fwctl/repo/layout"
)

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
