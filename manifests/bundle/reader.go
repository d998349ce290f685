package bundle

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Bundle is an opened bundle: its manifest and its entries, read lazily.
type Bundle struct {
	Manifest Manifest
	// Path is where the bundle was opened from (a file or a directory).
	Path string

	ra      io.ReaderAt         // tar: the whole file
	entries map[string]tarEntry // tar
	root    *os.Root            // directory
	closer  io.Closer
}

type tarEntry struct{ off, size int64 }

// File is one entry: its bytes and length.
type File struct {
	io.ReadSeeker
	Size   int64
	closer io.Closer
}

// Close releases the entry.
func (f *File) Close() error {
	if f.closer != nil {
		return f.closer.Close()
	}
	return nil
}

// Open opens the bundle at p: a bundle file, a bundle directory (holding
// fwbundle.json), or a directory such as a mount point holding exactly one
// *.fwbundle file or one bundle directory.
func Open(p string, lim Limits) (*Bundle, error) {
	fi, err := os.Stat(p)
	if err != nil {
		return nil, fmt.Errorf("open bundle: %w", err)
	}
	if !fi.IsDir() {
		f, err := os.Open(p)
		if err != nil {
			return nil, fmt.Errorf("open bundle: %w", err)
		}
		b, err := Read(f, fi.Size(), lim)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("bundle %s: %w", p, err)
		}
		b.Path, b.closer = p, f
		return b, nil
	}
	if _, err := os.Stat(filepath.Join(p, ManifestName)); err == nil {
		b, err := openDir(p, lim)
		if err != nil {
			return nil, fmt.Errorf("bundle %s: %w", p, err)
		}
		return b, nil
	}
	found, err := find(p)
	if err != nil {
		return nil, err
	}
	return Open(found, lim)
}

// find looks for one bundle at the top of dir (a mounted stick).
func find(dir string) (string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return "", fmt.Errorf("look for a bundle in %s: %w", dir, err)
	}
	var found []string
	for _, e := range ents {
		name := e.Name()
		switch {
		case strings.HasPrefix(name, "."):
		case e.Type().IsRegular() && strings.HasSuffix(strings.ToLower(name), Ext):
			found = append(found, name)
		case e.IsDir():
			if _, err := os.Stat(filepath.Join(dir, name, ManifestName)); err == nil {
				found = append(found, name)
			}
		}
	}
	switch len(found) {
	case 0:
		return "", fmt.Errorf("%w: %s holds no %s file and no bundle directory (one with %s)", ErrNotFound, dir, Ext, ManifestName)
	case 1:
		return filepath.Join(dir, found[0]), nil
	}
	return "", fmt.Errorf("%s holds %d bundles (%s): name the one to install", dir, len(found), strings.Join(found, ", "))
}

// Read reads a bundle file of size bytes from r: it indexes the entries
// (reading only their headers) and parses the manifest.
func Read(r io.ReaderAt, size int64, lim Limits) (*Bundle, error) {
	lim = lim.orDefault()
	if size > lim.MaxSize {
		return nil, fmt.Errorf("%w: %d bytes, at most %d accepted", ErrTooLarge, size, lim.MaxSize)
	}
	b := &Bundle{ra: r, entries: map[string]tarEntry{}}
	var off int64
	for i := 0; ; i++ {
		h, err := next(r, off, size)
		if err == errEnd {
			if err := checkEnd(r, size, off); err != nil {
				return nil, err
			}
			break
		}
		if err != nil {
			return nil, fmt.Errorf("entry %d: %w", i+1, err)
		}
		if i >= lim.MaxEntries {
			return nil, fmt.Errorf("%w: more than %d entries", ErrTooLarge, lim.MaxEntries)
		}
		if h.typeflag != '0' {
			return nil, fmt.Errorf("%w: entry %q is not a regular file (type %q)", ErrFormat, trunc(h.name), h.typeflag)
		}
		if err := CheckName(h.name); err != nil {
			return nil, err
		}
		if i == 0 && h.name != ManifestName || i > 0 && h.name == ManifestName {
			return nil, fmt.Errorf("%w: the first entry must be %s, and only the first (found %q as entry %d)", ErrFormat, ManifestName, trunc(h.name), i+1)
		}
		if _, dup := b.entries[h.name]; dup {
			return nil, fmt.Errorf("%w: %q", ErrDuplicate, h.name)
		}
		b.entries[h.name] = tarEntry{h.off, h.size}
		off = h.off + (h.size+block-1)&^(block-1)
	}
	m, ok := b.entries[ManifestName]
	if !ok {
		return nil, fmt.Errorf("%w: empty, or no %s", ErrFormat, ManifestName)
	}
	if m.size > lim.MaxManifest {
		return nil, fmt.Errorf("%w: manifest of %d bytes, at most %d", ErrTooLarge, m.size, lim.MaxManifest)
	}
	raw := make([]byte, m.size)
	if _, err := r.ReadAt(raw, m.off); err != nil {
		return nil, fmt.Errorf("%w: manifest: %v", ErrTruncated, err)
	}
	if err := b.parseManifest(raw); err != nil {
		return nil, err
	}
	return b, nil
}

// checkEnd requires tar's end-of-archive marker (two zero blocks) at end,
// so that a file cut at a block boundary is not taken for a whole one.
func checkEnd(r io.ReaderAt, size, end int64) error {
	if size-end < 1024 {
		return fmt.Errorf("%w: no end-of-archive marker after the last entry", ErrTruncated)
	}
	var blk [1024]byte
	if _, err := r.ReadAt(blk[:], end); err != nil {
		return fmt.Errorf("%w: %v", ErrTruncated, err)
	}
	if blk != [1024]byte{} {
		return fmt.Errorf("%w: end-of-archive marker expected at byte %d", ErrFormat, end)
	}
	return nil
}

func openDir(dir string, lim Limits) (*Bundle, error) {
	lim = lim.orDefault()
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	b := &Bundle{Path: dir, root: root, closer: root}
	// A directory's entries are bounded one by one: Open refuses what is
	// not a regular file inside it, and the TUF client reads no entry past
	// its signed length or cap.
	f, err := b.Open(ManifestName)
	if err != nil {
		root.Close()
		return nil, err
	}
	defer f.Close()
	if f.Size > lim.MaxManifest {
		root.Close()
		return nil, fmt.Errorf("%w: manifest of %d bytes, at most %d", ErrTooLarge, f.Size, lim.MaxManifest)
	}
	raw, err := io.ReadAll(io.LimitReader(f, lim.MaxManifest))
	if err == nil {
		err = b.parseManifest(raw)
	}
	if err != nil {
		root.Close()
		return nil, err
	}
	return b, nil
}

func (b *Bundle) parseManifest(raw []byte) error {
	var m Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return fmt.Errorf("%w: manifest: %v", ErrFormat, err)
	}
	if m.Format != Format {
		return fmt.Errorf("%w: manifest format %q, want %q", ErrFormat, trunc(m.Format), Format)
	}
	if m.Version < 1 {
		return fmt.Errorf("%w: manifest version %d", ErrFormat, m.Version)
	}
	if m.Version > Version {
		return fmt.Errorf("%w: version %d, this reader knows up to %d: update fwagent first", ErrVersion, m.Version, Version)
	}
	b.Manifest = m
	return nil
}

// Open opens entry name ("metadata/timestamp.json", "targets/...").
// A missing entry wraps ErrNotFound and fs.ErrNotExist.
func (b *Bundle) Open(name string) (*File, error) {
	if err := CheckName(name); err != nil {
		return nil, err
	}
	if b.root == nil {
		e, ok := b.entries[name]
		if !ok {
			return nil, fmt.Errorf("%s: %w (%w)", name, ErrNotFound, fs.ErrNotExist)
		}
		return &File{ReadSeeker: io.NewSectionReader(b.ra, e.off, e.size), Size: e.size}, nil
	}
	f, err := b.root.Open(filepath.FromSlash(name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w (%w)", name, ErrNotFound, fs.ErrNotExist)
	}
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%w: %s is not a regular file", ErrFormat, name)
	}
	return &File{ReadSeeker: f, Size: fi.Size(), closer: f}, nil
}

// Names lists the entries of a bundle file, sorted (nil for a directory).
func (b *Bundle) Names() []string {
	out := make([]string, 0, len(b.entries))
	for n := range b.entries {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Close releases the bundle.
func (b *Bundle) Close() error {
	if b.closer != nil {
		return b.closer.Close()
	}
	return nil
}
