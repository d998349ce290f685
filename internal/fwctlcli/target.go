package fwctlcli

import (
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"unicode"

	"github.com/spf13/cobra"

	"github.com/fwctl/fwctl/manifests"
	"github.com/fwctl/fwctl/repo"
	"github.com/fwctl/fwctl/repo/layout"
)

func (a *app) targetCmd() *cobra.Command {
	c := &cobra.Command{Use: "target", Short: "Add and list firmware targets"}
	var img imageFlags
	var deltaFrom int
	add := &cobra.Command{
		Use:   "add IMAGE",
		Short: "Hash a firmware image and stage it as a target for the next publish",
		Args:  cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			opt, err := img.options()
			if err != nil {
				return err
			}
			ws, err := a.open()
			if err != nil {
				return err
			}
			var done func()
			opt.Progress, done = a.out.Progress("hash " + filepath.Base(args[0]))
			t, err := ws.AddTarget(args[0], opt)
			done()
			if errors.Is(err, repo.ErrCounterRegression) || errors.Is(err, repo.ErrCounterJump) ||
				errors.Is(err, manifests.ErrInvalidTarget) || errors.Is(err, layout.ErrInvalidName) || isSBOMError(err) {
				return usage(err)
			}
			if err != nil {
				return err
			}
			res := addResult{Target: t}
			if deltaFrom > 0 {
				ds, err := a.addDeltas(ws, t, deltaFrom)
				if err != nil {
					return err
				}
				res.Deltas, res.SkippedDeltas = ds.Added, ds.Skipped
			}
			return a.out.Result(res, func(w io.Writer) {
				fmt.Fprintf(w, "Staged %s\n  version %s, counter %d, hardware %s\n  %d bytes, sha256 %s\n",
					t.Path, t.Firmware.Version, t.Firmware.Counter, strings.Join(t.Firmware.Hardware, ","), t.Length, t.SHA256)
				for _, d := range res.Deltas {
					fmt.Fprintf(w, "Staged delta %s\n  from %s: %d bytes (%.1f%% of the full image)\n", d.Path, d.Firmware.Base.SHA256[:16], d.Length, 100*float64(d.Length)/float64(max(t.Length, 1)))
				}
				for _, d := range res.SkippedDeltas {
					fmt.Fprintf(w, "Not staged: delta from %s (%s): %s\n", d.Version, d.Base, d.Reason)
				}
				fmt.Fprintln(w, "Run 'fwctl publish' to release it.")
			})
		},
	}
	img.register(add)
	add.Flags().IntVar(&deltaFrom, "delta-from", 0, "also stage deltas from the last N releases of this hardware")
	registerSBOMFlags(add, &img.opt)
	list := &cobra.Command{
		Use:   "list",
		Short: "List staged and published targets",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			ws, err := a.open()
			if err != nil {
				return err
			}
			ts, err := ws.Targets()
			if err != nil {
				return err
			}
			return a.out.Result(ts, func(w io.Writer) { printTargets(w, ts) })
		},
	}
	c.AddCommand(add, list, a.targetRemoveCmd())
	return c
}

// imageFlags are the flags that describe a firmware image, shared by
// 'target add' and 'delegate target'.
type imageFlags struct {
	opt     repo.AddOptions
	counter counterFlag
}

func (f *imageFlags) register(c *cobra.Command) {
	c.Flags().StringSliceVar(&f.opt.Hardware, "hardware", nil, "hardware ID(s) this image is for (repeatable)")
	c.Flags().StringVar(&f.opt.Version, "version", "", "human version, e.g. 2.4.1")
	c.Flags().Var(&f.counter, "counter", "security counter, decimal: devices refuse images with a lower one")
	c.Flags().StringVar(&f.opt.Name, "name", "", "file name in the target path (default: the image's)")
	c.Flags().BoolVar(&f.opt.Force, "force", false, "allow a counter lower than an existing release for the hardware, or more than 1000 above it")
}

// options checks the required flags and returns the image's AddOptions.
func (f *imageFlags) options() (repo.AddOptions, error) {
	if len(f.opt.Hardware) == 0 || f.opt.Version == "" || !f.counter.set {
		return f.opt, usage(errors.New("--hardware, --version and --counter (>= 0) are required"))
	}
	f.opt.Counter = f.counter.v
	return f.opt, nil
}

// counterFlag is a security counter given on the command line: decimal
// digits only, so that 010 is not read as octal 8 nor 0x10 as 16.
type counterFlag struct {
	v   uint64
	set bool
}

func (c *counterFlag) String() string {
	if !c.set {
		return ""
	}
	return strconv.FormatUint(c.v, 10)
}

func (c *counterFlag) Type() string { return "N" }

func (c *counterFlag) Set(s string) error {
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil || (len(s) > 1 && s[0] == '0') {
		return fmt.Errorf("%q: want a decimal number without leading zeros or a 0x prefix, e.g. 10", s)
	}
	c.v, c.set = v, true
	return nil
}

// printablePath shows a target path as it is, or quoted when it holds
// anything that would not print as itself (a repository made elsewhere
// may hold such names).
func printablePath(p string) string {
	for _, r := range p {
		if !unicode.IsPrint(r) || r == ' ' {
			return strconv.Quote(p)
		}
	}
	return p
}

func printTargets(w io.Writer, ts []repo.Target) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "HARDWARE\tVERSION\tCOUNTER\tSIZE\tTARGET")
	for _, t := range ts {
		if t.Firmware == nil {
			fmt.Fprintf(tw, "-\t-\t-\t%d\t%s\n", t.Length, printablePath(t.Path))
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\n", strings.Join(t.Firmware.Hardware, ","), t.Firmware.Version, t.Firmware.Counter, t.Length, printablePath(t.Path))
	}
	tw.Flush()
}
