package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fwctl/fwctl/repo/blob"
	"github.com/fwctl/fwctl/repo/layout"
)

// fileInfo identifies one version of a served file: a cached copy is
// served only while the file still has the same size, modification time
// and (in a directory) inode.
type fileInfo struct {
	size int64
	mod  time.Time
	sys  os.FileInfo // a directory's file, for os.SameFile; nil for a bucket
}

func (a fileInfo) same(b fileInfo) bool {
	if a.size != b.size || !a.mod.Equal(b.mod) || (a.sys == nil) != (b.sys == nil) {
		return false
	}
	return a.sys == nil || os.SameFile(a.sys, b.sys)
}

// source reads the served repository. Names are already checked
// (metadata/… or targets/…, fs.ValidPath, no dot files).
type source interface {
	// stat describes the regular file name; a missing one wraps
	// blob.ErrNotExist.
	stat(ctx context.Context, name string) (fileInfo, error)
	// open opens name to read it from the start. In a directory the
	// reader is an *os.File, so that a download is a sendfile.
	open(ctx context.Context, name string) (io.ReadSeekCloser, fileInfo, error)
	String() string
}

// storeSource serves any blob.Store (an S3 bucket): one Stat per request
// that the cache cannot answer, and ranged reads.
type storeSource struct{ st blob.Store }

func (s storeSource) String() string { return s.st.String() }

func (s storeSource) stat(ctx context.Context, name string) (fileInfo, error) {
	fi, err := s.st.Stat(ctx, name)
	if err != nil {
		return fileInfo{}, err
	}
	return fileInfo{size: fi.Size, mod: fi.ModTime}, nil
}

func (s storeSource) open(ctx context.Context, name string) (io.ReadSeekCloser, fileInfo, error) {
	fi, err := s.stat(ctx, name)
	if err != nil {
		return nil, fileInfo{}, err
	}
	return blob.NewReader(ctx, s.st, name, fi.size), fi, nil
}

// dirSource serves a directory through os.Root, so that no name or
// symlink leads outside it. The roots are opened once and checked again
// at most once a second, so that a repository directory (or its
// metadata/) replaced by a rename is followed; a stat of a metadata file
// is then one fstatat.
type dirSource struct {
	dir     string
	watch   *watcher   // of metadata/; nil when it could not be set up
	mu      sync.Mutex // held while re-opening
	roots   atomic.Pointer[dirRoots]
	checked atomic.Int64 // UnixNano of the last check
}

type dirRoots struct {
	top *os.Root
	md  *os.Root // metadata/ beneath top; nil when there is none
}

// recheck is how often dirSource checks that its roots are still the
// directories at its path.
const recheck = time.Second

func newDirSource(dir string) (*dirSource, error) {
	d := &dirSource{dir: dir}
	if w, err := newWatcher(); err == nil {
		if err := w.add(filepath.Join(dir, layout.MetadataDir)); err == nil {
			d.watch = w
		}
	}
	if _, err := d.current(); err != nil {
		return nil, err
	}
	return d, nil
}

// generation returns a number that changes whenever metadata/ may have
// changed, and false when there is no watch (compare on every request).
func (d *dirSource) generation() (uint64, bool) {
	if d.watch == nil {
		return 0, false
	}
	return d.watch.gen.Load(), true
}

func (d *dirSource) String() string { return d.dir }

// current returns the open roots, re-opening them when the directory (or
// its metadata/) at d.dir is no longer the one they hold.
func (d *dirSource) current() (*dirRoots, error) {
	r := d.roots.Load()
	now := time.Now().UnixNano()
	if r != nil && now-d.checked.Load() < int64(recheck) {
		return r, nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if r = d.roots.Load(); r != nil && now-d.checked.Load() < int64(recheck) {
		return r, nil
	}
	if r != nil && r.valid(d.dir) {
		d.checked.Store(now)
		return r, nil
	}
	top, err := os.OpenRoot(d.dir)
	if err != nil {
		return nil, fmt.Errorf("open repository %s: %w", d.dir, err)
	}
	next := &dirRoots{top: top}
	if md, err := top.OpenRoot(layout.MetadataDir); err == nil {
		next.md = md
	}
	d.roots.Store(next)
	d.checked.Store(now)
	if r != nil && d.watch != nil {
		d.watch.add(filepath.Join(d.dir, layout.MetadataDir)) // the new directory
	}
	if r != nil {
		// os.Root counts its users: requests still using the old
		// roots finish first.
		r.close()
	}
	return next, nil
}

func (r *dirRoots) valid(dir string) bool {
	want, err := os.Stat(dir)
	got, err2 := r.top.Stat(".")
	if err != nil || err2 != nil || !os.SameFile(want, got) {
		return false
	}
	want, err = r.top.Lstat(layout.MetadataDir)
	if r.md == nil {
		return err != nil
	}
	got, err2 = r.md.Stat(".")
	return err == nil && err2 == nil && os.SameFile(want, got)
}

func (r *dirRoots) close() {
	r.top.Close()
	if r.md != nil {
		r.md.Close()
	}
}

func (d *dirSource) stat(ctx context.Context, name string) (fileInfo, error) {
	fi, err := d.stat1(name)
	if errors.Is(err, fs.ErrClosed) {
		fi, err = d.stat1(name) // the roots were re-opened meanwhile
	}
	return fi, err
}

func (d *dirSource) stat1(name string) (fileInfo, error) {
	r, err := d.current()
	if err != nil {
		return fileInfo{}, err
	}
	var fi os.FileInfo
	base, inMetadata := strings.CutPrefix(name, layout.MetadataDir+"/")
	if inMetadata && r.md != nil && !strings.Contains(base, "/") {
		fi, err = r.md.Lstat(base)
		if err == nil && fi.Mode()&fs.ModeSymlink != 0 {
			fi, err = r.top.Stat(name) // followed, but only within the root
		}
	} else {
		fi, err = r.top.Stat(name)
	}
	if err != nil {
		return fileInfo{}, d.notFound(name, err)
	}
	if !fi.Mode().IsRegular() {
		return fileInfo{}, fmt.Errorf("%s in %s is not a regular file: %w", name, d.dir, blob.ErrNotExist)
	}
	return fileInfo{size: fi.Size(), mod: fi.ModTime(), sys: fi}, nil
}

// notFound maps what os.Root refuses (a parent that is a file, a symlink
// leaving the directory) to "no such file"; a permission error stays one.
func (d *dirSource) notFound(name string, err error) error {
	if errors.Is(err, fs.ErrPermission) {
		return fmt.Errorf("open %s in %s: %w", name, d.dir, err)
	}
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrClosed) {
		return fmt.Errorf("open %s in %s: %w", name, d.dir, err)
	}
	return fmt.Errorf("open %s in %s: %w (%w)", name, d.dir, blob.ErrNotExist, err)
}

func (d *dirSource) open(ctx context.Context, name string) (io.ReadSeekCloser, fileInfo, error) {
	f, fi, err := d.open1(name)
	if errors.Is(err, fs.ErrClosed) {
		f, fi, err = d.open1(name) // the roots were re-opened meanwhile
	}
	return f, fi, err
}

func (d *dirSource) open1(name string) (io.ReadSeekCloser, fileInfo, error) {
	r, err := d.current()
	if err != nil {
		return nil, fileInfo{}, err
	}
	f, err := r.top.Open(name)
	if err != nil {
		return nil, fileInfo{}, d.notFound(name, err)
	}
	fi, err := f.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = fmt.Errorf("%s in %s is not a regular file: %w", name, d.dir, blob.ErrNotExist)
	}
	if err != nil {
		f.Close()
		return nil, fileInfo{}, err
	}
	return f, fileInfo{size: fi.Size(), mod: fi.ModTime(), sys: fi}, nil
}
