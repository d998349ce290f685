package fwctlcli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/fwctl/fwctl/repo"
)

// addResult is what 'fwctl target add' reports.
type addResult struct {
	Target *repo.Target  `json:"target"`
	Deltas []repo.Target `json:"deltas,omitempty"`
	// SkippedDeltas are deltas encoded and not staged (not worth it).
	SkippedDeltas []repo.SkippedDelta `json:"skipped_deltas,omitempty"`
}

func (a *app) addDeltas(ws *repo.Workspace, t *repo.Target, n int) (*repo.DeltaResult, error) {
	var last func()
	progress := func(base string, done, total int64) {}
	if a.out.Interactive() {
		cur := ""
		var fn func(done, total int64)
		progress = func(base string, done, total int64) {
			if base != cur {
				if last != nil {
					last()
				}
				cur = base
				fn, last = a.out.Progress("delta from " + base)
			}
			fn(done, total)
		}
	}
	ds, err := ws.StageDeltas(context.Background(), t.Path, repo.DeltaOptions{From: n, Progress: progress})
	if last != nil {
		last()
	}
	return ds, err
}

func (a *app) deltaCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "delta BASE TARGET OUT",
		Short: "Encode a delta that rebuilds TARGET from BASE (fwctl's own format, delta/FORMAT.md)",
		Args:  cobra.ExactArgs(3),
		RunE: func(_ *cobra.Command, args []string) error {
			ti, err := os.Stat(args[1])
			if err != nil {
				return usage(err)
			}
			progress, done := a.out.Progress("encode")
			start := time.Now()
			n, _, err := repo.WriteDelta(context.Background(), args[0], args[1], args[2], progress)
			done()
			if errors.Is(err, os.ErrNotExist) {
				return usage(err)
			}
			if err != nil {
				return err
			}
			res := map[string]any{"out": args[2], "bytes": n, "target_bytes": ti.Size(), "seconds": time.Since(start).Seconds()}
			return a.out.Result(res, func(w io.Writer) {
				fmt.Fprintf(w, "Wrote %s: %d bytes (%.2f%% of %d) in %s\n", args[2], n, 100*float64(n)/float64(max(ti.Size(), 1)), ti.Size(), time.Since(start).Round(time.Millisecond))
			})
		},
	}
}
