package blob

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
)

// maxTagged bounds GetTagged: it reads small metadata files only.
const maxTagged = 64 << 20

// GetTagged implements Swapper; the tag is the object's ETag.
func (s *S3) GetTagged(ctx context.Context, name string) ([]byte, string, error) {
	key, err := s.key(name)
	if err != nil {
		return nil, "", err
	}
	resp, err := s.do(ctx, request{method: http.MethodGet, key: key})
	if err != nil {
		return nil, "", s.wrap("get", name, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxTagged+1))
	if err != nil {
		return nil, "", fmt.Errorf("read %s from %s: %w", name, s, err)
	}
	if len(b) > maxTagged {
		return nil, "", fmt.Errorf("read %s from %s: over %d bytes", name, s, maxTagged)
	}
	tag := resp.Header.Get("ETag")
	if tag == "" {
		return nil, "", fmt.Errorf("get %s from %s: the server sent no ETag, so a conditional write cannot be made; use an S3 server that sends ETags", name, s)
	}
	return b, tag, nil
}

// Swap implements Swapper with PutObject If-Match: the server writes only
// if the object's ETag is still tag, atomically with respect to every other
// writer (AWS S3 since 2024, versitygw ≥ 1.0 under its per-object publish
// lock, MinIO). A server that answers 501 Not Implemented to a conditional
// write gets a read-check-write instead (HEAD, compare the ETag, plain
// PUT), which is logged once: a write landing between the HEAD and the PUT
// is then lost. An empty tag sends If-None-Match: * instead.
func (s *S3) Swap(ctx context.Context, name string, data []byte, tag string) error {
	key, err := s.key(name)
	if err != nil {
		return err
	}
	if !s.noIfMatch.Load() {
		hdr := http.Header{}
		if tag == "" {
			hdr.Set("If-None-Match", "*")
		} else {
			hdr.Set("If-Match", quoteETag(tag))
		}
		err = s.put(ctx, key, name, bytes.NewReader(data), int64(len(data)), hdr)
		switch st := httpStatus(err); {
		case err == nil:
			return nil
		case (st == http.StatusPreconditionFailed || st == http.StatusConflict) && tag == "":
			return fmt.Errorf("swap %s in %s: %w (it exists now, and was absent when read)", name, s, ErrChanged)
		case st == http.StatusPreconditionFailed, st == http.StatusConflict:
			// 409: a concurrent conditional write to the same key won.
			return fmt.Errorf("swap %s in %s: %w (ETag is no longer %s)", name, s, ErrChanged, tag)
		case st == http.StatusNotImplemented:
			s.noIfMatch.Store(true)
			s.log().Warn("S3 server does not support conditional writes (PutObject If-Match); falling back to read-check-write, which a concurrent write can still race",
				"store", s.String(), "err", err)
		default:
			return s.wrap("put", name, err)
		}
	}
	_, got, err := s.head(ctx, key)
	if err != nil {
		err = s.wrap("swap", name, err)
	}
	switch {
	case tag == "" && errors.Is(err, ErrNotExist):
		got = "" // absent, as the caller read it
	case tag == "" && err == nil:
		return fmt.Errorf("swap %s in %s: %w (it exists now, and was absent when read)", name, s, ErrChanged)
	case err != nil:
		return err
	}
	if got != tag {
		return fmt.Errorf("swap %s in %s: %w (ETag %s, read as %s)", name, s, ErrChanged, got, tag)
	}
	if err := s.put(ctx, key, name, bytes.NewReader(data), int64(len(data)), nil); err != nil {
		return s.wrap("put", name, err)
	}
	return nil
}
