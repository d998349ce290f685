package server

import (
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/fwctl/fwctl/manifests"
)

// MetricsPath is where Metrics.Wrap serves the Prometheus exposition.
const MetricsPath = "/metrics"

// Metrics counts what fwrepo serves and does, with the Prometheus client
// library: requests and bytes by kind of file, timestamp re-signs and their
// failures, device reports accepted and refused, and the Go runtime and
// process collectors (go_*, process_*). Each Metrics has its own registry,
// so two servers in one process (tests) do not share counters; more
// collectors (rollout progress) register with Register.
type Metrics struct {
	reg                               *prometheus.Registry
	requests, bytes, resigns, reports *prometheus.CounterVec
	handler                           http.Handler
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
	reg := prometheus.NewRegistry()
	m := &Metrics{
		reg: reg,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fwrepo_http_requests_total",
			Help: "HTTP requests served, by kind of file (timestamp, metadata, image, delta, device_api, health, metrics, other) and status code."},
			[]string{"kind", "code"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fwrepo_http_response_bytes_total",
			Help: "Response body bytes sent, by kind of file."}, []string{"kind"}),
		resigns: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fwrepo_timestamp_resign_total",
			Help: "Re-signing checks of timestamp.json by result: resigned (a new timestamp was written) or failed."}, []string{"result"}),
		reports: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fwrepo_device_reports_total",
			Help: "Signed device manifests posted to the device API, by result: accepted or refused."}, []string{"result"}),
	}
	reg.MustRegister(m.requests, m.bytes, m.resigns, m.reports,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	for _, r := range []string{"resigned", "failed"} {
		m.resigns.WithLabelValues(r) // present at 0 from the start, so rate() and alerts work
	}
	for _, r := range []string{"accepted", "refused"} {
		m.reports.WithLabelValues(r)
	}
	m.handler = promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
	return m
}

// Register adds collectors (for example rollout progress) to the set.
func (m *Metrics) Register(cs ...prometheus.Collector) error {
	for _, c := range cs {
		if err := m.reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// Resign records one check of the online timestamp: resigned says a new
// timestamp was written, err that the check failed.
func (m *Metrics) Resign(resigned bool, err error) {
	switch {
	case err != nil:
		m.resigns.WithLabelValues("failed").Inc()
	case resigned:
		m.resigns.WithLabelValues("resigned").Inc()
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
			rw.Header().Set("Cache-Control", "no-store")
			m.handler.ServeHTTP(rw, r)
		} else {
			next.ServeHTTP(rw, r)
		}
		m.requests.WithLabelValues(kind, strconv.Itoa(rw.status)).Inc()
		m.bytes.WithLabelValues(kind).Add(float64(rw.n))
		if r.Method == http.MethodPost && r.URL.Path == manifests.ManifestPath {
			switch {
			case rw.status < 300:
				m.reports.WithLabelValues("accepted").Inc()
			case rw.status < 500:
				m.reports.WithLabelValues("refused").Inc()
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
