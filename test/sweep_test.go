package test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fwctl/fwctl/agent"
	"github.com/fwctl/fwctl/manifests"
)

// TestSweepStaleTempFiles leaves what a kill or power cut leaves (atomic
// writes' temp files, go-tuf's tuf_tmp files, an install interrupted at a
// checkpoint), then runs an update as a fresh process would: the stale temp
// files are gone, a fresh one (another process may be writing it) and files
// that are not ours stay, and the install resumes from its checkpoint.
func TestSweepStaleTempFiles(t *testing.T) {
	r, d := installed(t)
	v2 := mustRead(t, targetFile(t, r, "2.0.0"))
	state := d.cfg.StateDir

	// An install of v2 into slot A cut off after 20000 durable bytes.
	const written = 20_000
	if err := os.WriteFile(d.cfg.Slots["A"], v2[:written], 0o644); err != nil {
		t.Fatal(err)
	}
	sp := filepath.Join(state, "state.json")
	var st agent.State
	if err := json.Unmarshal(mustRead(t, sp), &st); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(v2)
	st.Slots["A"] = &agent.SlotState{Status: manifests.SlotWriting, Image: manifests.Image{Target: hw + "/2.0.0/firmware.img", Version: "2.0.0",
		Counter: 2, SHA256: hex.EncodeToString(sum[:]), Length: int64(len(v2))}, Written: written}
	b, _ := json.Marshal(&st)
	if err := os.WriteFile(sp, b, 0o600); err != nil {
		t.Fatal(err)
	}

	old := time.Now().Add(-time.Hour)
	stale := []string{".state.json.tmp-1234", "metadata/tuf_tmp98765", "metadata/.root.json.tmp-55", "roots/.2.root.json.tmp-7", "trust/.counter.tmp-42"}
	kept := []string{"notes.txt", "metadata/notes.tmp-1", ".state.json.tmp-fresh"}
	for i, name := range append(stale, kept...) {
		p := filepath.Join(state, name)
		if err := os.WriteFile(p, []byte("left over"), 0o600); err != nil {
			t.Fatal(err)
		}
		if i < len(stale) || name == "notes.txt" || name == "metadata/notes.tmp-1" {
			os.Chtimes(p, old, old)
		}
	}

	var mu sync.Mutex
	var ranges []string
	r.wrap = func(w http.ResponseWriter, req *http.Request, next http.Handler) {
		if strings.HasPrefix(req.URL.Path, "/targets/") {
			mu.Lock()
			ranges = append(ranges, req.Header.Get("Range"))
			mu.Unlock()
		}
		next.ServeHTTP(w, req)
	}
	d.reload() // a new fwagent process
	res, err := d.update()
	if err != nil {
		t.Fatal(err)
	}
	if !res.Installed {
		t.Fatalf("nothing installed: %s", res.Message)
	}
	for _, name := range stale {
		if _, err := os.Stat(filepath.Join(state, name)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("stale temp file %s survived the update (stat: %v)", name, err)
		}
	}
	for _, name := range kept {
		if _, err := os.Stat(filepath.Join(state, name)); err != nil {
			t.Errorf("%s was removed; only stale temp files of ours may be: %v", name, err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(ranges) != 1 || !strings.HasPrefix(ranges[0], "bytes=20000-") {
		t.Fatalf("target requests' Range headers %q, want one resuming at the checkpoint (bytes=20000-)", ranges)
	}
	d.boot()
	d.assertRunning(v2)

	// 'fwagent confirm' at boot sweeps too.
	p := filepath.Join(state, "metadata", "tuf_tmp1")
	os.WriteFile(p, []byte("left over"), 0o600)
	os.Chtimes(p, old, old)
	d.reload()
	if _, err := d.ag.Confirm(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("confirm left the stale %s (stat: %v)", p, err)
	}
}
