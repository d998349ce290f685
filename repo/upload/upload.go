// Package upload copies a published repository (the directory
// repo.Workspace.Publish wrote) to a blob store in an order that keeps the
// store valid at every instant: files nothing references yet first, then
// unversioned metadata, and timestamp.json last, replaced only by
// compare-and-swap over the one the publish was staged from (or a re-sign
// of it by fwrepo). It never signs anything itself: re-signing a timestamp
// that lost a race goes through a callback.
package upload

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/fwctl/fwctl/repo/blob"
	"github.com/fwctl/fwctl/repo/layout"
)

// Options control Upload.
type Options struct {
	// Progress, when set, is told about each file uploaded or skipped.
	Progress func(msg string)
	// SignTimestamp signs a timestamp again (its signatures cleared) after
	// Upload raised its version above one fwrepo re-signed meanwhile
	// (Workspace.SignTimestamp). Without it, such a race fails the upload.
	SignTimestamp func(ts *metadata.Metadata[metadata.TimestampType]) error
}

// TimestampAttempts bounds how often Upload writes timestamp.json when
// another writer keeps replacing it (fwrepo re-signs at most every few
// minutes, so losing more than once in a row is already unusual).
const TimestampAttempts = 4

// Result reports what Upload did.
type Result struct {
	Uploaded []string `json:"uploaded"`
	Skipped  int      `json:"skipped"` // immutable files the store already held
}

// Error is returned when an upload stops part-way. The store still
// holds its previous timestamp.json, so devices keep seeing the previous
// release; running the same publish again finishes the job.
type Error struct {
	Store string // where to
	File  string // the file that failed
	Done  int    // files uploaded before it
	Total int    // files to upload
	Err   error
	Rerun string // the command to run again
}

// Error says what failed, that devices are unaffected, and what to run.
func (e *Error) Error() string {
	if errors.Is(e.Err, ErrConflict) {
		return fmt.Sprintf("upload to %s refused at %s (file %d of %d): %v; timestamp.json there was not replaced, so devices still see that release: publish from the workspace that made it, or bring its metadata/ into this one, instead of running '%s' again",
			e.Store, e.File, e.Done+1, e.Total, e.Err, e.Rerun)
	}
	return fmt.Sprintf("upload to %s stopped at %s (file %d of %d): %v; timestamp.json there was not replaced, so devices still see the previous release: fix the cause and run '%s' again to finish",
		e.Store, e.File, e.Done+1, e.Total, e.Err, e.Rerun)
}

// Unwrap returns the store's error.
func (e *Error) Unwrap() error { return e.Err }

// uploadRank orders a repository's files for upload: files nothing
// references yet first (images, bundles, N.ROLE.json), then unversioned
// metadata such as root.json, and timestamp.json, which clients read
// first and which names everything else, last.
func uploadRank(name string) int {
	switch {
	case name == layout.Timestamp:
		return 3
	case strings.HasPrefix(name, layout.MetadataDir+"/") && !layout.Immutable(name):
		return 2
	case strings.HasPrefix(name, layout.MetadataDir+"/"):
		return 1
	default:
		return 0
	}
}

// Order sorts names (slash-separated, relative to the repository) in
// the order Upload writes them: timestamp.json last.
func Order(names []string) []string {
	out := append([]string(nil), names...)
	sort.SliceStable(out, func(i, j int) bool {
		ri, rj := uploadRank(out[i]), uploadRank(out[j])
		if ri != rj {
			return ri < rj
		}
		return out[i] < out[j]
	})
	return out
}

// Upload copies the published repository in dir (Publish's output) to st
// in Order, so a device or CDN reading st at any moment sees either
// the previous release or the new one: immutable files (hash-named images,
// N.ROLE.json) that st already holds with the same size are skipped, and
// timestamp.json is written last. If a write fails, Upload stops before
// timestamp.json and returns an *Error naming rerun as the fix.
//
// When dir came from StageFrom, timestamp.json replaces only the one
// StageFrom read (blob.Swapper: S3 If-Match, or If-None-Match: * when there
// was none). If fwrepo re-signed it in between, Upload re-reads it and
// writes ours again one version above it (the snapshot it names is
// unchanged), a few times at most; if it still loses, or a timestamp
// naming another snapshot landed (another publish), it stops with an
// *Error wrapping blob.ErrChanged and writes nothing over it.
func Upload(ctx context.Context, dir string, st blob.Store, rerun string, opt Options) (*Result, error) {
	progress := opt.Progress
	if progress == nil {
		progress = func(string) {}
	}
	local := blob.Dir(dir)
	files, err := local.List(ctx, "")
	if err != nil {
		return nil, err
	}
	sizes := map[string]int64{}
	var names []string
	for _, f := range files {
		if strings.HasPrefix(f.Name, "metadata/") || strings.HasPrefix(f.Name, "targets/") {
			names = append(names, f.Name)
			sizes[f.Name] = f.Size
		}
	}
	if sizes[layout.Timestamp] == 0 {
		return nil, fmt.Errorf("%s has no %s: run 'fwctl publish' into it first", dir, layout.Timestamp)
	}
	seed, err := readSeed(dir, st)
	if err != nil {
		return nil, err
	}
	names = Order(names)
	res := &Result{}
	for i, name := range names {
		fail := func(err error) error {
			return &Error{Store: st.String(), File: name, Done: i, Total: len(names), Err: err, Rerun: rerun}
		}
		switch uploadRank(name) {
		case 0:
			// A target: hash-named, so the same name holds the same bytes.
			if fi, err := st.Stat(ctx, name); err == nil && fi.Size == sizes[name] {
				res.Skipped++
				continue
			} else if err != nil && !errors.Is(err, blob.ErrNotExist) {
				return res, fail(err)
			}
		case 1:
			// Versioned metadata: never written over with other bytes.
			done, err := putImmutable(ctx, st, name, filepath.Join(dir, filepath.FromSlash(name)))
			if err != nil {
				return res, fail(err)
			}
			if !done {
				res.Skipped++
				continue
			}
			progress(fmt.Sprintf("upload %s (%d/%d)", name, i+1, len(names)))
			res.Uploaded = append(res.Uploaded, name)
			continue
		}
		progress(fmt.Sprintf("upload %s (%d/%d)", name, i+1, len(names)))
		if name == layout.Timestamp && seed != nil {
			if err := putTimestamp(ctx, dir, st, seed, opt.SignTimestamp); err != nil {
				return res, fail(err)
			}
		} else if err := putFile(ctx, st, name, filepath.Join(dir, filepath.FromSlash(name)), sizes[name]); err != nil {
			return res, fail(err)
		}
		res.Uploaded = append(res.Uploaded, name)
	}
	return res, nil
}

// ErrConflict is wrapped when the store already holds a versioned
// metadata file with other bytes than this release's: another publish wrote
// it (two workspaces publishing into one store). Nothing is written over it.
var ErrConflict = errors.New("the store holds another publish's file under the same name")

// putImmutable uploads the versioned metadata file src as name unless st
// holds it already (done false). A different file under that name, or one
// that appears while this upload writes it (a create-only write: S3
// If-None-Match: *), wraps ErrConflict.
func putImmutable(ctx context.Context, st blob.Store, name, src string) (done bool, err error) {
	data, err := os.ReadFile(src)
	if err != nil {
		return false, err
	}
	conflict := func(cur []byte) error {
		return fmt.Errorf("%w: %s in %s has %d bytes that differ from this release's %d: another workspace (or an older copy of this one) published a release there; nothing was written over it",
			ErrConflict, name, st, len(cur), len(data))
	}
	cur, err := blob.ReadAll(ctx, st, name)
	switch {
	case err == nil && bytes.Equal(cur, data):
		return false, nil
	case err == nil:
		return false, conflict(cur)
	case !errors.Is(err, blob.ErrNotExist):
		return false, err
	}
	sw, ok := st.(blob.Swapper)
	if !ok {
		return true, st.Put(ctx, name, bytes.NewReader(data), int64(len(data)))
	}
	if err := sw.Swap(ctx, name, data, ""); errors.Is(err, blob.ErrChanged) {
		cur, _ := blob.ReadAll(ctx, st, name)
		if bytes.Equal(cur, data) {
			return false, nil
		}
		return false, conflict(cur)
	} else if err != nil {
		return false, err
	}
	return true, nil
}

func putFile(ctx context.Context, st blob.Store, name, src string, size int64) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	return st.Put(ctx, name, io.NewSectionReader(f, 0, size), size)
}

// StageFrom prepares a local directory to Publish into before Upload to
// st: an empty repository holding st's current timestamp.json (if any), so
// the new timestamp's version follows the one fwrepo may have re-signed
// online, and a note of which timestamp that was, so Upload replaces only
// it. The caller removes the directory.
func StageFrom(ctx context.Context, st blob.Store) (string, error) {
	dir, err := os.MkdirTemp("", "fwctl-publish-")
	if err != nil {
		return "", fmt.Errorf("staging directory: %w", err)
	}
	b, seed, err := readStoredTimestamp(ctx, st)
	if err != nil {
		os.RemoveAll(dir)
		return "", fmt.Errorf("read the published timestamp: %w", err)
	}
	err = os.MkdirAll(filepath.Join(dir, "metadata"), 0o755)
	if err == nil && b != nil {
		err = os.WriteFile(filepath.Join(dir, filepath.FromSlash(layout.Timestamp)), b, 0o644)
	}
	if err == nil && seed != nil {
		var j []byte
		if j, err = json.Marshal(seed); err == nil {
			err = os.WriteFile(filepath.Join(dir, seedFile), j, 0o644)
		}
	}
	if err != nil {
		os.RemoveAll(dir)
		return "", fmt.Errorf("staging directory: %w", err)
	}
	return dir, nil
}

// seedFile, in a staging directory (outside metadata/ and targets/, so
// never uploaded), records the stageSeed StageFrom read.
const seedFile = ".fwctl-seed.json"

// stageSeed identifies the timestamp.json a store held when it was read.
type stageSeed struct {
	Tag      string `json:"tag"`                // blob.Swapper tag; "" when there was none
	Snapshot int64  `json:"snapshot,omitempty"` // the snapshot version it names
}

// readStoredTimestamp reads st's timestamp.json (nil if there is none) and
// its stageSeed, which is nil when st cannot replace files conditionally.
func readStoredTimestamp(ctx context.Context, st blob.Store) ([]byte, *stageSeed, error) {
	sw, ok := st.(blob.Swapper)
	if !ok {
		b, err := blob.ReadAll(ctx, st, layout.Timestamp)
		if errors.Is(err, blob.ErrNotExist) {
			return nil, nil, nil
		}
		return b, nil, err
	}
	b, tag, err := sw.GetTagged(ctx, layout.Timestamp)
	switch {
	case errors.Is(err, blob.ErrNotExist):
		return nil, &stageSeed{}, nil // first publish
	case err != nil:
		return nil, nil, err
	}
	ts, err := metadata.Timestamp().FromBytes(b)
	if err != nil {
		return nil, nil, fmt.Errorf("%s in %s: %w", layout.Timestamp, st, err)
	}
	seed := &stageSeed{Tag: tag}
	if m := ts.Signed.Meta["snapshot.json"]; m != nil {
		seed.Snapshot = m.Version
	}
	return b, seed, nil
}

// readSeed returns the stageSeed StageFrom left in dir, or nil when dir
// was not staged from a store that can replace files conditionally (then
// timestamp.json is written unconditionally, as to a plain directory).
func readSeed(dir string, st blob.Store) (*stageSeed, error) {
	b, err := os.ReadFile(filepath.Join(dir, seedFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var seed stageSeed
	if err := json.Unmarshal(b, &seed); err != nil {
		return nil, fmt.Errorf("%s: %w: remove %s and publish again", filepath.Join(dir, seedFile), err, dir)
	}
	if _, ok := st.(blob.Swapper); !ok {
		return nil, fmt.Errorf("%s cannot replace files conditionally, so timestamp.json could overwrite a re-signed one: upload to a directory or S3", st)
	}
	return &seed, nil
}

// putTimestamp writes dir's timestamp.json over the one seed names, and
// over timestamps fwrepo re-signed from that one since (see Upload),
// through blob.Replace.
func putTimestamp(ctx context.Context, dir string, st blob.Store, seed *stageSeed, sign func(*metadata.Metadata[metadata.TimestampType]) error) error {
	sw := st.(blob.Swapper) // readSeed checked
	data, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(layout.Timestamp)))
	if err != nil {
		return err
	}
	ts, err := metadata.Timestamp().FromBytes(data)
	if err != nil {
		return fmt.Errorf("staged %s: %w", layout.Timestamp, err)
	}
	refused := false
	_, err = blob.Replace(ctx, sw, layout.Timestamp, TimestampAttempts, func(cur []byte, tag string) ([]byte, error) {
		if tag == seed.Tag {
			return data, nil // what the publish was staged from
		}
		refused = true
		if cur == nil {
			return nil, fmt.Errorf("%w: %s was removed from %s since this publish read it; every other file of this release is uploaded, and nothing was written", blob.ErrChanged, layout.Timestamp, st)
		}
		stored, err := metadata.Timestamp().FromBytes(cur)
		if err != nil {
			return nil, fmt.Errorf("%s in %s: %w", layout.Timestamp, st, err)
		}
		if m := stored.Signed.Meta["snapshot.json"]; seed.Tag == "" || m == nil || m.Version != seed.Snapshot {
			// Not a re-sign of what was read: another publish landed.
			// Replacing its timestamp would un-publish that release.
			return nil, fmt.Errorf("%w: another publish wrote timestamp v%d meanwhile, naming another snapshot than the one read; every other file of this release is uploaded, and nothing was written over that timestamp",
				blob.ErrChanged, stored.Signed.Version)
		}
		if ts.Signed.Version <= stored.Signed.Version {
			if sign == nil {
				return nil, fmt.Errorf("%w: fwrepo re-signed it as v%d, and this upload cannot sign ours again; every other file of the release is uploaded", blob.ErrChanged, stored.Signed.Version)
			}
			ts.Signed.Version = stored.Signed.Version + 1
			ts.ClearSignatures()
			if err := sign(ts); err != nil {
				return nil, fmt.Errorf("sign timestamp v%d: %w", ts.Signed.Version, err)
			}
			if data, err = ts.ToBytes(true); err != nil {
				return nil, fmt.Errorf("encode timestamp: %w", err)
			}
		}
		refused = false
		return data, nil
	})
	if err != nil && !refused && errors.Is(err, blob.ErrChanged) {
		return fmt.Errorf("%w (fwrepo re-signing it?); every other file of the release is uploaded", err)
	}
	return err
}
