package test

import (
	"errors"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/fwctl/fwctl/agent"
)

// pendingV2 returns a device running v1 in slot B with v2 installed in slot
// A and waiting for a reboot, and a counter of target requests from now on.
func pendingV2(t *testing.T) (*release, *device, func() int) {
	r, d := installed(t)
	res, err := d.update()
	if err != nil || !res.Installed || res.Slot != "A" {
		t.Fatalf("install v2: %+v, %v", res, err)
	}
	var mu sync.Mutex
	n := 0
	r.wrap = func(w http.ResponseWriter, req *http.Request, next http.Handler) {
		if strings.HasPrefix(req.URL.Path, "/targets/") {
			mu.Lock()
			n++
			mu.Unlock()
		}
		next.ServeHTTP(w, req)
	}
	return r, d, func() int { mu.Lock(); defer mu.Unlock(); return n }
}

// TestUpdateWhileRebootPending: updating again before the reboot downloads
// and writes nothing, says so, and leaves the installed slot to be tried.
func TestUpdateWhileRebootPending(t *testing.T) {
	r, d, requests := pendingV2(t)
	v2 := mustRead(t, targetFile(t, r, "2.0.0"))
	fi, _ := os.Stat(d.cfg.Slots["A"])
	d.reload()
	res, err := d.update()
	if err != nil {
		t.Fatal(err)
	}
	if res.Installed || !res.RebootPending || !res.RebootNeeded || res.Slot != "A" {
		t.Fatalf("result %+v, want reboot_pending for slot A and nothing installed", res)
	}
	if !strings.Contains(res.Message, "waits for a reboot") {
		t.Fatalf("message %q does not say the update waits for a reboot", res.Message)
	}
	if n := requests(); n != 0 {
		t.Fatalf("%d target downloads while the update waited for a reboot, want none", n)
	}
	if fi2, _ := os.Stat(d.cfg.Slots["A"]); !fi2.ModTime().Equal(fi.ModTime()) {
		t.Fatal("slot A was rewritten")
	}
	if next, _, _ := d.ag.Switch().Primary(); next != "A" {
		t.Fatalf("next boot slot %s, want A", next)
	}
	d.boot()
	d.assertRunning(v2)
	if _, err := d.ag.Confirm(t.Context()); err != nil {
		t.Fatal(err)
	}
}

// TestUpdatePendingSupersededByNewer: a newer release published while v2
// waits for a reboot replaces it in the same slot (the existing behaviour);
// if that write breaks off, the partly written slot is never tried.
func TestUpdatePendingSupersededByNewer(t *testing.T) {
	r, d, requests := pendingV2(t)
	v3 := r.add("3.0.0", 3, 50_000)
	r.publish()

	// The server dies after half of v3: slot A is half written, never tried.
	wrap := r.wrap
	r.wrap = func(w http.ResponseWriter, req *http.Request, next http.Handler) {
		if strings.HasPrefix(req.URL.Path, "/targets/") {
			w.Header().Set("Content-Length", "50000")
			w.Write(v3[:25_000])
			w.(http.Flusher).Flush()
			conn, _, _ := w.(http.Hijacker).Hijack()
			conn.Close()
			return
		}
		wrap(w, req, next)
	}
	if _, err := d.update(); !errors.Is(err, agent.ErrNetwork) {
		t.Fatalf("update with the server dying mid-download: %v, want %v", err, agent.ErrNetwork)
	}
	if next, _, _ := d.ag.Switch().Primary(); next != "B" {
		t.Fatalf("after a broken write of slot A the next boot is slot %s, want B", next)
	}

	// Served again: v3 replaces the pending v2 and is the one tried.
	r.wrap = wrap
	before := requests()
	res, err := d.update()
	if err != nil {
		t.Fatal(err)
	}
	if !res.Installed || res.RebootPending || res.Available.Version != "3.0.0" || res.Slot != "A" {
		t.Fatalf("result %+v, want v3 installed into slot A", res)
	}
	if requests() == before {
		t.Fatal("v3 was not downloaded")
	}
	st, err := d.ag.Status(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if st.Pending == nil || st.Pending.Version != "3.0.0" {
		t.Fatalf("pending %+v, want v3", st.Pending)
	}
	d.boot()
	d.assertRunning(v3)
}
