package verify

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"sync/atomic"
	"time"

	"github.com/fwctl/fwctl/repo/layout"
)

// HTTPOptions configure NewHTTPSource. Zero values take the defaults.
type HTTPOptions struct {
	Client *http.Client  // default: connect 10s, TLS 10s, response headers 30s
	Stall  time.Duration // abort a body that delivers nothing for this long (default 30s)
}

// HTTPSource reads a repository served over HTTP(S) (fwrepo serve, a CDN,
// any static server): GET BASE/metadata/… and BASE/targets/…. 404, 410 and
// 403 (what a bucket behind a CDN answers for a missing object) mean the
// file does not exist, as for go-tuf's updater.
type HTTPSource struct {
	base   *url.URL
	client *http.Client
	stall  time.Duration
}

// NewHTTPSource returns the source for the repository at base.
func NewHTTPSource(base string, opt HTTPOptions) (*HTTPSource, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("repository URL %q: want http(s)://HOST[:PORT][/PATH], the URL devices fetch from", base)
	}
	u.RawQuery, u.Fragment = "", ""
	if opt.Client == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.DialContext = (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext
		t.TLSHandshakeTimeout = 10 * time.Second
		t.ResponseHeaderTimeout = 30 * time.Second
		opt.Client = &http.Client{Transport: t}
	}
	if opt.Stall <= 0 {
		opt.Stall = 30 * time.Second
	}
	return &HTTPSource{base: u, client: opt.Client, stall: opt.Stall}, nil
}

func (h *HTTPSource) String() string { return h.base.String() }

// Open implements Source.
func (h *HTTPSource) Open(ctx context.Context, name string) (io.ReadCloser, error) {
	if err := layout.CheckFile(name); err != nil {
		return nil, err
	}
	u := h.base.JoinPath(name)
	ctx, cancel := context.WithCancel(ctx)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("fetch %s: %w", name, err)
	}
	// Every byte is checked against signed lengths and hashes, so a
	// stale cache cannot pass; but ask for fresh metadata anyway.
	req.Header.Set("Cache-Control", "no-cache")
	resp, err := h.client.Do(req)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("fetch %s: %w: %w (check the URL and that the server is up)", u, ErrUnreachable, err)
	}
	switch {
	case resp.StatusCode == http.StatusOK:
	case resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusGone || resp.StatusCode == http.StatusForbidden:
		resp.Body.Close()
		cancel()
		return nil, fmt.Errorf("fetch %s: %s: %w", u, resp.Status, fs.ErrNotExist)
	case resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests:
		resp.Body.Close()
		cancel()
		return nil, fmt.Errorf("fetch %s: %w: %s (retry later)", u, ErrUnreachable, resp.Status)
	default:
		resp.Body.Close()
		cancel()
		return nil, fmt.Errorf("fetch %s: unexpected %s (is %s the repository's base URL, the one devices use?)", u, resp.Status, h.base)
	}
	r := &stallReader{body: resp.Body, cancel: cancel, stall: h.stall, url: u.String()}
	r.timer = time.AfterFunc(h.stall, func() { r.stalled.Store(true); cancel() })
	return r, nil
}

// stallReader cancels the request when the body delivers nothing for stall:
// a server that stops sending cannot hang verify.
type stallReader struct {
	body    io.ReadCloser
	cancel  context.CancelFunc
	timer   *time.Timer
	stall   time.Duration
	stalled atomic.Bool
	url     string
}

func (r *stallReader) Read(p []byte) (int, error) {
	n, err := r.body.Read(p)
	if n > 0 {
		r.timer.Reset(r.stall)
	}
	if err != nil && !errors.Is(err, io.EOF) {
		if r.stalled.Load() {
			return n, fmt.Errorf("fetch %s: %w: nothing received for %s", r.url, ErrUnreachable, r.stall)
		}
		return n, fmt.Errorf("fetch %s: %w: %w", r.url, ErrUnreachable, err)
	}
	return n, err
}

func (r *stallReader) Close() error {
	r.timer.Stop()
	err := r.body.Close()
	r.cancel()
	return err
}
