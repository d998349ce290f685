package blob

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/fwctl/fwctl/internal/atomicfile"
)

// Dir is a Store in a local directory. Put writes atomically (temp file,
// fsync, rename); reads go through os.Root, so a symlink cannot lead
// outside the directory. Files and directories whose names start with "."
// (atomicfile's temp files) are not listed.
type Dir string

func (d Dir) String() string { return string(d) }

func (d Dir) path(name string) (string, error) {
	if err := checkName(name); err != nil {
		return "", err
	}
	return filepath.Join(string(d), filepath.FromSlash(name)), nil
}

// Put implements Store.
func (d Dir) Put(_ context.Context, name string, r io.Reader, size int64) error {
	p, err := d.path(name)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return fmt.Errorf("put %s: %w", name, err)
	}
	return atomicfile.WriteFrom(p, func(w io.Writer) error {
		n, err := io.Copy(w, r)
		if err == nil && n != size {
			err = fmt.Errorf("put %s: got %d bytes, want %d", name, n, size)
		}
		return err
	}, 0o644)
}

func (d Dir) open(name string) (*os.File, os.FileInfo, error) {
	if err := checkName(name); err != nil {
		return nil, nil, err
	}
	root, err := os.OpenRoot(string(d))
	if err != nil {
		return nil, nil, fmt.Errorf("open %s: %w", d, err)
	}
	defer root.Close()
	f, err := root.Open(filepath.FromSlash(name))
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, fs.ErrPermission) {
			// A parent that is a file, a symlink leaving the directory:
			// no such file in the store.
			return nil, nil, fmt.Errorf("open %s in %s: %w (%w)", name, d, ErrNotExist, err)
		}
		return nil, nil, fmt.Errorf("open %s in %s: %w", name, d, err)
	}
	fi, err := f.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = fmt.Errorf("%s in %s is not a regular file: %w", name, d, ErrNotExist)
	}
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return f, fi, nil
}

// Get implements Store.
func (d Dir) Get(_ context.Context, name string, off, n int64) (io.ReadCloser, error) {
	f, _, err := d.open(name)
	if err != nil {
		return nil, err
	}
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		f.Close()
		return nil, fmt.Errorf("get %s: %w", name, err)
	}
	if n < 0 {
		return f, nil
	}
	return struct {
		io.Reader
		io.Closer
	}{io.LimitReader(f, n), f}, nil
}

// Stat implements Store.
func (d Dir) Stat(_ context.Context, name string) (Info, error) {
	f, fi, err := d.open(name)
	if err != nil {
		return Info{}, err
	}
	f.Close()
	return Info{Name: name, Size: fi.Size(), ModTime: fi.ModTime()}, nil
}

// List implements Store.
func (d Dir) List(_ context.Context, prefix string) ([]Info, error) {
	var out []Info
	err := filepath.WalkDir(string(d), func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(string(d), p)
		rel = filepath.ToSlash(rel)
		if rel == "." {
			return nil
		}
		if strings.HasPrefix(e.Name(), ".") {
			if e.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if e.IsDir() {
			// Only descend where names with the prefix can be.
			if !strings.HasPrefix(rel+"/", prefix) && !strings.HasPrefix(prefix, rel+"/") {
				return filepath.SkipDir
			}
			return nil
		}
		if !e.Type().IsRegular() || !strings.HasPrefix(rel, prefix) {
			return nil
		}
		fi, err := e.Info()
		if err != nil {
			return err
		}
		out = append(out, Info{Name: rel, Size: fi.Size(), ModTime: fi.ModTime()})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list %s in %s: %w", prefix, d, err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}
