package repo

import (
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestStageDeltasSkipsUnprofitableAndDedupes: a delta from an unrelated
// image is larger than the image and is not staged (it is reported, and
// its file is gone); seven releases with the same bytes give one delta.
func TestStageDeltasSkipsUnprofitableAndDedupes(t *testing.T) {
	w := testWorkspace(t)
	rng := rand.New(rand.NewPCG(1, 2))
	random := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	add := func(version string, counter uint64, img []byte) string {
		t.Helper()
		p := filepath.Join(t.TempDir(), "firmware.img")
		os.WriteFile(p, img, 0o644)
		tg, err := w.AddTarget(p, AddOptions{Hardware: []string{"hw1"}, Version: version, Counter: counter})
		if err != nil {
			t.Fatal(err)
		}
		return tg.Path
	}
	base := random(200_000)
	for i := range 7 {
		add("1.0."+string(rune('0'+i)), uint64(1+i), base)
	}
	patched := append([]byte(nil), base...)
	copy(patched[1000:], "patched")
	v2 := add("2.0.0", 10, patched)
	res, err := w.StageDeltas(context.Background(), v2, DeltaOptions{From: 7})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Added) != 1 || len(res.Skipped) != 0 {
		t.Fatalf("from seven releases of one image: %d deltas staged, %d skipped; want one", len(res.Added), len(res.Skipped))
	}
	if !strings.Contains(res.Added[0].Path, "from-1.0.6") {
		t.Fatalf("delta %s, want it from the newest release of the base (1.0.6)", res.Added[0].Path)
	}

	v3 := add("3.0.0", 11, random(200_000)) // unrelated to everything before
	res, err = w.StageDeltas(context.Background(), v3, DeltaOptions{From: 3})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Added) != 0 || len(res.Skipped) != 2 {
		t.Fatalf("unrelated image: %d deltas staged, %d skipped; want none staged, two skipped", len(res.Added), len(res.Skipped))
	}
	for _, s := range res.Skipped {
		if !strings.Contains(s.Reason, "more than 90%") {
			t.Errorf("skip reason %q does not say why", s.Reason)
		}
	}
	staged, err := w.stagedTargets()
	if err != nil {
		t.Fatal(err)
	}
	for p := range staged.Signed.Targets {
		if strings.HasPrefix(p, v3+".from-") {
			t.Errorf("skipped delta %s is staged", p)
		}
	}
	matches, _ := filepath.Glob(filepath.Join(w.Dir, "targets", filepath.FromSlash(v3)+".from-*"))
	if len(matches) != 0 {
		t.Errorf("skipped delta files left behind: %v", matches)
	}
}
