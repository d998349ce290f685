package repo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/fwctl/fwctl/repo/blob"
)

// UploadOptions control Upload.
type UploadOptions struct {
	// Progress, when set, is told about each file uploaded or skipped.
	Progress func(msg string)
}

// UploadResult reports what Upload did.
type UploadResult struct {
	Uploaded []string `json:"uploaded"`
	Skipped  int      `json:"skipped"` // immutable files the store already held
}

// UploadError is returned when an upload stops part-way. The store still
// holds its previous timestamp.json, so devices keep seeing the previous
// release; running the same publish again finishes the job.
type UploadError struct {
	Store string // where to
	File  string // the file that failed
	Done  int    // files uploaded before it
	Total int    // files to upload
	Err   error
	Rerun string // the command to run again
}

// Error says what failed, that devices are unaffected, and what to run.
func (e *UploadError) Error() string {
	return fmt.Sprintf("upload to %s stopped at %s (file %d of %d): %v; timestamp.json there was not replaced, so devices still see the previous release: fix the cause and run '%s' again to finish",
		e.Store, e.File, e.Done+1, e.Total, e.Err, e.Rerun)
}

// Unwrap returns the store's error.
func (e *UploadError) Unwrap() error { return e.Err }

// uploadRank orders a repository's files for upload: files nothing
// references yet first (images, bundles, N.ROLE.json), then unversioned
// metadata such as root.json, and timestamp.json, which clients read
// first and which names everything else, last.
func uploadRank(name string) int {
	switch {
	case name == timestampName:
		return 3
	case strings.HasPrefix(name, "metadata/") && !versionedRE(path.Base(name)):
		return 2
	case strings.HasPrefix(name, "metadata/"):
		return 1
	default:
		return 0
	}
}

// versionedRE reports whether a metadata file name is N.ROLE.json (or a
// bundle of one): it never changes once published.
func versionedRE(name string) bool {
	v, _, ok := strings.Cut(name, ".")
	if !ok || v == "" {
		return false
	}
	for _, c := range v {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// UploadOrder sorts names (slash-separated, relative to the repository) in
// the order Upload writes them: timestamp.json last.
func UploadOrder(names []string) []string {
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
// in UploadOrder, so a device or CDN reading st at any moment sees either
// the previous release or the new one: immutable files (hash-named images,
// N.ROLE.json) that st already holds with the same size are skipped, and
// timestamp.json is written last. If a write fails, Upload stops before
// timestamp.json and returns an *UploadError naming rerun as the fix.
func Upload(ctx context.Context, dir string, st blob.Store, rerun string, opt UploadOptions) (*UploadResult, error) {
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
	if sizes[timestampName] == 0 {
		return nil, fmt.Errorf("%s has no %s: run 'fwctl publish' into it first", dir, timestampName)
	}
	names = UploadOrder(names)
	res := &UploadResult{}
	for i, name := range names {
		fail := func(err error) error {
			return &UploadError{Store: st.String(), File: name, Done: i, Total: len(names), Err: err, Rerun: rerun}
		}
		if uploadRank(name) <= 1 {
			// Immutable: hash- or version-named.
			if fi, err := st.Stat(ctx, name); err == nil && fi.Size == sizes[name] {
				res.Skipped++
				continue
			} else if err != nil && !errors.Is(err, blob.ErrNotExist) {
				return res, fail(err)
			}
		}
		progress(fmt.Sprintf("upload %s (%d/%d)", name, i+1, len(names)))
		if err := putFile(ctx, st, name, filepath.Join(dir, filepath.FromSlash(name)), sizes[name]); err != nil {
			return res, fail(err)
		}
		res.Uploaded = append(res.Uploaded, name)
	}
	return res, nil
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
// online. The caller removes the directory.
func StageFrom(ctx context.Context, st blob.Store) (string, error) {
	dir, err := os.MkdirTemp("", "fwctl-publish-")
	if err != nil {
		return "", fmt.Errorf("staging directory: %w", err)
	}
	b, err := blob.ReadAll(ctx, st, timestampName)
	switch {
	case errors.Is(err, blob.ErrNotExist):
		return dir, nil // first publish
	case err != nil:
		os.RemoveAll(dir)
		return "", fmt.Errorf("read the published timestamp: %w", err)
	}
	err = os.MkdirAll(filepath.Join(dir, "metadata"), 0o755)
	if err == nil {
		err = os.WriteFile(filepath.Join(dir, filepath.FromSlash(timestampName)), b, 0o644)
	}
	if err != nil {
		os.RemoveAll(dir)
		return "", fmt.Errorf("staging directory: %w", err)
	}
	return dir, nil
}
