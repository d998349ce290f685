package director

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/fwctl/fwctl/manifests"
	"github.com/fwctl/fwctl/repo/blob"
	"github.com/fwctl/fwctl/repo/layout"
)

// Handler serves a store's director metadata read-only under /director/:
//
//	/director/metadata/N.root.json
//	/director/devices/ID/metadata/{N.root.json,timestamp.json,N.snapshot.json,N.targets.json}
//
// the root chain appearing under every device, so that a device's TUF
// client finds one repository under one URL. Anything else under
// /director/ is 404; other paths go to next.
//
// The devices' timestamps, which nearly every request asks for, are kept
// in memory (at most tsCacheBytes) and served after one Stat shows the
// stored file unchanged.
//
// A device's timestamp.json carries manifests.RootVersionHeader, the newest
// director root version in the store (looked up at most once a second),
// so that a polling agent can skip its root probe.
func Handler(st blob.Store, next http.Handler) http.Handler {
	roots := &rootHint{st: st}
	tsc := &tsCache{st: st, m: map[string]*cachedTS{}}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, ok := strings.CutPrefix(r.URL.Path, "/director/")
		if !ok {
			next.ServeHTTP(w, r)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "director metadata is read-only", http.StatusMethodNotAllowed)
			return
		}
		name, ok := storeName(p)
		if !ok {
			http.NotFound(w, r)
			return
		}
		limit := int64(layout.MaxTargetsLength)
		if strings.HasSuffix(name, "timestamp.json") {
			limit = layout.MaxTimestampLength
		}
		var (
			b   []byte
			err error
		)
		if strings.HasSuffix(name, "/timestamp.json") {
			b, err = tsc.get(r.Context(), name)
		} else {
			b, err = blob.ReadLimited(r.Context(), st, name, limit)
		}
		if err != nil {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(b)))
		if strings.HasSuffix(name, "timestamp.json") {
			w.Header().Set("Cache-Control", "no-cache")
			if v := roots.get(r.Context()); v != "" {
				w.Header().Set(manifests.RootVersionHeader, v)
			}
		} else {
			w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
		}
		if r.Method == http.MethodGet {
			_, _ = w.Write(b)
		}
	})
}

// storeName maps a path under /director/ to the store name it serves.
func storeName(p string) (string, bool) {
	if file, ok := strings.CutPrefix(p, "metadata/"); ok {
		if !versioned(file, "root") {
			return "", false
		}
		return manifests.DirectorRoot + "/" + file, true
	}
	rest, ok := strings.CutPrefix(p, "devices/")
	if !ok {
		return "", false
	}
	id, file, ok := strings.Cut(rest, "/metadata/")
	if !ok || !manifests.ValidDeviceID(id) {
		return "", false
	}
	switch {
	case versioned(file, "root"):
		return manifests.DirectorRoot + "/" + file, true
	case file == "timestamp.json", versioned(file, "snapshot"), versioned(file, "targets"):
		return manifests.DirectorDevice(id) + "/" + file, true
	}
	return "", false
}

func versioned(file, role string) bool {
	v, ok := strings.CutSuffix(file, "."+role+".json")
	if !ok || v == "" || v[0] == '0' {
		return false
	}
	_, err := strconv.ParseUint(v, 10, 63)
	return err == nil
}

// rootHint is the newest director root version in a store, checked again
// at most once per rootHintEvery by one Stat of N+1.root.json (roots are
// never removed).
var rootHintEvery = time.Second

type rootHint struct {
	st      blob.Store
	mu      sync.Mutex
	v       int64
	s       string
	checked time.Time
}

// get returns the version as a header value ("" when there is no root or
// the store cannot be read: no hint, the agent probes).
func (h *rootHint) get(ctx context.Context) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	if now := time.Now(); now.Sub(h.checked) >= 0 && now.Sub(h.checked) < rootHintEvery {
		return h.s
	}
	v := h.v
	for ; ; v++ {
		_, err := h.st.Stat(ctx, manifests.DirectorRoot+"/"+strconv.FormatInt(v+1, 10)+".root.json")
		if errors.Is(err, blob.ErrNotExist) {
			break
		}
		if err != nil {
			return ""
		}
	}
	h.v, h.checked = v, time.Now()
	h.s = ""
	if v > 0 {
		h.s = strconv.FormatInt(v, 10)
	}
	return h.s
}

// tsCacheBytes bounds the timestamps kept in memory (10,000 devices take
// about 8 MB).
const tsCacheBytes = 64 << 20

// tsCache holds device timestamps by store name, each with the size and
// modification time it was read at.
type tsCache struct {
	st    blob.Store
	mu    sync.Mutex
	m     map[string]*cachedTS
	bytes int
}

type cachedTS struct {
	info blob.Info
	data []byte
}

// get returns the stored timestamp name: the cached bytes when a Stat
// shows the same size and modification time, and that time is more than
// two seconds old (a file replaced within the clock's granularity could
// otherwise keep both; a bucket keeps whole seconds), else the file read
// again.
func (c *tsCache) get(ctx context.Context, name string) ([]byte, error) {
	fi, err := c.st.Stat(ctx, name)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	e := c.m[name]
	c.mu.Unlock()
	if e != nil && e.info.Size == fi.Size && e.info.ModTime.Equal(fi.ModTime) {
		return e.data, nil
	}
	b, err := blob.ReadLimited(ctx, c.st, name, layout.MaxTimestampLength)
	if err != nil || time.Since(fi.ModTime) < 2*time.Second || int64(len(b)) != fi.Size {
		return b, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if old := c.m[name]; old != nil {
		c.bytes -= len(old.data)
	}
	if c.bytes+len(b) > tsCacheBytes {
		c.m, c.bytes = map[string]*cachedTS{}, 0
	}
	c.m[name] = &cachedTS{info: fi, data: b}
	c.bytes += len(b)
	return b, nil
}
