// Package server serves a published fwctl repository over HTTP: metadata and
// targets with correct content types, HTTP Range, strong ETags and cache
// headers suited to TUF (short for timestamp.json, immutable for
// version- and hash-named files), and a health endpoint. The repository is a
// directory or any other blob.Store (an S3 bucket); the server only reads
// it and never serves anything outside metadata/ and targets/.
package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"path"
	"regexp"
	"strings"
	"time"

	"github.com/fwctl/fwctl/repo/blob"
)

// Options configure a Server.
type Options struct {
	// Dir is the repository directory; ignored when Store is set.
	Dir string
	// Store holds the repository (a directory or bucket, see blob.Open).
	Store  blob.Store
	Logger *slog.Logger
	// TimestampMaxAge is the Cache-Control max-age of timestamp.json.
	TimestampMaxAge time.Duration
}

// Server is an HTTP handler for a repository directory.
type Server struct {
	store  blob.Store
	log    *slog.Logger
	tsAge  time.Duration
	health func() error
}

// New opens the repository for serving.
func New(opt Options) (*Server, error) {
	st := opt.Store
	if st == nil {
		st = blob.Dir(opt.Dir)
	}
	md, err := st.List(context.Background(), "metadata/")
	if err != nil {
		return nil, fmt.Errorf("open repository %s: %w", st, err)
	}
	if len(md) == 0 {
		return nil, fmt.Errorf("%s has no metadata: publish first with 'fwctl publish --out %s'", st, st)
	}
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	if opt.TimestampMaxAge == 0 {
		opt.TimestampMaxAge = 10 * time.Second
	}
	return &Server{store: st, log: opt.Logger, tsAge: opt.TimestampMaxAge}, nil
}

// SetHealthCheck installs a function /healthz consults.
func (s *Server) SetHealthCheck(f func() error) { s.health = f }

// immutableRE matches names that never change content: N.role.json and
// SHA256.name target files.
var (
	versionedRE = regexp.MustCompile(`^[0-9]+\.[^/]+\.json$`)
	hashedRE    = regexp.MustCompile(`^[0-9a-f]{64}\.[^/]+$`)
)

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rw := &recorder{ResponseWriter: w, status: http.StatusOK}
	s.serve(rw, r)
	s.log.Info("request", "method", r.Method, "path", r.URL.Path, "status", rw.status,
		"bytes", rw.n, "range", r.Header.Get("Range"), "remote", r.RemoteAddr,
		"duration_ms", time.Since(start).Milliseconds())
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if r.ContentLength > 0 {
		http.Error(w, "request body not allowed", http.StatusRequestEntityTooLarge)
		return
	}
	if r.URL.Path == "/healthz" {
		if s.health != nil {
			if err := s.health(); err != nil {
				http.Error(w, "unhealthy: "+err.Error(), http.StatusServiceUnavailable)
				return
			}
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		io.WriteString(w, "ok\n")
		return
	}
	p := strings.TrimPrefix(path.Clean(r.URL.Path), "/")
	top, _, _ := strings.Cut(p, "/")
	if (top != "metadata" && top != "targets") || strings.Contains(p, "/.") || !fs.ValidPath(p) {
		http.NotFound(w, r)
		return
	}
	fi, err := s.store.Stat(r.Context(), p)
	if err != nil {
		if !errors.Is(err, blob.ErrNotExist) {
			// The store is unreachable: a retryable error, not a 404
			// a CDN would cache.
			s.log.Error("stat failed", "path", p, "err", err)
			w.Header().Set("Cache-Control", "no-store")
			http.Error(w, "repository storage unavailable", http.StatusServiceUnavailable)
			return
		}
		http.NotFound(w, r)
		return
	}
	name := path.Base(p)
	h := w.Header()
	switch {
	case top == "metadata":
		h.Set("Content-Type", "application/json")
	default:
		h.Set("Content-Type", "application/octet-stream")
	}
	switch {
	case top == "metadata" && name == "timestamp.json":
		h.Set("Cache-Control", fmt.Sprintf("public, max-age=%d", int(s.tsAge.Seconds())))
	case top == "metadata" && versionedRE.MatchString(name), top == "targets" && hashedRE.MatchString(name):
		h.Set("Cache-Control", "public, max-age=31536000, immutable")
	default:
		h.Set("Cache-Control", "no-cache")
	}
	var content io.ReadSeeker
	if top == "targets" && hashedRE.MatchString(name) {
		h.Set("ETag", `"sha256-`+name[:64]+`"`)
	} else if fi.Size <= 16<<20 {
		// Small files (metadata) are read whole to hash them for the
		// ETag, and served from memory: one read from the store.
		b, err := blob.ReadAll(r.Context(), s.store, p)
		if err != nil {
			s.log.Error("read failed", "path", p, "err", err)
			http.Error(w, "read error", http.StatusInternalServerError)
			return
		}
		sum := sha256.Sum256(b)
		h.Set("ETag", `"sha256-`+hex.EncodeToString(sum[:])+`"`)
		content = bytes.NewReader(b)
	}
	if content == nil {
		// Large files are read only in the ranges asked for.
		rd := blob.NewReader(r.Context(), s.store, p, fi.Size)
		defer rd.Close()
		content = rd
	}
	http.ServeContent(w, r, name, fi.ModTime, content)
}

type recorder struct {
	http.ResponseWriter
	status int
	n      int64
}

func (r *recorder) WriteHeader(code int) { r.status = code; r.ResponseWriter.WriteHeader(code) }
func (r *recorder) Write(b []byte) (int, error) {
	n, err := r.ResponseWriter.Write(b)
	r.n += int64(n)
	return n, err
}

// HTTPServer wraps h with the limits a public server needs.
func HTTPServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    16 << 10,
	}
}

// Run serves h on ln until ctx is done, then shuts down gracefully,
// letting in-flight downloads finish for up to grace.
func Run(ctx context.Context, ln net.Listener, h http.Handler, grace time.Duration) error {
	srv := HTTPServer(h)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
