package server

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/fwctl/fwctl/manifests"
)

// MetricsPath is where Metrics.Wrap serves the Prometheus exposition.
const MetricsPath = "/metrics"

// Metrics counts what fwrepo serves and does, in Prometheus's text
// exposition format: requests and bytes by kind of file, timestamp
// re-signs and their failures, device reports accepted and refused, and
// the Go runtime and process figures (go_*, process_*). It is written by
// hand, like fwagent's textfile: the Prometheus client library and its
// protobuf closure would take fwrepo over its 400-package budget. Each
// Metrics is its own set, so two servers in one process (tests) do not
// share counters.
type Metrics struct {
	requests, bytes, resigns, reports *counterVec
	start                             time.Time
}

// Request kinds, the "kind" label.
const (
	KindTimestamp = "timestamp" // metadata/timestamp.json, what every device polls
	KindMetadata  = "metadata"  // the other metadata files
	KindImage     = "image"     // full firmware images under targets/
	KindDelta     = "delta"     // delta targets (NAME.from-V.delta)
	KindDeviceAPI = "device_api"
	KindHealth    = "health"
	KindMetrics   = "metrics"
	KindOther     = "other" // anything else (404s)
)

// NewMetrics returns an empty set of counters.
func NewMetrics() *Metrics {
	m := &Metrics{
		requests: newCounterVec("fwrepo_http_requests_total",
			"HTTP requests served, by kind of file (timestamp, metadata, image, delta, device_api, health, metrics, other) and status code.",
			"kind", "code"),
		bytes: newCounterVec("fwrepo_http_response_bytes_total", "Response body bytes sent, by kind of file.", "kind"),
		resigns: newCounterVec("fwrepo_timestamp_resign_total",
			"Re-signing checks of timestamp.json by result: resigned (a new timestamp was written) or failed.", "result"),
		reports: newCounterVec("fwrepo_device_reports_total",
			"Signed device manifests posted to the device API, by result: accepted or refused.", "result"),
		start: time.Now(),
	}
	for _, r := range []string{"resigned", "failed"} {
		m.resigns.with(r) // present at 0 from the start, so rate() and alerts work
	}
	for _, r := range []string{"accepted", "refused"} {
		m.reports.with(r)
	}
	return m
}

// Resign records one check of the online timestamp: resigned says a new
// timestamp was written, err that the check failed.
func (m *Metrics) Resign(resigned bool, err error) {
	switch {
	case err != nil:
		m.resigns.with("failed").Add(1)
	case resigned:
		m.resigns.with("resigned").Add(1)
	}
}

// Kind classifies a request path into a "kind" label value.
func Kind(path string) string {
	switch {
	case path == "/metadata/timestamp.json":
		return KindTimestamp
	case strings.HasPrefix(path, "/metadata/"):
		return KindMetadata
	case strings.HasPrefix(path, "/targets/") && strings.HasSuffix(path, ".delta"):
		return KindDelta
	case strings.HasPrefix(path, "/targets/"):
		return KindImage
	case strings.HasPrefix(path, "/api/"):
		return KindDeviceAPI
	case path == "/healthz":
		return KindHealth
	case path == MetricsPath:
		return KindMetrics
	}
	return KindOther
}

// Wrap counts every request next serves and answers GET /metrics itself.
// A POST of a device manifest is counted as accepted when next answers
// 2xx, refused when it answers 4xx (a bad signature, an unknown or
// removed device, a replayed nonce).
func (m *Metrics) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		kind := Kind(r.URL.Path)
		rw := &countingWriter{ResponseWriter: w, status: http.StatusOK}
		if kind == KindMetrics && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
			m.expose(rw, r)
		} else {
			next.ServeHTTP(rw, r)
		}
		m.requests.with(kind, strconv.Itoa(rw.status)).Add(1)
		m.bytes.with(kind).Add(uint64(rw.n))
		if r.Method == http.MethodPost && r.URL.Path == manifests.ManifestPath {
			switch {
			case rw.status < 300:
				m.reports.with("accepted").Add(1)
			case rw.status < 500:
				m.reports.with("refused").Add(1)
			}
		}
	})
}

// countingWriter records the status and the body bytes written, keeping
// the sendfile path (ReaderFrom) the file server uses.
type countingWriter struct {
	http.ResponseWriter
	status int
	n      int64
	wrote  bool
}

func (c *countingWriter) WriteHeader(code int) {
	if !c.wrote {
		c.status, c.wrote = code, true
	}
	c.ResponseWriter.WriteHeader(code)
}

func (c *countingWriter) Write(b []byte) (int, error) {
	c.wrote = true
	n, err := c.ResponseWriter.Write(b)
	c.n += int64(n)
	return n, err
}

func (c *countingWriter) ReadFrom(src io.Reader) (int64, error) {
	c.wrote = true
	var n int64
	var err error
	if rf, ok := c.ResponseWriter.(io.ReaderFrom); ok {
		n, err = rf.ReadFrom(src)
	} else {
		n, err = io.Copy(struct{ io.Writer }{c.ResponseWriter}, src)
	}
	c.n += n
	return n, err
}

// Unwrap lets http.ResponseController reach the connection.
func (c *countingWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }

// counterVec is a counter with labels: one integer per set of label values.
type counterVec struct {
	name, help string
	labels     []string
	mu         sync.Mutex
	series     map[seriesKey]*atomic.Uint64
}

func newCounterVec(name, help string, labels ...string) *counterVec {
	if len(labels) > 2 {
		panic("counterVec: at most two labels")
	}
	return &counterVec{name: name, help: help, labels: labels, series: map[seriesKey]*atomic.Uint64{}}
}

// with returns the counter of these label values (in the order of labels).
func (c *counterVec) with(values ...string) *atomic.Uint64 {
	var k seriesKey
	switch len(values) {
	case 2:
		k.b = values[1]
		fallthrough
	case 1:
		k.a = values[0]
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	v := c.series[k]
	if v == nil {
		v = new(atomic.Uint64)
		c.series[k] = v
	}
	return v
}

// seriesKey holds up to two label values (the most any counter here has):
// a lookup per request allocates nothing.
type seriesKey struct{ a, b string }

// write writes the counter in the text format, series sorted, label
// names in alphabetical order as Prometheus prints them.
func (c *counterVec) write(w io.Writer) {
	fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s counter\n", c.name, c.help, c.name)
	c.mu.Lock()
	lines := make([]string, 0, len(c.series))
	for key, v := range c.series {
		values := []string{key.a, key.b}
		pairs := make([]string, len(c.labels))
		for i, l := range c.labels {
			pairs[i] = l + `="` + escapeLabel(values[i]) + `"`
		}
		sort.Strings(pairs)
		lines = append(lines, fmt.Sprintf("%s{%s} %d\n", c.name, strings.Join(pairs, ","), v.Load()))
	}
	c.mu.Unlock()
	sort.Strings(lines)
	for _, l := range lines {
		io.WriteString(w, l)
	}
}

var labelEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)

func escapeLabel(v string) string { return labelEscaper.Replace(v) }

// expose answers a scrape.
func (m *Metrics) expose(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if r.Method == http.MethodHead {
		return
	}
	for _, c := range []*counterVec{m.requests, m.bytes, m.resigns, m.reports} {
		c.write(w)
	}
	gauge := func(name, help string, v float64) {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s gauge\n%s %s\n", name, help, name, name, strconv.FormatFloat(v, 'g', -1, 64))
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	gauge("go_goroutines", "Number of goroutines that currently exist.", float64(runtime.NumGoroutine()))
	gauge("go_memstats_heap_alloc_bytes", "Bytes of allocated heap objects.", float64(ms.HeapAlloc))
	gauge("go_memstats_heap_inuse_bytes", "Bytes in in-use heap spans.", float64(ms.HeapInuse))
	gauge("go_memstats_sys_bytes", "Bytes of memory obtained from the OS.", float64(ms.Sys))
	fmt.Fprintf(w, "# HELP go_gc_cycles_total Completed GC cycles.\n# TYPE go_gc_cycles_total counter\ngo_gc_cycles_total %d\n", ms.NumGC)
	fmt.Fprintf(w, "# HELP go_info Information about the Go environment.\n# TYPE go_info gauge\ngo_info{version=\"%s\"} 1\n", escapeLabel(runtime.Version()))
	gauge("process_start_time_seconds", "Start time of the process since the Unix epoch in seconds.", float64(m.start.Unix()))
	if fds, err := os.ReadDir("/proc/self/fd"); err == nil {
		gauge("process_open_fds", "Number of open file descriptors.", float64(len(fds)))
	}
	if b, err := os.ReadFile("/proc/self/statm"); err == nil {
		if f := strings.Fields(string(b)); len(f) > 1 {
			if pages, err := strconv.ParseFloat(f[1], 64); err == nil {
				gauge("process_resident_memory_bytes", "Resident memory size in bytes.", pages*float64(os.Getpagesize()))
			}
		}
	}
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
		fmt.Fprintf(w, "# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.\n# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total %s\n",
			strconv.FormatFloat(cpu, 'g', -1, 64))
	}
}
