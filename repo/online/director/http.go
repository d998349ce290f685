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
// A device's timestamp.json carries manifests.RootVersionHeader, the newest
// director root version in the store (looked up at most once a second),
// so that a polling agent can skip its root probe.
func Handler(st blob.Store, next http.Handler) http.Handler {
	roots := &rootHint{st: st}
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
		b, err := blob.ReadLimited(r.Context(), st, name, limit)
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
