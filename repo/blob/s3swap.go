package blob

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// GetTagged implements Swapper; the tag is the object's ETag.
func (s *S3) GetTagged(ctx context.Context, name string) ([]byte, string, error) {
	key, err := s.key(name)
	if err != nil {
		return nil, "", err
	}
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{Bucket: &s.bucket, Key: &key})
	if err != nil {
		return nil, "", s.wrap("get", name, err)
	}
	defer out.Body.Close()
	b, err := io.ReadAll(out.Body)
	if err != nil {
		return nil, "", fmt.Errorf("read %s from %s: %w", name, s, err)
	}
	if aws.ToString(out.ETag) == "" {
		return nil, "", fmt.Errorf("get %s from %s: the server sent no ETag, so a conditional write cannot be made; use an S3 server that sends ETags", name, s)
	}
	return b, aws.ToString(out.ETag), nil
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
		in := s.putInput(key, name, data, &tag)
		if tag == "" {
			in.IfMatch, in.IfNoneMatch = nil, aws.String("*")
		}
		_, err = s.client.PutObject(ctx, in)
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
	head, err := s.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &s.bucket, Key: &key})
	if err != nil {
		err = s.wrap("swap", name, err)
	}
	switch {
	case tag == "" && errors.Is(err, ErrNotExist):
		head = &s3.HeadObjectOutput{} // absent, as the caller read it
	case tag == "" && err == nil:
		return fmt.Errorf("swap %s in %s: %w (it exists now, and was absent when read)", name, s, ErrChanged)
	case err != nil:
		return err
	}
	if got := aws.ToString(head.ETag); got != tag {
		return fmt.Errorf("swap %s in %s: %w (ETag %s, read as %s)", name, s, ErrChanged, got, tag)
	}
	if _, err := s.client.PutObject(ctx, s.putInput(key, name, data, nil)); err != nil {
		return s.wrap("put", name, err)
	}
	return nil
}

func (s *S3) putInput(key, name string, data []byte, ifMatch *string) *s3.PutObjectInput {
	ctype := "application/octet-stream"
	if path.Ext(name) == ".json" {
		ctype = "application/json"
	}
	return &s3.PutObjectInput{Bucket: &s.bucket, Key: &key, Body: bytes.NewReader(data),
		ContentLength: aws.Int64(int64(len(data))), ContentType: &ctype, IfMatch: ifMatch}
}

// httpStatus is err's HTTP status code, or 0.
func httpStatus(err error) int {
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}
