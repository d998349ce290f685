// Package blob stores the files of a published repository: one small Store
// interface, with a filesystem implementation (Dir) and an S3-compatible
// object storage one (S3). Names are slash-separated and relative
// ("metadata/timestamp.json"); a Store never interprets what it holds and
// never lets a name reach outside its directory, bucket or prefix.
//
// The device agent must never import this package: it links a cloud SDK.
package blob

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"strings"
	"time"

	"github.com/fwctl/fwctl/repo/layout"
)

// ErrNotExist is returned (wrapped) for a name the store does not hold. It
// is fs.ErrNotExist, so errors.Is works with either.
var ErrNotExist = fs.ErrNotExist

// Info describes one stored file.
type Info struct {
	Name    string    // slash-separated, relative to the store
	Size    int64     // bytes
	ModTime time.Time // last write
}

// Store holds a repository's files.
type Store interface {
	// Put replaces name with size bytes from r. A reader never sees a
	// partly written file. r should be an io.ReadSeeker (a file, a
	// bytes.Reader): S3 needs one to sign the body over plain HTTP.
	Put(ctx context.Context, name string, r io.Reader, size int64) error
	// Get reads name from byte off: n bytes, or to the end when n < 0.
	Get(ctx context.Context, name string, off, n int64) (io.ReadCloser, error)
	// Stat describes name; it wraps ErrNotExist when there is none.
	Stat(ctx context.Context, name string) (Info, error)
	// List returns every file whose name starts with prefix, sorted.
	List(ctx context.Context, prefix string) ([]Info, error)
	// String names the store for messages (a directory or s3:// URL).
	String() string
}

// Options configure Open.
type Options struct {
	// S3Endpoint is the S3 API endpoint (https://… or http://host:port);
	// empty means $AWS_ENDPOINT_URL_S3, then $AWS_ENDPOINT_URL, then AWS.
	S3Endpoint string
	// Log receives warnings about the store, such as an S3 server that
	// cannot make conditional writes (default: discarded).
	Log *slog.Logger
}

// IsURL reports whether location names object storage (s3://BUCKET/PREFIX)
// rather than a directory.
func IsURL(location string) bool { return strings.HasPrefix(location, "s3://") }

// Open returns the store at location: s3://BUCKET[/PREFIX] or a directory.
func Open(location string, opt Options) (Store, error) {
	if !IsURL(location) {
		return Dir(location), nil
	}
	bucket, prefix, _ := strings.Cut(strings.TrimPrefix(location, "s3://"), "/")
	if bucket == "" {
		return nil, fmt.Errorf("%q has no bucket: write s3://BUCKET/PREFIX", location)
	}
	s, err := NewS3(bucket, prefix, opt.S3Endpoint)
	if err != nil {
		return nil, err
	}
	s.Log = opt.Log
	return s, nil
}

// ErrTooLarge is returned (wrapped) by ReadLimited for a file longer than
// its limit.
var ErrTooLarge = errors.New("file too large")

// ReadLimited reads the whole of name, refusing (ErrTooLarge) a file
// longer than limit bytes without reading more than limit+1 of them.
func ReadLimited(ctx context.Context, s Store, name string, limit int64) ([]byte, error) {
	rc, err := s.Get(ctx, name, 0, -1)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read %s from %s: %w", name, s, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%w: %s in %s is longer than %d bytes", ErrTooLarge, name, s, limit)
	}
	return b, nil
}

// ReadAll reads the whole of name.
func ReadAll(ctx context.Context, s Store, name string) ([]byte, error) {
	rc, err := s.Get(ctx, name, 0, -1)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		return nil, fmt.Errorf("read %s from %s: %w", name, s, err)
	}
	return b, nil
}

// checkName refuses names that could leave the store, are not files, or
// fall outside the repository naming rule (layout.CheckFile), which every
// store, the HTTP source and fwrepo's server share. The error also wraps
// ErrNotExist: no store holds a file under such a name, so a server asked
// for one answers 404, not a storage failure.
func checkName(name string) error {
	if err := layout.CheckFile(name); err != nil {
		return fmt.Errorf("invalid blob name: %w (%w)", err, ErrNotExist)
	}
	return nil
}

// Reader is an io.ReadSeekCloser over a stored file that fetches only the
// bytes read from where it was last sought (HTTP Range on S3), so
// http.ServeContent can answer Range requests without reading the whole
// file.
type Reader struct {
	ctx  context.Context
	s    Store
	name string
	size int64
	pos  int64
	rc   io.ReadCloser
}

// NewReader returns a Reader for name, whose size the caller knows (Stat).
func NewReader(ctx context.Context, s Store, name string, size int64) *Reader {
	return &Reader{ctx: ctx, s: s, name: name, size: size}
}

// Read implements io.Reader.
func (r *Reader) Read(p []byte) (int, error) {
	if r.pos >= r.size {
		return 0, io.EOF
	}
	if r.rc == nil {
		rc, err := r.s.Get(r.ctx, r.name, r.pos, -1)
		if err != nil {
			return 0, err
		}
		r.rc = rc
	}
	n, err := r.rc.Read(p)
	r.pos += int64(n)
	if err == io.EOF && r.pos < r.size {
		err = fmt.Errorf("read %s: %w after %d of %d bytes", r.name, io.ErrUnexpectedEOF, r.pos, r.size)
	}
	return n, err
}

// Seek implements io.Seeker.
func (r *Reader) Seek(off int64, whence int) (int64, error) {
	switch whence {
	case io.SeekCurrent:
		off += r.pos
	case io.SeekEnd:
		off += r.size
	}
	if off < 0 {
		return 0, errors.New("blob: seek before the start")
	}
	if off != r.pos && r.rc != nil {
		r.rc.Close()
		r.rc = nil
	}
	r.pos = off
	return off, nil
}

// Close implements io.Closer.
func (r *Reader) Close() error {
	if r.rc == nil {
		return nil
	}
	err := r.rc.Close()
	r.rc = nil
	return err
}
