package blob

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/minio/minio-go/v7/pkg/s3utils"
	"github.com/minio/minio-go/v7/pkg/signer"
)

// S3 is a Store in an S3-compatible bucket (AWS, MinIO, versitygw, Ceph,
// R2…), under an optional key prefix. It uses path-style addressing, so any
// endpoint works without wildcard DNS. Credentials come from
// $AWS_ACCESS_KEY_ID, $AWS_SECRET_ACCESS_KEY and $AWS_SESSION_TOKEN, the
// region from $AWS_REGION or $AWS_DEFAULT_REGION (default us-east-1).
//
// It speaks the five S3 calls a repository needs (PutObject, GetObject,
// HeadObject, ListObjectsV2 and a conditional PutObject) over net/http,
// signed with Signature Version 4 by minio-go's signer package. A whole
// cloud SDK would cost fwrepo about 70 linked packages (its budget is 400)
// for calls this small.
type S3 struct {
	hc       *http.Client
	endpoint *url.URL // scheme://host[:port], no path
	region   string
	id       string
	secret   string
	token    string
	bucket   string
	prefix   string // "" or ends in "/"

	// Log receives the warning when the server cannot make conditional
	// writes (default: discarded).
	Log *slog.Logger

	noIfMatch atomic.Bool // the server answered 501 to If-Match
	listPage  int         // max-keys of a listing page (0: the server's default, 1,000)
}

func (s *S3) log() *slog.Logger {
	if s.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Log
}

// NewS3 returns the store for bucket and key prefix at endpoint (see
// Options.S3Endpoint for the default).
func NewS3(bucket, prefix, endpoint string) (*S3, error) {
	if endpoint == "" {
		endpoint = os.Getenv("AWS_ENDPOINT_URL_S3")
	}
	if endpoint == "" {
		endpoint = os.Getenv("AWS_ENDPOINT_URL")
	}
	if endpoint != "" && !strings.HasPrefix(endpoint, "http://") && !strings.HasPrefix(endpoint, "https://") {
		return nil, fmt.Errorf("S3 endpoint %q: want http://HOST:PORT or https://HOST", endpoint)
	}
	region := os.Getenv("AWS_REGION")
	if region == "" {
		region = os.Getenv("AWS_DEFAULT_REGION")
	}
	if region == "" {
		region = "us-east-1"
	}
	if endpoint == "" {
		endpoint = "https://s3." + region + ".amazonaws.com"
	}
	u, err := url.Parse(strings.TrimSuffix(endpoint, "/"))
	if err != nil || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		return nil, fmt.Errorf("S3 endpoint %q: want http://HOST:PORT or https://HOST, without a path", endpoint)
	}
	u.Path = ""
	id, secret := os.Getenv("AWS_ACCESS_KEY_ID"), os.Getenv("AWS_SECRET_ACCESS_KEY")
	if id == "" || secret == "" {
		return nil, errors.New("S3 credentials missing: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
	}
	if err := s3utils.CheckValidBucketNameStrict(bucket); err != nil {
		return nil, fmt.Errorf("s3://%s: %w", bucket, err)
	}
	prefix = strings.Trim(prefix, "/")
	if prefix != "" {
		if err := checkName(prefix); err != nil {
			return nil, fmt.Errorf("s3://%s/%s: %w", bucket, prefix, err)
		}
		prefix += "/"
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.ResponseHeaderTimeout = time.Minute
	return &S3{hc: &http.Client{Transport: tr}, endpoint: u, region: region, id: id, secret: secret,
		token: os.Getenv("AWS_SESSION_TOKEN"), bucket: bucket, prefix: prefix}, nil
}

func (s *S3) String() string { return "s3://" + s.bucket + "/" + strings.TrimSuffix(s.prefix, "/") }

func (s *S3) key(name string) (string, error) {
	if err := checkName(name); err != nil {
		return "", err
	}
	return s.prefix + name, nil
}

// s3Error is an S3 error response.
type s3Error struct {
	Status  int
	Code    string `xml:"Code"`
	Message string `xml:"Message"`
}

func (e *s3Error) Error() string {
	switch {
	case e.Code != "" && e.Message != "":
		return fmt.Sprintf("S3 %d %s: %s", e.Status, e.Code, e.Message)
	case e.Code != "":
		return fmt.Sprintf("S3 %d %s", e.Status, e.Code)
	}
	return fmt.Sprintf("S3 %d %s", e.Status, http.StatusText(e.Status))
}

// httpStatus is err's S3 HTTP status code, or 0.
func httpStatus(err error) int {
	var e *s3Error
	if errors.As(err, &e) {
		return e.Status
	}
	return 0
}

// wrap adds the bucket and name to err, and ErrNotExist for a 404.
func (s *S3) wrap(op, name string, err error) error {
	if httpStatus(err) == http.StatusNotFound {
		return fmt.Errorf("%s %s in %s: %w (%w)", op, name, s, ErrNotExist, err)
	}
	return fmt.Errorf("%s %s in %s: %w", op, name, s, err)
}

// request is one S3 call.
type request struct {
	method string
	key    string     // object key; "" for a bucket call
	query  url.Values // nil for none
	header http.Header
	body   io.ReadSeeker // nil for none
	size   int64
}

// maxErrorBody bounds how much of an error response is read.
const maxErrorBody = 64 << 10

// do signs and sends r, retrying a 500 or 503 answer (the server says it
// did nothing) up to three times, and a connection failure of a read. A
// response outside 2xx (and 304) becomes an *s3Error.
func (s *S3) do(ctx context.Context, r request) (*http.Response, error) {
	p := "/" + s.bucket
	if r.key != "" {
		p += "/" + r.key
	}
	var payload string
	if r.body != nil {
		h := sha256.New()
		if _, err := r.body.Seek(0, io.SeekStart); err != nil {
			return nil, fmt.Errorf("rewind the body: %w", err)
		}
		if _, err := io.Copy(h, io.LimitReader(r.body, r.size)); err != nil {
			return nil, fmt.Errorf("hash the body: %w", err)
		}
		payload = hex.EncodeToString(h.Sum(nil))
	} else {
		payload = hex.EncodeToString(sha256.New().Sum(nil))
	}
	read := r.method == http.MethodGet || r.method == http.MethodHead
	backoff := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		u := *s.endpoint
		u.Path, u.RawPath = p, s3utils.EncodePath(p)
		if r.query != nil {
			u.RawQuery = strings.ReplaceAll(r.query.Encode(), "+", "%20")
		}
		req, err := http.NewRequestWithContext(ctx, r.method, u.String(), nil)
		if err != nil {
			return nil, err
		}
		for k, v := range r.header {
			req.Header[k] = v
		}
		if r.body != nil {
			if _, err := r.body.Seek(0, io.SeekStart); err != nil {
				return nil, fmt.Errorf("rewind the body: %w", err)
			}
			req.Body, req.ContentLength = io.NopCloser(r.body), r.size
			req.GetBody = nil
		}
		req.Header.Set("X-Amz-Content-Sha256", payload)
		req = signer.SignV4(*req, s.id, s.secret, s.token, s.region)
		resp, err := s.hc.Do(req)
		if err != nil {
			if read && attempt < 3 && ctx.Err() == nil {
				if !sleepCtx(ctx, backoff) {
					return nil, err
				}
				backoff *= 2
				continue
			}
			return nil, err
		}
		if resp.StatusCode/100 == 2 || resp.StatusCode == http.StatusNotModified {
			return resp, nil
		}
		e := &s3Error{Status: resp.StatusCode}
		if r.method != http.MethodHead {
			b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
			_ = xml.Unmarshal(b, e) // a body that is not S3's XML keeps the status only
		}
		resp.Body.Close()
		if (e.Status == http.StatusInternalServerError || e.Status == http.StatusServiceUnavailable) && attempt < 3 {
			if !sleepCtx(ctx, backoff) {
				return nil, e
			}
			backoff *= 2
			continue
		}
		return nil, e
	}
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func contentType(name string) string {
	if path.Ext(name) == ".json" {
		return "application/json"
	}
	return "application/octet-stream"
}

// put writes key with the given extra headers.
func (s *S3) put(ctx context.Context, key, name string, body io.ReadSeeker, size int64, hdr http.Header) error {
	if hdr == nil {
		hdr = http.Header{}
	}
	hdr.Set("Content-Type", contentType(name))
	resp, err := s.do(ctx, request{method: http.MethodPut, key: key, header: hdr, body: body, size: size})
	if err != nil {
		return err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, maxErrorBody))
	return resp.Body.Close()
}

// Put implements Store. r must be an io.ReadSeeker (the body is hashed
// for the signature, then sent); any other reader is read into memory.
func (s *S3) Put(ctx context.Context, name string, r io.Reader, size int64) error {
	key, err := s.key(name)
	if err != nil {
		return err
	}
	rs, ok := r.(io.ReadSeeker)
	if !ok {
		b, err := io.ReadAll(io.LimitReader(r, size+1))
		if err != nil {
			return fmt.Errorf("put %s in %s: read: %w", name, s, err)
		}
		rs = bytes.NewReader(b)
	}
	if err := s.put(ctx, key, name, rs, size, nil); err != nil {
		return s.wrap("put", name, err)
	}
	return nil
}

// Get implements Store.
func (s *S3) Get(ctx context.Context, name string, off, n int64) (io.ReadCloser, error) {
	key, err := s.key(name)
	if err != nil {
		return nil, err
	}
	hdr := http.Header{}
	switch {
	case n == 0:
		return io.NopCloser(strings.NewReader("")), nil
	case n > 0:
		hdr.Set("Range", fmt.Sprintf("bytes=%d-%d", off, off+n-1))
	case off > 0:
		hdr.Set("Range", fmt.Sprintf("bytes=%d-", off))
	}
	resp, err := s.do(ctx, request{method: http.MethodGet, key: key, header: hdr})
	if err != nil {
		return nil, s.wrap("get", name, err)
	}
	if (n > 0 || off > 0) && resp.StatusCode != http.StatusPartialContent {
		resp.Body.Close()
		return nil, fmt.Errorf("get %s in %s: asked for a byte range, got %s: the server must support Range", name, s, resp.Status)
	}
	return resp.Body, nil
}

// head is HeadObject.
func (s *S3) head(ctx context.Context, key string) (Info, string, error) {
	resp, err := s.do(ctx, request{method: http.MethodHead, key: key})
	if err != nil {
		return Info{}, "", err
	}
	resp.Body.Close()
	mt, _ := http.ParseTime(resp.Header.Get("Last-Modified"))
	return Info{Size: resp.ContentLength, ModTime: mt}, resp.Header.Get("ETag"), nil
}

// Stat implements Store.
func (s *S3) Stat(ctx context.Context, name string) (Info, error) {
	key, err := s.key(name)
	if err != nil {
		return Info{}, err
	}
	info, _, err := s.head(ctx, key)
	if err != nil {
		return Info{}, s.wrap("stat", name, err)
	}
	info.Name = name
	return info, nil
}

// listResult is the part of a ListObjectsV2 answer this store reads.
type listResult struct {
	IsTruncated           bool   `xml:"IsTruncated"`
	NextContinuationToken string `xml:"NextContinuationToken"`
	Contents              []struct {
		Key          string    `xml:"Key"`
		Size         int64     `xml:"Size"`
		LastModified time.Time `xml:"LastModified"`
	} `xml:"Contents"`
}

// maxListPage bounds one ListObjectsV2 answer (1,000 keys of at most 1 KiB
// each, with their XML).
const maxListPage = 4 << 20

// List implements Store.
func (s *S3) List(ctx context.Context, prefix string) ([]Info, error) {
	var out []Info
	token := ""
	for page := 0; ; page++ {
		q := url.Values{"list-type": {"2"}, "prefix": {s.prefix + prefix}}
		if token != "" {
			q.Set("continuation-token", token)
		}
		if s.listPage > 0 {
			q.Set("max-keys", strconv.Itoa(s.listPage))
		}
		resp, err := s.do(ctx, request{method: http.MethodGet, query: q})
		if err != nil {
			return nil, s.wrap("list", prefix+"*", err)
		}
		b, err := io.ReadAll(io.LimitReader(resp.Body, maxListPage+1))
		resp.Body.Close()
		if err != nil {
			return nil, s.wrap("list", prefix+"*", err)
		}
		if len(b) > maxListPage {
			return nil, fmt.Errorf("list %s* in %s: a page of the listing is over %d bytes", prefix, s, maxListPage)
		}
		var res listResult
		if err := xml.Unmarshal(b, &res); err != nil {
			return nil, fmt.Errorf("list %s* in %s: the answer is not a ListObjectsV2 result: %w", prefix, s, err)
		}
		for _, o := range res.Contents {
			name := strings.TrimPrefix(o.Key, s.prefix)
			if checkName(name) != nil {
				continue // not a name Put could have written
			}
			out = append(out, Info{Name: name, Size: o.Size, ModTime: o.LastModified})
		}
		if !res.IsTruncated {
			break
		}
		if res.NextContinuationToken == "" || res.NextContinuationToken == token {
			return nil, fmt.Errorf("list %s* in %s: the listing is truncated but gives no new continuation token", prefix, s)
		}
		token = res.NextContinuationToken
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// quoteETag makes sure tag is sent quoted, as S3 sends it.
func quoteETag(tag string) string {
	if strings.HasPrefix(tag, `"`) || strings.HasPrefix(tag, `W/"`) {
		return tag
	}
	return strconv.Quote(tag)
}
