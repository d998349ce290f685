//go:build cgo

package zstdref

import (
	"bytes"
	"runtime"
	"sync"
	"testing"
)

// TestContextsPerUser: the contexts made are bounded by the compressions
// that ran at once, not by GOMAXPROCS (a sync.Pool made one per P the
// callers ran on: 16 level-19 contexts for two encode workers).
func TestContextsPerUser(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(16))
	r := compressor().(*ref)
	src := bytes.Repeat([]byte("fwctl delta section "), 512)
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 200 {
				if len(r.Compress(nil, src)) == 0 {
					t.Error("Compress returned nothing")
					return
				}
				runtime.Gosched()
			}
		}()
	}
	wg.Wait()
	if r.created > 2 {
		t.Fatalf("%d contexts made for 2 callers", r.created)
	}
}
