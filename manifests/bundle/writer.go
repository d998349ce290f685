package bundle

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"time"
)

// Writer writes a bundle file: the manifest first, then entries in the
// order added. Headers carry no owner and a zero time, so the same inputs
// give the same bytes.
type Writer struct {
	tw   *tar.Writer
	seen map[string]bool
}

// NewWriter starts a bundle on w with manifest m (Format and Version are
// filled in).
func NewWriter(w io.Writer, m Manifest) (*Writer, error) {
	raw, err := m.Marshal()
	if err != nil {
		return nil, err
	}
	bw := &Writer{tw: tar.NewWriter(w), seen: map[string]bool{}}
	if err := bw.add(ManifestName, int64(len(raw)), bytes.NewReader(raw)); err != nil {
		return nil, err
	}
	return bw, nil
}

// Marshal returns m as the manifest entry's bytes, with Format and
// Version set to this package's.
func (m Manifest) Marshal() ([]byte, error) {
	m.Format, m.Version = Format, Version
	raw, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(raw, '\n'), nil
}

// Add writes entry name of size bytes read from r.
func (w *Writer) Add(name string, size int64, r io.Reader) error {
	if name == ManifestName {
		return fmt.Errorf("%w: %s is written by NewWriter", ErrBadName, name)
	}
	return w.add(name, size, r)
}

func (w *Writer) add(name string, size int64, r io.Reader) error {
	if err := CheckName(name); err != nil {
		return err
	}
	if w.seen[name] {
		return fmt.Errorf("%w: %q", ErrDuplicate, name)
	}
	w.seen[name] = true
	h := &tar.Header{Typeflag: tar.TypeReg, Name: name, Size: size, Mode: 0o644, ModTime: time.Unix(0, 0), Format: tar.FormatPAX}
	if err := w.tw.WriteHeader(h); err != nil {
		return fmt.Errorf("bundle entry %s: %w", name, err)
	}
	n, err := io.Copy(w.tw, io.LimitReader(r, size))
	if err != nil {
		return fmt.Errorf("bundle entry %s: %w", name, err)
	}
	if n != size {
		return fmt.Errorf("bundle entry %s: %d bytes, %d announced", name, n, size)
	}
	return nil
}

// Close finishes the tar file (it does not close the underlying writer).
func (w *Writer) Close() error { return w.tw.Close() }
