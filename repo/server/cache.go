package server

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// entry is what the server knows about one version of a file: its ETag
// and, for metadata that fits the cache, its bytes. An entry is immutable
// once published in the cache (apart from checked), so every request for
// the file shares one buffer whatever their number.
type entry struct {
	info fileInfo
	etag []string // the ETag header's value, shared by every response
	data []byte   // nil: streamed from the source per request
	// lastMod and length are the Last-Modified and Content-Length
	// header values of data.
	lastMod, length []string
	// checked is when info was last compared with the source (UnixNano),
	// and gen the source's generation then (see dirSource.generation).
	checked atomic.Int64
	gen     atomic.Uint64
}

// cache holds entries up to a total of max bytes of data (ETag-only
// entries count as nothing), loading each file once however many
// requests ask for it at the same time.
type cache struct {
	max, maxFile int64

	mu      sync.Mutex
	m       map[string]*entry
	bytes   int64
	loading map[string]*load
}

type load struct {
	done chan struct{}
	e    *entry
	err  error
}

func newCache(max, maxFile int64) *cache {
	return &cache{max: max, maxFile: min(maxFile, max), m: map[string]*entry{}, loading: map[string]*load{}}
}

// get returns the entry for name, if any (the caller checks it is current).
func (c *cache) get(name string) *entry {
	c.mu.Lock()
	e := c.m[name]
	c.mu.Unlock()
	return e
}

// fits reports whether a file of size bytes is kept in memory.
func (c *cache) fits(size int64) bool { return size <= c.maxFile }

// put publishes e for name, evicting other entries' data to stay within max.
func (c *cache) put(name string, e *entry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if old := c.m[name]; old != nil {
		c.bytes -= int64(len(old.data))
	}
	for k, v := range c.m {
		if c.bytes+int64(len(e.data)) <= c.max {
			break
		}
		if k != name && v.data != nil {
			c.bytes -= int64(len(v.data))
			delete(c.m, k)
		}
	}
	c.m[name] = e
	c.bytes += int64(len(e.data))
}

// once runs f for name unless a run for name is in progress, in which case
// it waits for that run's result: concurrent cold requests for a 16 MiB
// targets.json read it once, not once each.
func (c *cache) once(ctx context.Context, name string, f func() (*entry, error)) (*entry, error) {
	c.mu.Lock()
	if l := c.loading[name]; l != nil {
		c.mu.Unlock()
		select {
		case <-l.done:
			return l.e, l.err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	l := &load{done: make(chan struct{})}
	c.loading[name] = l
	c.mu.Unlock()
	l.e, l.err = f()
	if l.err == nil {
		c.put(name, l.e)
	}
	c.mu.Lock()
	delete(c.loading, name)
	c.mu.Unlock()
	close(l.done)
	return l.e, l.err
}

// readEntry reads a whole file of the size info says into a new entry.
func readEntry(rc io.Reader, name string, info fileInfo) (*entry, error) {
	b := make([]byte, info.size)
	if _, err := io.ReadFull(rc, b); err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	// One more byte would mean the file grew after the stat: let the next
	// request read it again.
	if n, _ := rc.Read(make([]byte, 1)); n != 0 {
		return nil, fmt.Errorf("read %s: it changed while being read", name)
	}
	sum := sha256.Sum256(b)
	e := &entry{info: info, data: b, etag: []string{`"sha256-` + hex.EncodeToString(sum[:]) + `"`},
		lastMod: header(info.mod.UTC().Format(http.TimeFormat)), length: header(strconv.Itoa(len(b)))}
	e.checked.Store(time.Now().UnixNano())
	return e, nil
}

// hashEntry hashes a file too large for the cache to make its ETag (once
// per version of the file), then seeks rs back to the start.
func hashEntry(rs io.ReadSeeker, name string, info fileInfo) (*entry, error) {
	h := sha256.New()
	if _, err := io.Copy(h, io.LimitReader(rs, info.size)); err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	if _, err := rs.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	e := &entry{info: info, etag: []string{`"sha256-` + hex.EncodeToString(h.Sum(nil)) + `"`}}
	e.checked.Store(time.Now().UnixNano())
	return e, nil
}
