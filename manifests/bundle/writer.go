package bundle

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
)

// Writer writes a bundle file: the manifest first, then entries in the
// order added, as ustar headers (a PAX path record for a name over 100
// bytes) with no owner and a zero time, so the same inputs give the same
// bytes. (Its own few lines rather than archive/tar, which the agent would
// link for the reader's sake.)
type Writer struct {
	w    io.Writer
	seen map[string]bool
	err  error
}

// NewWriter starts a bundle on w with manifest m (Format and Version are
// filled in).
func NewWriter(w io.Writer, m Manifest) (*Writer, error) {
	raw, err := m.Marshal()
	if err != nil {
		return nil, err
	}
	bw := &Writer{w: w, seen: map[string]bool{}}
	if err := bw.add(ManifestName, int64(len(raw)), bytes.NewReader(raw)); err != nil {
		return nil, err
	}
	return bw, nil
}

// Marshal returns m as the manifest entry's bytes, with Format and the
// lowest Version that holds it (1 without director metadata).
func (m Manifest) Marshal() ([]byte, error) {
	m.Format, m.Version = Format, 1
	if len(m.Devices) > 0 {
		m.Version = 2
	}
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

func ustar(name string, size int64, typeflag byte) []byte {
	var b [block]byte
	copy(b[0:100], name)
	copy(b[100:108], "0000644\x00")
	copy(b[108:116], "0000000\x00")
	copy(b[116:124], "0000000\x00")
	copy(b[124:136], fmt.Sprintf("%011o\x00", size))
	copy(b[136:148], "00000000000\x00")
	b[156] = typeflag
	copy(b[257:265], "ustar\x0000")
	for i := 148; i < 156; i++ {
		b[i] = ' '
	}
	var sum int64
	for _, c := range b {
		sum += int64(c)
	}
	copy(b[148:156], fmt.Sprintf("%06o\x00 ", sum))
	return b[:]
}

func pad(n int64) []byte { return make([]byte, (block-n%block)%block) }

func (w *Writer) add(name string, size int64, r io.Reader) error {
	if w.err != nil {
		return w.err
	}
	if err := CheckName(name); err != nil {
		return err
	}
	if w.seen[name] {
		return fmt.Errorf("%w: %q", ErrDuplicate, name)
	}
	if size < 0 || size > 077777777777 {
		return fmt.Errorf("bundle entry %s: size %d out of range", name, size)
	}
	w.seen[name] = true
	var hdr []byte
	field := name
	if len(name) > 100 {
		rec := " path=" + name + "\n"
		n := len(rec) + 1
		for len(strconv.Itoa(n))+len(rec) != n {
			n++
		}
		pax := strconv.Itoa(n) + rec
		hdr = append(ustar("PaxHeaders/entry", int64(len(pax)), 'x'), pax...)
		hdr = append(hdr, pad(int64(len(pax)))...)
		field = name[len(name)-100:]
	}
	hdr = append(hdr, ustar(field, size, '0')...)
	w.err = func() error {
		if _, err := w.w.Write(hdr); err != nil {
			return err
		}
		n, err := io.Copy(w.w, io.LimitReader(r, size))
		if err != nil {
			return err
		}
		if n != size {
			return fmt.Errorf("%d bytes, %d announced", n, size)
		}
		_, err = w.w.Write(pad(size))
		return err
	}()
	if w.err != nil {
		w.err = fmt.Errorf("bundle entry %s: %w", name, w.err)
	}
	return w.err
}

// Close writes the end-of-archive marker (it does not close the
// underlying writer).
func (w *Writer) Close() error {
	if w.err != nil {
		return w.err
	}
	_, err := w.w.Write(make([]byte, 2*block))
	return err
}
