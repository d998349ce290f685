// Command fwdelta is a hidden developer tool for the delta package: it
// encodes and applies deltas between files so benchmarks can drive the
// engine. The product command is `fwctl delta`.
//
//	fwdelta encode BASE TARGET OUT
//	fwdelta apply BASE DELTA OUT
//	fwdelta header DELTA
package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"runtime/pprof"

	"github.com/fwctl/fwctl/delta"
	"github.com/fwctl/fwctl/delta/zstdref"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if os.Getenv("GOGC") == "" {
		// The encoder's heap is mostly the base's index (and a converted
		// copy of a base up to 128 MiB), which live all along; the default
		// GOGC=100 would let per-block garbage grow to as much again.
		// (delta.Encode also sets a soft memory limit while it runs.)
		debug.SetGCPercent(25)
	}
	if p := os.Getenv("FWDELTA_CPUPROFILE"); p != "" {
		f, err := os.Create(p)
		if err == nil && pprof.StartCPUProfile(f) == nil {
			defer pprof.StopCPUProfile()
		}
	}
	if err := run(ctx, os.Args[1:]); err != nil {
		pprof.StopCPUProfile()
		fmt.Fprintln(os.Stderr, "fwdelta:", err)
		os.Exit(1)
	}
}

const usage = "usage: fwdelta encode BASE TARGET OUT | apply BASE DELTA OUT | header DELTA"

func run(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("%s", usage)
	}
	switch {
	case args[0] == "encode" && len(args) == 4:
		return encode(ctx, args[1], args[2], args[3])
	case args[0] == "apply" && len(args) == 4:
		return apply(ctx, args[1], args[2], args[3])
	case args[0] == "header" && len(args) == 2:
		f, err := os.Open(args[1])
		if err != nil {
			return err
		}
		defer f.Close()
		h, err := delta.ReadHeader(f)
		if err != nil {
			return err
		}
		fmt.Println(h)
		return nil
	}
	return fmt.Errorf("%s", usage)
}

func openSized(name string) (*os.File, int64, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, 0, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	return f, st.Size(), nil
}

// writeFile creates name and runs fill on a buffered writer into it; the
// file is removed if fill fails.
func writeFile(name string, fill func(io.Writer) error) error {
	f, err := os.Create(name)
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(f, 1<<20)
	err = fill(bw)
	if err == nil {
		err = bw.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(name)
	}
	return err
}

func encode(ctx context.Context, baseName, targetName, outName string) error {
	base, baseLen, err := openSized(baseName)
	if err != nil {
		return err
	}
	defer base.Close()
	target, targetLen, err := openSized(targetName)
	if err != nil {
		return err
	}
	defer target.Close()
	return writeFile(outName, func(w io.Writer) error {
		return delta.Encode(ctx, base, baseLen, target, targetLen, w, &delta.EncodeOptions{Compressor: zstdref.Compressor()})
	})
}

func apply(ctx context.Context, baseName, deltaName, outName string) error {
	base, baseLen, err := openSized(baseName)
	if err != nil {
		return err
	}
	defer base.Close()
	d, err := os.Open(deltaName)
	if err != nil {
		return err
	}
	defer d.Close()
	return writeFile(outName, func(w io.Writer) error {
		_, err := delta.Apply(ctx, base, baseLen, d, w)
		return err
	})
}
