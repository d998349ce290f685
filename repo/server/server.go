// Package server serves a published fwctl repository over HTTP: metadata and
// targets with correct content types, HTTP Range, strong ETags and cache
// headers suited to TUF (short for timestamp.json, immutable for
// version- and hash-named files), and a health endpoint. The repository is a
// directory or any other blob.Store (an S3 bucket); the server only reads
// it and never serves anything outside metadata/ and targets/.
//
// Its memory is bounded whatever the request mix: metadata is kept in one
// shared buffer per file version (up to Options.CacheBytes in all), a
// cold file is read once however many requests ask for it at once, and
// images are streamed from the file (sendfile in a directory). Run adds the
// limits a public server needs: a connection cap, and a minimum rate at
// which a client must take what it asked for (see Limits).
package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"path"
	"regexp"
	"strings"
	"time"

	"github.com/fwctl/fwctl/manifests"
	"github.com/fwctl/fwctl/repo/blob"
	"github.com/fwctl/fwctl/repo/layout"
)

// Defaults of Options.
const (
	DefaultCacheBytes    = 64 << 20
	DefaultMaxCachedFile = 16 << 20
	// DefaultRevalidate is Options.Revalidate for a bucket (one Stat
	// request per revalidation); a directory is checked on every request.
	DefaultRevalidate = time.Second
)

// Options configure a Server.
type Options struct {
	// Dir is the repository directory; ignored when Store is set.
	Dir string
	// Store holds the repository (a directory or bucket, see blob.Open).
	// A blob.Dir is served from the directory directly (sendfile).
	Store  blob.Store
	Logger *slog.Logger
	// TimestampMaxAge is the Cache-Control max-age of timestamp.json.
	TimestampMaxAge time.Duration
	// CacheBytes bounds the metadata kept in memory (default 64 MiB);
	// MaxCachedFile is the largest metadata file kept (default 16 MiB,
	// at most CacheBytes). Larger files are streamed.
	CacheBytes, MaxCachedFile int64
	// Revalidate is how long a cached file is served before the server
	// checks again that the stored file (size, modification time, inode)
	// is the one cached: a publish shows within that time. Zero means on
	// every request for a directory (one fstatat, so a publish shows at
	// once: a device that updates right after 'fwctl publish' sees it) and
	// DefaultRevalidate for a bucket, where each check is a request.
	Revalidate time.Duration
	// NoAccessLog drops the one log line per request; AccessLogger
	// receives it (default Logger).
	NoAccessLog  bool
	AccessLogger *slog.Logger
}

// Server is an HTTP handler for a repository directory.
type Server struct {
	src     source
	log     *slog.Logger
	alog    *slog.Logger
	tsCache []string
	health  func() error
	cache   *cache
	reval   int64 // nanoseconds
	access  bool
	root    rootHint
}

// New opens the repository for serving.
func New(opt Options) (*Server, error) {
	st := opt.Store
	if st == nil {
		st = blob.Dir(opt.Dir)
	}
	md, err := st.List(context.Background(), layout.MetadataDir+"/")
	if err != nil {
		return nil, fmt.Errorf("open repository %s: %w", st, err)
	}
	if len(md) == 0 {
		return nil, fmt.Errorf("%s has no metadata: publish first with 'fwctl publish --out %s'", st, st)
	}
	var src source = storeSource{st}
	if d, ok := st.(blob.Dir); ok {
		if src, err = newDirSource(string(d)); err != nil {
			return nil, err
		}
	} else if opt.Revalidate <= 0 {
		opt.Revalidate = DefaultRevalidate
	}
	opt.Revalidate = max(opt.Revalidate, 0)
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	if opt.TimestampMaxAge == 0 {
		opt.TimestampMaxAge = 10 * time.Second
	}
	if opt.CacheBytes <= 0 {
		opt.CacheBytes = DefaultCacheBytes
	}
	if opt.MaxCachedFile <= 0 {
		opt.MaxCachedFile = DefaultMaxCachedFile
	}
	if opt.AccessLogger == nil {
		opt.AccessLogger = opt.Logger
	}
	return &Server{src: src, log: opt.Logger, alog: opt.AccessLogger, cache: newCache(opt.CacheBytes, opt.MaxCachedFile),
		tsCache: header(fmt.Sprintf("public, max-age=%d", int(opt.TimestampMaxAge.Seconds()))),
		reval:   int64(opt.Revalidate), access: !opt.NoAccessLog}, nil
}

// SetHealthCheck installs a function /healthz consults.
func (s *Server) SetHealthCheck(f func() error) { s.health = f }

// immutableRE matches names that never change content: N.role.json and
// SHA256.name target files.
var (
	versionedRE = regexp.MustCompile(`^[0-9]+\.[^/]+\.json$`)
	hashedRE    = regexp.MustCompile(`^[0-9a-f]{64}\.[^/]+$`)
)

// header returns a header value slice that an append elsewhere cannot
// share: responses use these without copying.
func header(v string) []string { return []string{v}[:1:1] }

var (
	ctJSON    = header("application/json")
	ctOctet   = header("application/octet-stream")
	immutable = header("public, max-age=31536000, immutable")
	noCache   = header("no-cache")
	// acceptRanges is what ServeContent says too.
	acceptRanges = header("bytes")
)

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !s.access {
		s.serve(w, r)
		return
	}
	start := time.Now()
	rw := &recorder{ResponseWriter: w, status: http.StatusOK}
	s.serve(rw, r)
	s.alog.LogAttrs(r.Context(), slog.LevelInfo, "request", slog.String("method", r.Method), slog.String("path", r.URL.Path),
		slog.Int("status", rw.status), slog.Int64("bytes", rw.n), slog.String("range", r.Header.Get("Range")),
		slog.String("remote", r.RemoteAddr), slog.Int64("duration_ms", time.Since(start).Milliseconds()))
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
				w.Header().Set("Cache-Control", "no-store")
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
	if (top != layout.MetadataDir && top != layout.TargetsDir) || strings.Contains(p, "/.") || !fs.ValidPath(p) {
		http.NotFound(w, r)
		return
	}
	name := path.Base(p)
	metadata := top == layout.MetadataDir
	hashed := !metadata && hashedRE.MatchString(name)
	var (
		e   *entry
		rc  io.ReadSeekCloser
		err error
	)
	if hashed {
		// The name is the content's hash: no need to read it for an ETag.
		var fi fileInfo
		rc, fi, err = s.src.open(r.Context(), p)
		e = &entry{info: fi, etag: header(`"sha256-` + name[:64] + `"`)}
	} else {
		e, rc, err = s.find(r.Context(), p, metadata, metadata && versionedRE.MatchString(name))
	}
	if err != nil {
		if !errors.Is(err, blob.ErrNotExist) {
			// The store is unreachable: a retryable error, not a 404
			// a CDN would cache.
			s.log.Error("read failed", "path", p, "err", err)
			w.Header().Set("Cache-Control", "no-store")
			http.Error(w, "repository storage unavailable", http.StatusServiceUnavailable)
			return
		}
		http.NotFound(w, r)
		return
	}
	if rc != nil {
		defer rc.Close()
	}
	h := w.Header()
	switch {
	case metadata:
		h["Content-Type"] = ctJSON
	default:
		h["Content-Type"] = ctOctet
	}
	switch {
	case metadata && name == "timestamp.json":
		h["Cache-Control"] = s.tsCache
		if p == layout.MetadataDir+"/timestamp.json" {
			if v := s.rootHeader(r.Context(), e); v != nil {
				h[manifests.RootVersionHeader] = v
			}
		}
	case metadata && versionedRE.MatchString(name), hashed:
		h["Cache-Control"] = immutable
	default:
		h["Cache-Control"] = noCache
	}
	if e.etag != nil {
		h["Etag"] = e.etag
	}
	if e.data != nil && len(e.data) <= smallBody && plain(r) {
		// What nearly every request is (a device polling timestamp.json):
		// no Range and no condition, so none of ServeContent's work.
		h["Last-Modified"] = e.lastMod
		h["Content-Length"] = e.length
		h["Accept-Ranges"] = acceptRanges
		if r.Method != http.MethodHead {
			w.Write(e.data)
		}
		return
	}
	var content io.ReadSeeker = rc
	if e.data != nil {
		content = bytes.NewReader(e.data)
		if len(e.data) <= smallBody {
			// Through Write, the body joins the header in one buffered
			// write; ReadFrom would flush the header first, a second
			// write per request.
			w = writeOnly{w}
		}
	}
	http.ServeContent(w, r, name, e.info.mod, content)
}

// plain reports whether r asks for the whole file unconditionally.
func plain(r *http.Request) bool {
	h := r.Header
	return h["Range"] == nil && h["If-None-Match"] == nil && h["If-Match"] == nil &&
		h["If-Modified-Since"] == nil && h["If-Unmodified-Since"] == nil && h["If-Range"] == nil
}

// smallBody is the largest cached body written with the header in one go.
const smallBody = 64 << 10

// writeOnly hides the ResponseWriter's ReadFrom.
type writeOnly struct{ http.ResponseWriter }

// generation is the source's change count (dirSource.generation); false
// when changes cannot be watched.
func (s *Server) generation() (uint64, bool) {
	if d, ok := s.src.(*dirSource); ok {
		return d.generation()
	}
	return 0, false
}

// recent reports whether a bucket's file changed so shortly before now
// that another write in the same second could have the same size and
// modification time (object storage keeps whole seconds, and a re-signed
// timestamp.json often has the size of the one it replaces): such a file
// is read again rather than trusted by its Stat. A directory's file is
// told apart by its inode and nanosecond times.
func recent(fi fileInfo, now int64) bool {
	return fi.sys == nil && now-fi.mod.UnixNano() < int64(2*time.Second)
}

// find returns what serves name: a cached entry with its bytes, or an
// entry with the ETag and an open reader. A cached file is compared with
// the source at most once per Revalidate.
func (s *Server) find(ctx context.Context, name string, metadata, immutable bool) (*entry, io.ReadSeekCloser, error) {
	now := time.Now().UnixNano()
	e := s.cache.get(name)
	if e != nil && e.data != nil {
		// A file replaced in place (timestamp.json) must be the new one
		// as soon as a publish lands: a device may poll right after it.
		// In a watched directory, nothing changed since the last check
		// says so without a stat; elsewhere it is compared with the
		// source on every request. A versioned file is compared at most
		// once per Revalidate.
		gen, watched := s.generation()
		if now-e.checked.Load() < s.reval && (immutable || (watched && e.gen.Load() == gen)) {
			return e, nil, nil
		}
		fi, err := s.src.stat(ctx, name)
		if err != nil {
			return nil, nil, err
		}
		if e.info.same(fi) && !recent(fi, now) {
			e.gen.Store(gen)
			e.checked.Store(now)
			return e, nil, nil
		}
	}
	if e != nil && e.data == nil {
		rc, fi, err := s.src.open(ctx, name)
		if err != nil {
			return nil, nil, err
		}
		if e.info.same(fi) && !recent(fi, now) {
			return e, rc, nil
		}
		rc.Close()
	}
	// Not cached, or changed: read it once, whoever else asks meanwhile.
	lctx := context.WithoutCancel(ctx)
	e, err := s.cache.once(ctx, name, func() (*entry, error) {
		rc, fi, err := s.src.open(lctx, name)
		if err != nil {
			return nil, err
		}
		defer rc.Close()
		if metadata && s.cache.fits(fi.size) {
			return readEntry(rc, name, fi)
		}
		return hashEntry(rc, name, fi)
	})
	if err != nil {
		return nil, nil, err
	}
	if e.data != nil {
		return e, nil, nil
	}
	rc, fi, err := s.src.open(ctx, name)
	if err != nil {
		return nil, nil, err
	}
	if !e.info.same(fi) {
		// Replaced again since it was hashed: serve it without an ETag.
		return &entry{info: fi}, rc, nil
	}
	return e, rc, nil
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

// ReadFrom keeps the ResponseWriter's ReadFrom reachable through the
// recorder, so that a download from a file is still a sendfile.
func (r *recorder) ReadFrom(src io.Reader) (int64, error) {
	var n int64
	var err error
	if rf, ok := r.ResponseWriter.(io.ReaderFrom); ok {
		n, err = rf.ReadFrom(src)
	} else {
		n, err = io.Copy(struct{ io.Writer }{r.ResponseWriter}, src)
	}
	r.n += n
	return n, err
}
