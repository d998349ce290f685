package verify

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/fwctl/fwctl/repo/blob"
)

// Source is a published repository read as a device reads it: Verify and
// Audit read metadata and targets only through it, so a directory, a bucket
// and a served repository are checked in exactly the same way.
type Source interface {
	// Open streams name ("metadata/timestamp.json", "targets/…"). A
	// missing file wraps fs.ErrNotExist. The caller bounds how much it
	// reads: an implementation never trusts a size the server reports.
	Open(ctx context.Context, name string) (io.ReadCloser, error)
	// String names the repository for messages.
	String() string
}

// ErrUnreachable is wrapped by errors reading a Source that are the
// transport's (refused connection, timeout, 5xx, a body that broke off),
// not the repository's: retry later, nothing was refused.
var ErrUnreachable = errors.New("repository unreachable")

// The size caps for metadata whose length no signed metadata records are
// layout.MaxRootLength and its siblings.
// OpenSource returns the repository at location: http(s)://… (a served
// repository, see HTTPSource), s3://BUCKET/PREFIX or a directory (through
// blob.Open with opt).
func OpenSource(location string, opt blob.Options) (Source, error) {
	if strings.HasPrefix(location, "http://") || strings.HasPrefix(location, "https://") {
		return NewHTTPSource(location, HTTPOptions{})
	}
	st, err := blob.Open(location, opt)
	if err != nil {
		return nil, err
	}
	return StoreSource(st), nil
}

// StoreSource reads a repository from a blob.Store (a directory or a bucket).
func StoreSource(s blob.Store) Source { return storeSource{s} }

type storeSource struct{ s blob.Store }

func (s storeSource) String() string { return s.s.String() }

// Open implements Source. Object storage errors other than a missing
// object wrap ErrUnreachable.
func (s storeSource) Open(ctx context.Context, name string) (io.ReadCloser, error) {
	rc, err := s.s.Get(ctx, name, 0, -1)
	if err != nil && !errors.Is(err, blob.ErrNotExist) {
		if _, local := s.s.(blob.Dir); !local {
			err = fmt.Errorf("%w: %w", ErrUnreachable, err)
		}
	}
	return rc, err
}

// DirSource reads a repository from a local directory.
func DirSource(dir string) Source { return StoreSource(blob.Dir(dir)) }

// ReadLimited reads name whole, refusing more than limit bytes. signed says
// limit is the length signed metadata records for name: then a longer file
// is an *metadata.ErrLengthOrHashMismatch, as go-tuf reports a wrong length.
// Only limit+1 bytes are ever read, whatever the server claims.
func ReadLimited(ctx context.Context, src Source, name string, limit int64, signed bool) ([]byte, error) {
	rc, err := src.Open(ctx, name)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read %s from %s: %w", name, src, err)
	}
	if int64(len(b)) > limit {
		if signed {
			return nil, &metadata.ErrLengthOrHashMismatch{Msg: fmt.Sprintf("%s is longer than the %d bytes signed metadata records for it", name, limit)}
		}
		return nil, fmt.Errorf("%s in %s is longer than %d bytes, the most a device accepts: refusing to read it", name, src, limit)
	}
	return b, nil
}

// MetaLimit is the length signed metadata records in m, or def when it
// records none.
func MetaLimit(m *metadata.MetaFiles, def int64) (int64, bool) {
	if m != nil && m.Length > 0 {
		return m.Length, true
	}
	return def, false
}

// WithFiles returns a Source that reads the named files from memory and
// everything else from src: a publish verifies the repository as it will
// be once it writes those files, before it writes them.
func WithFiles(src Source, files map[string][]byte) Source { return overlay{src, files} }

type overlay struct {
	src   Source
	files map[string][]byte
}

func (o overlay) String() string { return o.src.String() }

// Open implements Source.
func (o overlay) Open(ctx context.Context, name string) (io.ReadCloser, error) {
	if b, ok := o.files[name]; ok {
		return io.NopCloser(bytes.NewReader(b)), nil
	}
	return o.src.Open(ctx, name)
}
