package bundle

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// The reader parses tar headers itself rather than through archive/tar:
// it needs only regular files (ustar names with prefix, and the PAX path
// and size records archive/tar's writer emits), and archive/tar cost the
// agent some 60 kB. Anything else in a header is refused, not interpreted.

const block = 512

// errEnd is the end-of-archive marker (two zero blocks).
var errEnd = errors.New("end of archive")

type header struct {
	name     string
	size     int64
	typeflag byte
	off      int64 // the data's first byte
}

// maxPAX bounds a PAX extended header.
const maxPAX = 64 << 10

// next reads the header at off (a block boundary) of a size-byte file.
func next(r io.ReaderAt, off, size int64) (*header, error) {
	var pax map[string]string
	for {
		var b [block]byte
		if off+block > size {
			return nil, fmt.Errorf("%w: header at byte %d", ErrTruncated, off)
		}
		if _, err := r.ReadAt(b[:], off); err != nil {
			return nil, fmt.Errorf("%w: header at byte %d: %v", ErrTruncated, off, err)
		}
		off += block
		if b == [block]byte{} {
			if pax != nil {
				return nil, fmt.Errorf("%w: PAX header without an entry", ErrFormat)
			}
			return nil, errEnd
		}
		if err := checksum(&b); err != nil {
			return nil, err
		}
		if string(b[257:262]) != "ustar" {
			return nil, fmt.Errorf("%w: header at byte %d is not ustar or PAX", ErrFormat, off-block)
		}
		n, err := octal(b[124:136])
		if err != nil {
			return nil, fmt.Errorf("%w: header at byte %d: size: %v", ErrFormat, off-block, err)
		}
		if n > size-off {
			return nil, fmt.Errorf("%w: header at byte %d announces %d bytes, the file has %d left", ErrTruncated, off-block, n, size-off)
		}
		h := &header{typeflag: b[156], size: n, off: off}
		h.name = cstr(b[0:100])
		if p := cstr(b[345:500]); p != "" {
			h.name = p + "/" + h.name
		}
		if h.typeflag == 'x' {
			if pax != nil || n > maxPAX {
				return nil, fmt.Errorf("%w: PAX header at byte %d (repeated or over %d bytes)", ErrFormat, off-block, maxPAX)
			}
			raw := make([]byte, n)
			if _, err := r.ReadAt(raw, off); err != nil {
				return nil, fmt.Errorf("%w: PAX header: %v", ErrTruncated, err)
			}
			if pax, err = parsePAX(raw); err != nil {
				return nil, err
			}
			off += (n + block - 1) &^ (block - 1)
			continue
		}
		if h.typeflag == 0 {
			h.typeflag = '0'
		}
		for k, v := range pax {
			switch k {
			case "path":
				h.name = v
			case "size":
				s, err := strconv.ParseInt(v, 10, 64)
				if err != nil || s < 0 || s > size-off {
					return nil, fmt.Errorf("%w: PAX size %q for %q", ErrTruncated, trunc(v), trunc(h.name))
				}
				h.size = s
			case "mtime", "atime", "ctime", "uid", "gid", "uname", "gname":
			default:
				return nil, fmt.Errorf("%w: PAX record %q not supported", ErrFormat, trunc(k))
			}
		}
		return h, nil
	}
}

func checksum(b *[block]byte) error {
	want, err := octal(b[148:156])
	if err != nil {
		return fmt.Errorf("%w: header checksum: %v", ErrFormat, err)
	}
	var sum int64
	for i, c := range b {
		if i >= 148 && i < 156 {
			c = ' '
		}
		sum += int64(c)
	}
	if sum != want {
		return fmt.Errorf("%w: header checksum %d, computed %d", ErrFormat, want, sum)
	}
	return nil
}

// octal parses a NUL- or space-terminated octal field.
func octal(f []byte) (int64, error) {
	s := string(bytes.Trim(f, " \x00"))
	if s == "" {
		return 0, nil
	}
	v, err := strconv.ParseInt(s, 8, 64)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("bad octal field %q", trunc(s))
	}
	return v, nil
}

func cstr(f []byte) string {
	if i := bytes.IndexByte(f, 0); i >= 0 {
		f = f[:i]
	}
	return string(f)
}

// parsePAX parses "LEN KEY=VALUE\n" records.
func parsePAX(b []byte) (map[string]string, error) {
	out := map[string]string{}
	for len(b) > 0 {
		sp := bytes.IndexByte(b, ' ')
		if sp <= 0 {
			return nil, fmt.Errorf("%w: bad PAX record", ErrFormat)
		}
		n, err := strconv.Atoi(string(b[:sp]))
		if err != nil || n <= sp+1 || n > len(b) || b[n-1] != '\n' {
			return nil, fmt.Errorf("%w: bad PAX record length", ErrFormat)
		}
		k, v, ok := bytes.Cut(b[sp+1:n-1], []byte("="))
		if !ok {
			return nil, fmt.Errorf("%w: bad PAX record", ErrFormat)
		}
		if _, dup := out[string(k)]; dup {
			return nil, fmt.Errorf("%w: PAX record %q repeated", ErrFormat, trunc(string(k)))
		}
		out[string(k)] = string(v)
		b = b[n:]
	}
	return out, nil
}
