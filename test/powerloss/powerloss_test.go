package powerloss

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

var (
	flagRuns     = flag.Int("runs", 0, "number of random kill points (default 200; -torture or $FW_TORTURE: 1000)")
	flagTorture  = flag.Bool("torture", false, "try 1,000 kill points (or $FW_TORTURE=N for N)")
	flagSeed     = flag.Uint64("seed", 0, "random seed; 0 picks one from the clock ($FW_POWERLOSS_SEED)")
	flagOnly     = flag.Int("only", -1, "run only this run index (with -seed, to reproduce a failure)")
	flagParallel = flag.Int("parallel-runs", 4, "runs in flight at once (most of a run waits on the throttled download)")
	flagKeep     = flag.Bool("keep", false, "keep every run's device directory, not only the failing ones")
)

// fwagentBin is the real fwagent, built once by TestMain.
var fwagentBin string

func TestMain(m *testing.M) {
	flag.Parse()
	dir, err := os.MkdirTemp("", "powerloss-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fwagentBin = filepath.Join(dir, "fwagent")
	// go test puts GOROOT/bin first on PATH, so this is the go that runs us.
	build := exec.Command("go", "build", "-o", fwagentBin, "github.com/fwctl/fwctl/cmd/fwagent")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "powerloss: go build ./cmd/fwagent: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// runCount is how many kill points to try: -runs, then -torture or
// $FW_TORTURE, then 200 (20 with -short).
func runCount(t *testing.T) int {
	if *flagRuns > 0 {
		return *flagRuns
	}
	if v := os.Getenv("FW_TORTURE"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			t.Fatalf("FW_TORTURE=%q: want a number of runs, e.g. FW_TORTURE=1000", v)
		}
		if n == 1 { // FW_TORTURE=1 reads as "yes"
			n = 1000
		}
		if n > 0 {
			return n
		}
	}
	if *flagTorture {
		return 1000
	}
	if testing.Short() {
		return 20
	}
	return 200
}

func seed(t *testing.T) uint64 {
	if *flagSeed != 0 {
		return *flagSeed
	}
	if v := os.Getenv("FW_POWERLOSS_SEED"); v != "" {
		s, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("FW_POWERLOSS_SEED=%q: want an unsigned integer", v)
		}
		return s
	}
	return uint64(time.Now().UnixNano())
}

// TestPowerLoss kills fwagent update at random points and checks that every
// boot afterwards runs a complete released (or factory) image and that the
// next update gets the device to the newest release.
func TestPowerLoss(t *testing.T) {
	n, s := runCount(t), seed(t)
	fx := newFixture(t)
	base, err := os.MkdirTemp("", "powerloss-runs-")
	if err != nil {
		t.Fatal(err)
	}
	// Calibrate: how long one whole update takes on this machine, now.
	fx.updateTime = fx.calibrate(t, base, false)
	fx.delta = newDeltaFixture(t)
	fx.delta.updateTime = fx.delta.calibrate(t, base, true)
	t.Logf("seed %d, %d runs, a throttled update takes %v (by delta %v)", s, n,
		fx.updateTime.Round(time.Millisecond), fx.delta.updateTime.Round(time.Millisecond))

	idx := make([]int, 0, n)
	for i := range n {
		if *flagOnly < 0 || *flagOnly == i {
			idx = append(idx, i)
		}
	}
	results := make([]*result, len(idx))
	var wg sync.WaitGroup
	sem := make(chan struct{}, max(1, *flagParallel))
	for k, i := range idx {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			rng := rand.New(rand.NewPCG(s, uint64(i)))
			results[k] = fx.run(base, i, rng)
		}()
	}
	wg.Wait()

	var unbootable, corrupted, stuck, failed, confirmKills int
	phases := map[string]int{}
	for _, r := range results {
		phases[r.phase]++
		if r.corrupted {
			corrupted++
		}
		if r.unbootable {
			unbootable++
		}
		if r.stuck {
			stuck++
		}
		if r.confirmKilled {
			confirmKills++
		}
		if r.failed() {
			failed++
			t.Errorf("run %d failed (seed %d): %s\n  kill point: %s\n  device kept in %s\n  reproduce: go test ./test/powerloss/ -run TestPowerLoss -seed %d -only %d -v",
				r.index, s, strings.Join(r.problems, "\n  "), r.describe(), r.dir, s, r.index)
		}
	}
	if failed == 0 && !*flagKeep {
		os.RemoveAll(base)
	}
	summary := fmt.Sprintf("%d runs, %d unbootable, %d corrupted", len(results), unbootable, corrupted)
	detail := fmt.Sprintf("kills by phase: %s; %d more kills during confirm; %d delta downloads; %d could not update again (seed %d)",
		formatPhases(phases), confirmKills, fx.delta.deltaGets.Load(), stuck, s)
	t.Log(summary)
	t.Log(detail)
	fmt.Println(summary)
	fmt.Println(detail)
}

// phaseOrder lists the phases of an update in the order they happen.
var phaseOrder = []string{phaseMetadata, phaseDisable, phaseDownload, phaseVerify, phasePending, phaseSwitched, phaseCompleted}

func formatPhases(m map[string]int) string {
	var parts []string
	for _, p := range phaseOrder {
		parts = append(parts, fmt.Sprintf("%s=%d", p, m[p]))
		delete(m, p)
	}
	var rest []string
	for p, n := range m {
		rest = append(rest, fmt.Sprintf("%s=%d", p, n))
	}
	sort.Strings(rest)
	return strings.Join(append(parts, rest...), " ")
}
