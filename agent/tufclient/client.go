// Package tufclient is the device's TUF client: the specification's client
// workflow (Update) over the verifier in agent/tuf, one HTTP fetcher
// bounded by signed lengths, configured size caps and a minimum average
// rate, and downloads of target files streamed straight into a writer,
// hashed on the way, resumable. Metadata is stored in one directory with
// non-versioned names (root.json, timestamp.json, ...), delegated roles
// under their quoted names.
package tufclient

import (
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/fwctl/fwctl/agent/tuf"
)

// Client fetches metadata and targets from one repository.
type Client struct {
	MetadataURL string // e.g. http://host/metadata
	TargetsURL  string // e.g. http://host/targets
	MetadataDir string
	HTTP        *http.Client
	// StallTimeout aborts a download that receives nothing for this long.
	StallTimeout time.Duration
	// RefTime, when set, replaces the clock for expiry checks.
	RefTime time.Time
	// Retry controls resuming broken target downloads (DefaultRetry if zero).
	Retry Retry
	// OnRetry, when set, is told about each resumed download.
	OnRetry func(attempt int, offset int64, err error)
	// OnRoot, when set, is called with every root version Update verifies
	// along the rotation chain, so callers can archive the chain.
	OnRoot func(version int64, data []byte)
	// Limits bound metadata sizes and root rotations (DefaultLimits if zero).
	Limits Limits
	// Rate is the minimum download rate (DefaultRate from New; zero: off).
	Rate Rate
	// RootProbeInterval is how long Update may skip the root probe when
	// the server's RootHintHeader says there is no newer root
	// (DefaultRootProbeInterval if zero; negative: probe on every update).
	RootProbeInterval time.Duration
	// Check, when set, must accept the verified timestamp, snapshot and
	// targets before Update stores any of them: until then they are
	// staged in memory, so metadata Check refuses changes nothing.
	Check func(*tuf.Trusted) error

	mu     sync.Mutex
	staged map[string][]byte
}

// New returns a client for repository base URL (its /metadata and /targets).
func New(base, metadataDir string) *Client {
	base = strings.TrimSuffix(base, "/")
	return &Client{MetadataURL: base + "/metadata", TargetsURL: base + "/targets", MetadataDir: metadataDir,
		HTTP: &http.Client{Transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			ResponseHeaderTimeout: 30 * time.Second,
			IdleConnTimeout:       60 * time.Second,
			TLSHandshakeTimeout:   15 * time.Second,
		}},
		StallTimeout: 30 * time.Second, Rate: DefaultRate}
}

// Retry controls how a broken target download is resumed.
type Retry struct {
	// Attempts is the number of tries in all (1: no retry).
	Attempts int
	// Backoff is the wait before the first retry; it doubles up to
	// MaxBackoff.
	Backoff, MaxBackoff time.Duration
}

// DefaultRetry resumes a broken download four times, waiting 1, 2, 4 and 8 s.
var DefaultRetry = Retry{Attempts: 5, Backoff: time.Second, MaxBackoff: 30 * time.Second}

type progressWriter struct {
	w     io.Writer
	n     int64
	total int64
	fn    func(done, total int64)
}

func (p *progressWriter) Write(b []byte) (int, error) {
	n, err := p.w.Write(b)
	p.n += int64(n)
	if p.fn != nil {
		p.fn(p.n, p.total)
	}
	return n, err
}
