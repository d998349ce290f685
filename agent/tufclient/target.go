package tufclient

import (
	"context"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/fwctl/fwctl/agent/tuf"
	"github.com/fwctl/fwctl/internal/atomicfile"
)

// targetURL returns where the repository serves tf: in a consistent
// snapshot, under the hex of one of its hashes (sha256 if listed, else
// sha512, else the first algorithm by name) before the base name.
func (c *Client) targetURL(tf *tuf.TargetFile, consistent bool) string {
	dir, name := path.Split(tf.Path)
	if consistent {
		name = hashPrefix(tf) + "." + name
	}
	return c.TargetsURL + "/" + escapePath(dir+name)
}

func hashPrefix(tf *tuf.TargetFile) string {
	for _, alg := range []string{"sha256", "sha512"} {
		if h, ok := tf.Hashes[alg]; ok {
			return fmt.Sprintf("%x", []byte(h))
		}
	}
	algs := make([]string, 0, len(tf.Hashes))
	for a := range tf.Hashes {
		algs = append(algs, a)
	}
	sort.Strings(algs)
	return fmt.Sprintf("%x", []byte(tf.Hashes[algs[0]]))
}

func escapePath(p string) string {
	parts := strings.Split(p, "/")
	for i := range parts {
		parts[i] = url.PathEscape(parts[i])
	}
	return strings.Join(parts, "/")
}

// multiHash feeds every hash algorithm of a target the client knows.
type multiHash struct {
	hs map[string]hash.Hash
}

// NewHash returns a hash.Hash that computes every algorithm of tf the
// client knows (sha256, sha512), for feeding the bytes of a download
// already written before ResumeTarget. It fails if tf lists none.
func NewHash(tf *tuf.TargetFile) (hash.Hash, error) {
	hs, err := tuf.Hashers(tf)
	if err != nil {
		return nil, err
	}
	return &multiHash{hs: hs}, nil
}

func (m *multiHash) Write(p []byte) (int, error) {
	for _, h := range m.hs {
		h.Write(p)
	}
	return len(p), nil
}

// Sum appends the sums in algorithm order (for hash.Hash; callers use the
// target check).
func (m *multiHash) Sum(b []byte) []byte {
	algs := make([]string, 0, len(m.hs))
	for a := range m.hs {
		algs = append(algs, a)
	}
	sort.Strings(algs)
	for _, a := range algs {
		b = m.hs[a].Sum(b)
	}
	return b
}

func (m *multiHash) Reset() {
	for _, h := range m.hs {
		h.Reset()
	}
}

func (m *multiHash) Size() int {
	n := 0
	for _, h := range m.hs {
		n += h.Size()
	}
	return n
}

func (m *multiHash) BlockSize() int { return 64 }

// FetchTarget streams target tf into w, hashing on the way, and fails
// with ErrTargetMismatch unless exactly tf.Length bytes with every signed
// hash the client knows arrived. progress, if not nil, is called as bytes
// arrive.
func (c *Client) FetchTarget(ctx context.Context, tr *Trusted, tf *tuf.TargetFile, w io.Writer, progress func(done, total int64)) error {
	return c.ResumeTarget(ctx, tr, tf, w, nil, 0, progress)
}

// ResumeTarget continues a download of tf whose first offset bytes were
// already written and fed to h: a hash from NewHash, or, for a target
// whose only known algorithm is sha256, a SHA-256. With offset 0, h is
// not used. A connection that breaks or stalls is resumed with HTTP Range
// after a backoff, up to c.Retry.Attempts times.
func (c *Client) ResumeTarget(ctx context.Context, tr *Trusted, tf *tuf.TargetFile, w io.Writer, h hash.Hash, offset int64, progress func(done, total int64)) error {
	file := "targets/" + tf.Path
	mh, err := NewHash(tf)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrTargetMismatch, err)
	}
	hs := mh.(*multiHash).hs
	if offset > 0 {
		switch m, ok := h.(*multiHash); {
		case ok:
			hs = m.hs
		case len(hs) == 1 && hs["sha256"] != nil && h != nil && h.Size() == 32:
			hs = map[string]hash.Hash{"sha256": h}
		default:
			return fmt.Errorf("resume %s: the bytes already written were not hashed with every algorithm it lists; start over", file)
		}
	}
	u := c.targetURL(tf, tr.set.Root.ConsistentSnapshot)
	pw := &progressWriter{w: io.MultiWriter(w, &multiHash{hs: hs}), n: offset, total: tf.Length, fn: progress}
	retry := c.Retry
	if retry.Attempts <= 0 {
		retry = DefaultRetry
	}
	wait := retry.Backoff
	for attempt := 1; ; attempt++ {
		_, err := c.download(ctx, file, u, pw.n, tf.Length, pw, nil)
		if errors.Is(err, tuf.ErrEndlessData) {
			return fmt.Errorf("%w: %w", ErrTargetMismatch, err)
		}
		var he *HTTPError
		transient := errors.Is(err, ErrTransport) || errors.Is(err, ErrStalled) || errors.As(err, &he) && he.Status >= 500
		if err == nil || !transient || attempt >= retry.Attempts || ctx.Err() != nil {
			if err != nil {
				return err
			}
			break
		}
		if c.OnRetry != nil {
			c.OnRetry(attempt, pw.n, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		wait = min(2*wait, max(retry.MaxBackoff, retry.Backoff))
	}
	if err := tuf.CheckTarget(tf, pw.n, hs); err != nil {
		return fmt.Errorf("%w: %w", ErrTargetMismatch, err)
	}
	return nil
}

// SaveTarget finds targetPath (following delegations) and stores it in
// dir under its escaped path, skipping the download when a file with the
// right length and hashes is already there. It reports whether it was
// cached.
func (c *Client) SaveTarget(ctx context.Context, tr *Trusted, targetPath, dir string) (bool, error) {
	tf, err := tr.GetTargetInfo(targetPath)
	if err != nil {
		return false, fmt.Errorf("target %s: %w", targetPath, err)
	}
	dst := filepath.Join(dir, quote(targetPath))
	if targetCached(dst, tf) {
		return true, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return false, err
	}
	return false, atomicfile.WriteFrom(dst, func(w io.Writer) error {
		return c.FetchTarget(ctx, tr, tf, w, nil)
	}, 0o644)
}

func targetCached(name string, tf *tuf.TargetFile) bool {
	f, err := os.Open(name)
	if err != nil {
		return false
	}
	defer f.Close()
	hs, err := tuf.Hashers(tf)
	if err != nil {
		return false
	}
	n, err := io.Copy(&multiHash{hs: hs}, io.LimitReader(f, tf.Length+1))
	return err == nil && tuf.CheckTarget(tf, n, hs) == nil
}
