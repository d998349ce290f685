package tufclient

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/fwctl/fwctl/agent/tuf"
)

// Errors callers branch on.
var (
	// ErrTargetMismatch means downloaded target bytes do not match the
	// signed length or hash.
	ErrTargetMismatch = errors.New("target does not match its signed length and hash")
	// ErrStalled means a download was too slow: nothing for StallTimeout,
	// or less than the minimum average rate (a slow retrieval attack or a
	// bad link; retrying later is safe).
	ErrStalled = errors.New("download stalled")
	// ErrTransport means the connection failed or broke off.
	ErrTransport = errors.New("connection to the repository failed")
	// ErrHTTP means the server answered with an error status.
	ErrHTTP = errors.New("repository answered with an error")
)

// HTTPError is an HTTP error status for one URL.
type HTTPError struct {
	URL    string
	Status int
}

func (e *HTTPError) Error() string {
	return fmt.Sprintf("%s: HTTP %d %s", e.URL, e.Status, http.StatusText(e.Status))
}

// Unwrap makes errors.Is(err, ErrHTTP) true.
func (e *HTTPError) Unwrap() error { return ErrHTTP }

// SlowError is a download refused as a slow retrieval attack.
type SlowError struct {
	File string
	// Rate is the measured average over the last window, in bytes/s;
	// Min the configured minimum. Stalled means nothing came for the
	// stall timeout.
	Rate, Min float64
	Window    time.Duration
	Stalled   bool
}

func (e *SlowError) Error() string {
	if e.Stalled {
		return fmt.Sprintf("%s: %s: no data for %s", e.File, tuf.ErrSlowRetrieval, e.Window)
	}
	return fmt.Sprintf("%s: %s: %.0f bytes/s over the last %s, at least %.0f required (min_download_rate)", e.File, tuf.ErrSlowRetrieval, e.Rate, e.Window, e.Min)
}

// Unwrap makes errors.Is match tuf.ErrSlowRetrieval and ErrStalled.
func (e *SlowError) Unwrap() []error { return []error{tuf.ErrSlowRetrieval, ErrStalled} }

// Rate bounds slow retrieval: after Grace, every Window must bring at
// least MinRate bytes per second on average, or the download is refused.
type Rate struct {
	MinRate int64 // bytes per second; 0 switches the check off
	Window  time.Duration
	Grace   time.Duration
}

// DefaultRate suits a poor cellular link: 1 KiB/s averaged over 30 s,
// after 10 s to get going.
var DefaultRate = Rate{MinRate: 1024, Window: 30 * time.Second, Grace: 10 * time.Second}

// contentRangeStart is the first byte position of a Content-Range header
// "bytes FIRST-LAST/LENGTH". (strconv rather than fmt.Sscanf: fmt's scanner
// is about 25 kB of the agent binary, and this was its only use there.)
func contentRangeStart(h string) (int64, bool) {
	rest, ok := strings.CutPrefix(h, "bytes")
	if !ok || rest == "" || (rest[0] != ' ' && rest[0] != '\t') {
		return 0, false
	}
	first, _, ok := strings.Cut(strings.TrimLeft(rest, " \t"), "-")
	if !ok {
		return 0, false
	}
	v, err := strconv.ParseInt(first, 10, 64)
	return v, err == nil
}

func endless(file string, format string, args ...any) error {
	return &tuf.Error{File: file, Kind: tuf.ErrEndlessData, Msg: fmt.Sprintf(format, args...)}
}

// download streams u (named file in errors) from byte offset on into w
// (asking with HTTP Range when offset > 0) and returns how many bytes it
// wrote. A server that ignores Range is handled by skipping the bytes
// already written. No more than maxLength bytes in total are accepted, and
// the transfer must keep the configured rate. A non-nil hdr receives the
// response header.
func (c *Client) download(ctx context.Context, file, u string, offset, maxLength int64, w io.Writer, hdr *http.Header) (int64, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, err
	}
	if offset > 0 {
		req.Header.Set("Range", "bytes="+strconv.FormatInt(offset, 10)+"-")
	}
	// The rate counts from the request on: a server that sits on the
	// response headers is as slow as one that trickles the body.
	var got atomic.Int64
	if r := c.Rate; r.MinRate > 0 && r.Window > 0 {
		stop := watchRate(r, file, &got, cancel)
		defer stop()
	}
	res, err := c.HTTP.Do(req)
	if err != nil {
		if cause := context.Cause(ctx); cause != nil && errors.Is(cause, ErrStalled) {
			return 0, cause
		}
		return 0, fmt.Errorf("%w: %w", ErrTransport, err)
	}
	defer res.Body.Close()
	if hdr != nil {
		*hdr = res.Header
	}
	skip := int64(0)
	switch {
	case offset > 0 && res.StatusCode == http.StatusPartialContent:
		if start, ok := contentRangeStart(res.Header.Get("Content-Range")); !ok || start != offset {
			return 0, fmt.Errorf("%w: %s: asked for bytes from %d, got Content-Range %q", ErrTransport, u, offset, res.Header.Get("Content-Range"))
		}
	case offset > 0 && res.StatusCode == http.StatusRequestedRangeNotSatisfiable:
		return 0, endless(file, "server has no bytes from %d on", offset)
	case res.StatusCode == http.StatusOK:
		skip = offset // Range ignored: the whole file comes again
	default:
		return 0, &HTTPError{URL: u, Status: res.StatusCode}
	}
	if res.ContentLength >= 0 && res.ContentLength-skip > maxLength-offset {
		return 0, endless(file, "server announces %d more bytes, at most %d allowed", res.ContentLength-skip, maxLength-offset)
	}
	stall := c.StallTimeout
	if stall <= 0 {
		stall = 30 * time.Second
	}
	timer := time.AfterFunc(stall, func() { cancel(&SlowError{File: file, Window: stall, Stalled: true}) })
	defer timer.Stop()
	buf := make([]byte, 32<<10)
	var n int64
	for {
		k, rerr := res.Body.Read(buf)
		if k > 0 {
			timer.Reset(stall)
			got.Add(int64(k))
			b := buf[:k]
			if skip > 0 {
				d := min(skip, int64(len(b)))
				b, skip = b[d:], skip-d
			}
			if offset+n+int64(len(b)) > maxLength {
				return n, endless(file, "more than the allowed %d bytes", maxLength)
			}
			if _, err := w.Write(b); err != nil {
				return n, err
			}
			n += int64(len(b))
		}
		if rerr == io.EOF {
			return n, nil
		}
		if rerr != nil {
			if cause := context.Cause(ctx); cause != nil && errors.Is(cause, ErrStalled) {
				return n, cause
			}
			return n, fmt.Errorf("%w: %s after %d bytes: %w", ErrTransport, u, offset+n, rerr)
		}
	}
}

// watchRate cancels with a SlowError when a window after the grace period
// brings fewer than r.MinRate bytes per second. Timer-driven, so a server
// that sends nothing at all is caught as well.
func watchRate(r Rate, file string, got *atomic.Int64, cancel context.CancelCauseFunc) (stop func()) {
	done := make(chan struct{})
	go func() {
		select {
		case <-done:
			return
		case <-time.After(r.Grace):
		}
		t := time.NewTicker(r.Window)
		defer t.Stop()
		last, lastAt := got.Load(), time.Now()
		for {
			select {
			case <-done:
				return
			case now := <-t.C:
				cur := got.Load()
				rate := float64(cur-last) / now.Sub(lastAt).Seconds()
				if rate < float64(r.MinRate) {
					cancel(&SlowError{File: file, Rate: rate, Min: float64(r.MinRate), Window: now.Sub(lastAt).Round(time.Millisecond)})
					return
				}
				last, lastAt = cur, now
			}
		}
	}()
	return func() { close(done) }
}
