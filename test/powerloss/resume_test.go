package powerloss

import (
	"fmt"
	"math/rand/v2"
	"os"
	"sync"
	"testing"
	"time"
)

// TestPowerLossResume kills installs of an image larger than the agent's
// 16 MiB checkpoint interval after a checkpoint was made durable, loses the
// unsynced bytes after it, and checks that the next update resumes from the
// checkpoint (HTTP Range) and still installs a verified image.
func TestPowerLossResume(t *testing.T) {
	runs := 6
	if testing.Short() {
		runs = 2
	} else if runCount(t) >= 1000 {
		runs = 30
	}
	s := seed(t) ^ 0x5e5e // a different stream from TestPowerLoss's
	const size = 40 << 20
	fx := publishFixture(t, 64<<20, false, newImage("factory", factorySize), newImage("3.0.0", size))
	base, err := os.MkdirTemp("", "powerloss-resume-")
	if err != nil {
		t.Fatal(err)
	}
	results := make([]*result, runs)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 2)
	for i := range runs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			rng := rand.New(rand.NewPCG(s, uint64(i)))
			p := plan{layout: layouts[i%len(layouts)], start: "factory", trigger: trigCheckpoint,
				// The rest of a 64 MiB/s download after the first checkpoint.
				delay: time.Duration(rng.Int64N(int64(400 * time.Millisecond))),
				torn:  true, boots: 1 + rng.IntN(4)}
			if i == 0 {
				// Run 0 is killed as soon as the checkpoint is durable, with
				// 24 MiB still to download: it must resume, so the test
				// cannot pass with no resume at all whatever the delays drawn.
				p.delay = 0
			}
			results[i] = fx.runPlan(base, i, p, rng)
		}()
	}
	wg.Wait()
	failed := 0
	phases := map[string]int{}
	var resumed []int64
	for _, r := range results {
		phases[r.phase]++
		if r.phase != phaseDownload && r.phase != phaseVerify || r.checkpoint == 0 {
			continue
		}
		if fx.sawRange(r.checkpoint) {
			resumed = append(resumed, r.checkpoint>>20)
		} else {
			r.problem("the install was killed with a durable checkpoint at %d, but the next update did not resume from it (no Range: bytes=%d- request)", r.checkpoint, r.checkpoint)
		}
	}
	for _, r := range results {
		if r.failed() {
			failed++
			t.Errorf("resume run %d failed (seed %d): %s\n  kill point: %s\n  device kept in %s",
				r.index, s^0x5e5e, fmt.Sprint(r.problems), r.describe(), r.dir)
		}
	}
	if len(resumed) == 0 {
		failed++
		t.Errorf("no run resumed from a checkpoint (kills by phase: %s): the test proved nothing about resuming; run 0 is killed right after the first durable checkpoint and must resume", formatPhases(phases))
	}
	if failed == 0 {
		os.RemoveAll(base)
	}
	t.Logf("%d resume runs, kills by phase: %s; resumed from checkpoints (MiB): %v", runs, formatPhases(phases), resumed)
}
