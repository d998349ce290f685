package server

import (
	"crypto/rand"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
)

// TestLargeMetadataMemoryBounded: every request for metadata used to read
// the whole file (200 parallel requests for a 15.7 MB targets.json took
// fwrepo to 4.5 GB). Now one copy per file version is shared: n parallel
// requests for a 16 MiB targets.json allocate about one copy in all, not
// n. The bound (a count of bytes, not a time) is generous: a quarter of
// what reading per request allocates.
func TestLargeMetadataMemoryBounded(t *testing.T) {
	const (
		size = 16 << 20
		n    = 48
	)
	dir := t.TempDir()
	md := filepath.Join(dir, "metadata")
	os.MkdirAll(md, 0o755)
	big := make([]byte, size)
	rand.Read(big)
	for name, b := range map[string][]byte{"timestamp.json": []byte(`{}`), "7.targets.json": big} {
		if err := os.WriteFile(filepath.Join(md, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s, err := New(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s)
	defer ts.Close()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: n}}
	defer client.CloseIdleConnections()

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Go(func() {
			res, err := client.Get(ts.URL + "/metadata/7.targets.json")
			if err != nil {
				errs <- err
				return
			}
			defer res.Body.Close()
			if got, err := io.Copy(io.Discard, res.Body); err != nil || got != size {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("download: %v", err)
	}
	runtime.ReadMemStats(&after)
	allocated := after.TotalAlloc - before.TotalAlloc
	if limit := uint64(n * size / 4); allocated > limit {
		t.Fatalf("%d parallel requests for a %d MiB file allocated %d MiB, want at most %d MiB (one shared copy)",
			n, size>>20, allocated>>20, limit>>20)
	}
	t.Logf("%d requests for %d MiB allocated %d MiB", n, size>>20, allocated>>20)
}
