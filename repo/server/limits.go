package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Limits are what a public server needs so that clients that never read,
// or that open connection after connection, cannot take it down.
type Limits struct {
	// MaxConns caps open connections (default 1024). At the cap, new
	// connections wait in the listen queue until one closes, and the
	// server logs it (at most once every 10 seconds).
	MaxConns int
	// MinSendRate (bytes per second, default 1024) and SendWindow
	// (default 30s) bound idle writes: a connection whose client took
	// less than MinSendRate×SendWindow bytes during SendWindow of the
	// server waiting to write to it is closed. This is a rate, not a
	// total time: a slow cellular device downloading a large image at
	// more than MinSendRate is never cut.
	MinSendRate int64
	SendWindow  time.Duration
	// ReadHeaderTimeout (default 10s) bounds reading a request's header,
	// IdleTimeout (default 120s) a keep-alive connection between requests.
	ReadHeaderTimeout, IdleTimeout time.Duration
	// Grace is how long Run lets in-flight downloads finish on shutdown
	// (default 10s).
	Grace time.Duration
	// Log receives the limit's log lines (default: discarded).
	Log *slog.Logger
}

// Defaults of Limits.
const (
	DefaultMaxConns    = 1024
	DefaultMinSendRate = 1024
	DefaultSendWindow  = 30 * time.Second
)

func (l Limits) withDefaults() Limits {
	if l.MaxConns <= 0 {
		l.MaxConns = DefaultMaxConns
	}
	if l.MinSendRate <= 0 {
		l.MinSendRate = DefaultMinSendRate
	}
	if l.SendWindow <= 0 {
		l.SendWindow = DefaultSendWindow
	}
	if l.ReadHeaderTimeout <= 0 {
		l.ReadHeaderTimeout = 10 * time.Second
	}
	if l.IdleTimeout <= 0 {
		l.IdleTimeout = 120 * time.Second
	}
	if l.Grace <= 0 {
		l.Grace = 10 * time.Second
	}
	if l.Log == nil {
		l.Log = slog.New(slog.DiscardHandler)
	}
	return l
}

// HTTPServer wraps h with the limits of a public server that are
// http.Server's own (header and idle timeouts, header size). Listen
// adds the rest.
func HTTPServer(h http.Handler, lim Limits) *http.Server {
	lim = lim.withDefaults()
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: lim.ReadHeaderTimeout,
		// No ReadTimeout: net/http keeps that deadline while the handler
		// runs, and when it passes it cancels the request's context,
		// which would break every download from a bucket after 30s.
		// Handlers that read a body bound it themselves (the device API:
		// 64 KiB within 30s).
		IdleTimeout:    lim.IdleTimeout,
		MaxHeaderBytes: 16 << 10,
	}
}

// Listener is a net.Listener that holds the connection cap and the
// minimum send rate of Limits.
type Listener struct {
	net.Listener
	lim    Limits
	slots  chan struct{}
	closed chan struct{}
	once   sync.Once
	// lastFull is when the cap was last logged (UnixNano).
	lastFull atomic.Int64
	open     atomic.Int64
	peak     atomic.Int64
	slow     atomic.Int64
}

// Listen wraps ln with lim's connection cap and minimum send rate.
func Listen(ln net.Listener, lim Limits) *Listener {
	lim = lim.withDefaults()
	return &Listener{Listener: ln, lim: lim, slots: make(chan struct{}, lim.MaxConns), closed: make(chan struct{})}
}

// Accept waits for a free slot, then for a connection.
func (l *Listener) Accept() (net.Conn, error) {
	select {
	case l.slots <- struct{}{}:
	default:
		if now := time.Now().UnixNano(); now-l.lastFull.Load() > int64(10*time.Second) {
			l.lastFull.Store(now)
			l.lim.Log.Warn("connection limit reached: new connections wait until one closes; raise --max-connections if the clients are legitimate",
				"max_connections", l.lim.MaxConns)
		}
		select {
		case l.slots <- struct{}{}:
		case <-l.closed:
			return nil, net.ErrClosed
		}
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.slots
		return nil, err
	}
	n := l.open.Add(1)
	for p := l.peak.Load(); n > p && !l.peak.CompareAndSwap(p, n); p = l.peak.Load() {
	}
	return &conn{Conn: c, l: l, quota: int64(float64(l.lim.MinSendRate) * l.lim.SendWindow.Seconds())}, nil
}

// Close stops accepting, also while Accept waits for a slot.
func (l *Listener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return l.Listener.Close()
}

// Stats reports the connections open now, the most open at once, and
// how many were closed for taking less than the minimum send rate.
func (l *Listener) Stats() (open, peak, slow int64) {
	return l.open.Load(), l.peak.Load(), l.slow.Load()
}

var copyBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// errTooSlow closes a connection whose client does not take its data.
var errTooSlow = errors.New("client took less than the minimum send rate")

// conn measures the time the server spends waiting to write to it (the
// window) and the bytes the client took meanwhile.
type conn struct {
	net.Conn
	l      *Listener
	closed sync.Once
	quota  int64 // bytes the client must take per window

	waited time.Duration // in this window
	sent   int64         // in this window
	failed bool
}

func (c *conn) Close() error {
	err := c.Conn.Close()
	c.closed.Do(func() {
		c.l.open.Add(-1)
		<-c.l.slots
	})
	return err
}

// write runs one write (a Write or a sendfile) with a deadline at the end
// of the current window, and when the window is over checks that the
// client took its quota. A write the deadline interrupted is retried
// while the client keeps up: retry says whether to call again.
func (c *conn) write(op func() (int64, error)) (n int64, retry bool, err error) {
	if c.failed {
		return 0, false, errTooSlow
	}
	start := time.Now()
	c.Conn.SetWriteDeadline(start.Add(c.l.lim.SendWindow - c.waited))
	n, err = op()
	c.waited += time.Since(start)
	c.sent += n
	timedOut := errors.Is(err, os.ErrDeadlineExceeded)
	if timedOut && c.waited < c.l.lim.SendWindow {
		return n, true, nil // woken a little early: the window goes on
	}
	if c.waited >= c.l.lim.SendWindow {
		if c.sent < c.quota {
			c.failed = true
			c.l.slow.Add(1)
			c.l.lim.Log.Info("closing a connection: the client took less than the minimum send rate",
				"remote", c.RemoteAddr().String(), "bytes", c.sent, "window", c.l.lim.SendWindow.String(), "min_rate", c.l.lim.MinSendRate)
			return n, false, fmt.Errorf("%w (%d bytes in %s)", errTooSlow, c.sent, c.l.lim.SendWindow)
		}
		c.waited, c.sent = 0, 0
		if timedOut {
			return n, true, nil
		}
	}
	return n, false, err
}

func (c *conn) Write(p []byte) (int, error) {
	total := 0
	for {
		n, retry, err := c.write(func() (int64, error) {
			n, err := c.Conn.Write(p[total:])
			return int64(n), err
		})
		total += int(n)
		if !retry || total == len(p) {
			return total, err
		}
	}
}

// ReadFrom keeps sendfile for files (http.ServeContent of an *os.File),
// under the same rate rule; other readers are copied through Write.
func (c *conn) ReadFrom(r io.Reader) (int64, error) {
	rf, ok := c.Conn.(io.ReaderFrom)
	src := r
	if lr, isLR := r.(*io.LimitedReader); isLR {
		src = lr.R
	}
	if _, isFile := src.(*os.File); !ok || !isFile {
		// A cached buffer (bytes.Reader) or a bucket: copied through
		// Write with a pooled buffer, not one allocated per response.
		buf := copyBufs.Get().(*[]byte)
		defer copyBufs.Put(buf)
		return io.CopyBuffer(struct{ io.Writer }{c}, r, *buf)
	}
	var total int64
	for {
		// A sendfile interrupted by the deadline has advanced the file's
		// offset and the LimitedReader by what it sent: it resumes.
		n, retry, err := c.write(func() (int64, error) { return rf.ReadFrom(r) })
		total += n
		if !retry {
			return total, err
		}
	}
}

// Run serves h on ln under lim until ctx is done, then shuts down
// gracefully, letting in-flight downloads finish for up to lim.Grace.
func Run(ctx context.Context, ln net.Listener, h http.Handler, lim Limits) error {
	lim = lim.withDefaults()
	srv := HTTPServer(h, lim)
	l := Listen(ln, lim)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), lim.Grace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
