package vm

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"maps"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fwctl/fwctl/repo"
	"github.com/fwctl/fwctl/test/harness"
)

// Image sizes: the slots are 8 MiB.
const (
	v2Size = 3 << 20
	// rate throttles target downloads so that the download spans a good
	// part of the update (about 1.5 s for v2).
	rate = 2 << 20
	// deltaRate is rate under -delta: the delta (about 1 MiB) then also
	// takes about 1.5 s, and the apply, which streams, spans it
	deltaRate = 700 << 10
)

// fixture is one published repository serving v2 to machines.
type fixture struct {
	root    []byte
	v2      []byte
	v2Hash  string
	v2Path  string // target path in the repository
	port    int
	factory []byte
	pf      platform
	delta   bool // updates by delta from the factory image (-delta)

	mu     sync.Mutex
	events map[string]time.Time // "get": first byte of v2 asked, "sent": last byte sent
}

func sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// flagDelta makes every update of the machine a delta update: the factory
// image is published as release 1.0.0 and v2 is built from it, with a
// delta from 1.0.0, so kills and crash states land in the delta's apply.
var flagDelta = flag.Bool("delta", false, "update the machines by delta (the factory image is release 1.0.0, v2 a delta from it)")

// newFixture publishes v2 (counter 2) and serves it on 127.0.0.1, which
// the machine reaches as 10.0.2.2 through QEMU's user-mode network.
func newFixture(t *testing.T, im *image) *fixture {
	t.Helper()
	fx := &fixture{factory: im.factory, pf: im.platform, events: map[string]time.Time{}, delta: *flagDelta}
	fx.v2 = make([]byte, v2Size)
	rand.Read(fx.v2)
	rel := harness.NewRelease(t)
	if fx.delta {
		// v2: the factory image with a few changes, 1 MiB of new bytes,
		// and the factory image again (a copy from far away); the rest
		// of v2Size stays random
		n := copy(fx.v2, fx.factory)
		for off := 4096; off < n; off += 64 << 10 {
			fx.v2[off] ^= 0xff
		}
		copy(fx.v2[n+(1<<20):], fx.factory)
		rel.Add(fx.factory, repo.AddOptions{Version: "1.0.0", Counter: 1, Name: "firmware.img"})
	}
	fx.v2Hash = sum(fx.v2)
	tg := rel.Add(fx.v2, repo.AddOptions{Version: "2.0.0", Counter: 2, Name: "firmware.img"})
	fx.v2Path = tg.Path
	if fx.delta {
		ds, err := rel.WS.AddDeltas(context.Background(), tg.Path, 1, nil)
		if err != nil || len(ds) != 1 {
			t.Fatalf("delta from the factory image to v2: %v, %v", ds, err)
		}
		t.Logf("v2 by delta from the factory image: %d bytes for %d", ds[0].Length, len(fx.v2))
	}
	rel.Publish()
	fx.root = rel.Root()
	h := rel.Handler()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fx.port = ln.Addr().(*net.TCPAddr).Port
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, "/targets/") {
			h.ServeHTTP(w, r)
			return
		}
		fx.mark("get")
		h.ServeHTTP(&slowWriter{ResponseWriter: w, start: time.Now(), rate: fx.rate()}, r)
		fx.mark("sent")
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return fx
}

func (fx *fixture) mark(ev string) {
	fx.mu.Lock()
	fx.events[ev] = time.Now()
	fx.mu.Unlock()
}

func (fx *fixture) resetEvents() {
	fx.mu.Lock()
	fx.events = map[string]time.Time{}
	fx.mu.Unlock()
}

func (fx *fixture) event(ev string) (time.Time, bool) {
	fx.mu.Lock()
	defer fx.mu.Unlock()
	at, ok := fx.events[ev]
	return at, ok
}

// slowWriter sends at about rate bytes per second, flushing each piece.
type slowWriter struct {
	http.ResponseWriter
	rate  float64 // bytes per second
	start time.Time
	n     int64
}

func (s *slowWriter) Write(p []byte) (int, error) {
	done := 0
	for len(p) > 0 {
		k := min(len(p), 32<<10)
		n, err := s.ResponseWriter.Write(p[:k])
		done += n
		s.n += int64(n)
		if err != nil {
			return done, err
		}
		if f, ok := s.ResponseWriter.(http.Flusher); ok {
			f.Flush()
		}
		time.Sleep(time.Until(s.start.Add(time.Duration(float64(s.n) / s.rate * float64(time.Second)))))
		p = p[k:]
	}
	return done, nil
}

// config is the agent's configuration inside the machine.
func (fx *fixture) config() []byte {
	cfg := map[string]any{
		"repository":    fmt.Sprintf("http://10.0.2.2:%d", fx.port),
		"hardware":      harness.Hardware,
		"state_dir":     "/data/state",
		"slots":         map[string]string{"A": "/dev/vda2", "B": "/dev/vda3"},
		"bootloader":    fx.pf.bootloader,
		"booted_slot":   map[string]string{"cmdline": "/proc/cmdline"},
		"stall_timeout": "20s", "download_attempts": 2, "retry_backoff": "100ms",
	}
	b, _ := json.MarshalIndent(cfg, "", "  ")
	return b
}

// Guest steps, run by init from /ctl/run.sh. Each prints FWVM step NAME
// before and FWVM rc NAME CODE after.
const (
	stepsProvision = `C=/ctl/config.json
echo "FWVM step provision"; fwagent -c $C provision --root /ctl/root.json; echo "FWVM rc provision $?"
echo "FWVM step confirm"; fwagent -c $C confirm; echo "FWVM rc confirm $?"
`
	stepsUpdate = `C=/ctl/config.json
echo "FWVM step confirm"; fwagent -c $C confirm; echo "FWVM rc confirm $?"
echo "FWVM step update"; fwagent -c $C update --verbose 2>&1; echo "FWVM rc update $?"
`
	// stepsPausedUpdate waits between confirm and update: the host saves
	// the machine there once, and every update kill starts from a copy
	stepsPausedUpdate = `C=/ctl/config.json
echo "FWVM step confirm"; fwagent -c $C confirm; echo "FWVM rc confirm $?"
echo "FWVM wait update"; read -r _ t; [ -n "$t" ] && date -u -s "@$t" >/dev/null
echo "FWVM step update"; fwagent -c $C update --verbose 2>&1; echo "FWVM rc update $?"
`
)

// control is the control disk for steps.
func (fx *fixture) control(steps string) control {
	images := fmt.Sprintf("factory %d\nv2 %d\n", len(fx.factory), len(fx.v2))
	c := control{files: map[string][]byte{
		"run.sh": []byte(steps), "images": []byte(images),
		"config.json": fx.config(), "root.json": fx.root,
	}}
	maps.Copy(c.files, fx.pf.files)
	return c
}

func (fx *fixture) rate() float64 {
	if fx.delta {
		return deltaRate
	}
	return rate
}

// mode is ", by delta" under -delta, for summaries.
func (fx *fixture) mode() string {
	if fx.delta {
		return ", updates by delta"
	}
	return ""
}

// checkDelta fails a calibration update that was not by delta under -delta:
// the kills and crash states would then not reach the delta's apply.
func (fx *fixture) checkDelta(b *boot) error {
	if !fx.delta {
		return nil
	}
	for _, l := range b.lines {
		if strings.Contains(l, "installing by delta") {
			return nil
		}
	}
	return fmt.Errorf("-delta: the update did not install by delta (no \"installing by delta\" line):\n%s", b.transcript())
}

// verdict judges one boot: the slot the real bootloader chose must hold a
// complete image (the factory image or v2, by SHA-256 computed in the
// guest), and the machine must have run its steps. It returns the image's
// name.
func (fx *fixture) verdict(b *boot) (string, error) {
	if b.slot == "" {
		return "", fmt.Errorf("the machine did not boot a slot (no FWVM boot line):\n%s", b.transcript())
	}
	if len(b.errs) > 0 {
		return "", fmt.Errorf("boot of slot %s: %s:\n%s", b.slot, strings.Join(b.errs, "; "), b.transcript())
	}
	switch {
	case b.hashes["v2"] == fx.v2Hash:
		return "v2", nil
	case b.hashes["factory"] == sum(fx.factory):
		return "factory", nil
	}
	return "", fmt.Errorf("GRUB booted slot %s, which holds no complete image (hashes %v):\n%s", b.slot, b.hashes, b.transcript())
}
