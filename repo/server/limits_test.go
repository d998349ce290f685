package server

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a log destination safe for the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// largeRepo writes a repository with a size-byte image and returns its
// directory and the image's URL path.
func largeRepo(t *testing.T, size int) (string, string) {
	t.Helper()
	dir := t.TempDir()
	img := make([]byte, size)
	rand.Read(img)
	sum := sha256.Sum256(img)
	name := "targets/hw/" + hex.EncodeToString(sum[:]) + ".fw.img"
	for p, b := range map[string][]byte{"metadata/timestamp.json": []byte(`{"signed":{}}`), name: img} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, p), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir, "/" + name
}

// TestSlowReadersDoNotStarveClients: clients that ask for a large image
// and never read it used to hold a connection (and a file descriptor)
// each for ever, until fwrepo had none left and every device timed out.
// With a connection cap and a minimum send rate, more slow readers than
// the cap are cut, the cap is never exceeded and is logged, and a normal
// client is served. The checks are counts; the only time bound is a
// generous client timeout.
func TestSlowReadersDoNotStarveClients(t *testing.T) {
	const (
		maxConns = 3
		slow     = 2 * maxConns
	)
	dir, image := largeRepo(t, 16<<20)
	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	s, err := New(Options{Dir: dir, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// The normal client is cut only if it takes less than 64 KiB in 2s
	// of the server waiting on it: a busy machine would have to stop it
	// for two whole seconds.
	lim := Limits{MaxConns: maxConns, MinSendRate: 32 << 10, SendWindow: 2 * time.Second, Log: log}.withDefaults()
	l := Listen(ln, lim)
	srv := HTTPServer(s, lim)
	go srv.Serve(l)
	defer srv.Close()
	addr := ln.Addr().String()

	// Slow readers: a small receive buffer, a request, and no reading.
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range slow {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.(*net.TCPConn).SetReadBuffer(4096)
		fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: fwrepo\r\n\r\n", image)
		conns = append(conns, c)
	}

	client := &http.Client{Timeout: 2 * time.Minute}
	for _, p := range []string{"/metadata/timestamp.json", image} {
		res, err := client.Get("http://" + addr + p)
		if err != nil {
			t.Fatalf("a normal client was not served %s: %v", p, err)
		}
		n, err := io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if err != nil || res.StatusCode != 200 {
			t.Fatalf("GET %s: %d, %d bytes, %v", p, res.StatusCode, n, err)
		}
	}
	_, peak, cut := l.Stats()
	if peak > maxConns {
		t.Errorf("%d connections open at once, cap %d", peak, maxConns)
	}
	// The normal client came after every slow reader, so all of those
	// that held a slot before it must have been cut.
	if cut < slow-maxConns+1 {
		t.Errorf("%d slow readers cut, want at least %d", cut, slow-maxConns+1)
	}
	for _, want := range []string{"connection limit reached", "minimum send rate"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("no log line %q:\n%.2000s", want, logs.String())
		}
	}
}

// TestSlowButSteadyDownloadIsNotCut: a client taking an image at twice the
// minimum rate, far slower than the link, gets all of it although the
// download lasts several windows (a fixed write timeout would cut it).
func TestSlowButSteadyDownloadIsNotCut(t *testing.T) {
	if testing.Short() {
		t.Skip("takes about 6 seconds")
	}
	const size = 6 << 20
	dir, image := largeRepo(t, size)
	s, err := New(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// Socket buffers on loopback hold a few MiB: the rate matters only
	// past them, so the image is larger. The client reads at 16 times the
	// minimum rate: a busy machine would have to stall it for most of a
	// 2s window to matter.
	lim := Limits{MinSendRate: 64 << 10, SendWindow: 2 * time.Second}
	l := Listen(ln, lim)
	srv := HTTPServer(s, lim)
	go srv.Serve(l)
	defer srv.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.(*net.TCPConn).SetReadBuffer(16 << 10)
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: fwrepo\r\nConnection: close\r\n\r\n", image)
	// Read at about 1 MiB/s; behind schedule (a busy machine), read
	// without sleeping until caught up.
	start := time.Now()
	var got int64
	buf := make([]byte, 32<<10)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for ctx.Err() == nil {
		n, err := c.Read(buf)
		got += int64(n)
		if err != nil {
			break
		}
		if ahead := time.Duration(got)*time.Second/(1<<20) - time.Since(start); ahead > 0 {
			time.Sleep(ahead)
		}
	}
	if got < size {
		t.Fatalf("got %d bytes of a %d-byte image (plus headers): the steady download was cut", got, size)
	}
	if _, _, cut := l.Stats(); cut != 0 {
		t.Fatalf("%d connections cut", cut)
	}
}
