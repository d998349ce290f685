// Package cli holds what the three commands share: exit codes, JSON and
// human output, error reporting and terminal progress. It contains no
// update logic.
package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"golang.org/x/term"
)

// Exit codes of all three programs, documented in the README's table (a
// test holds the two together).
const (
	ExitOK        = 0  // success, or nothing to do
	ExitFailure   = 1  // any other failure
	ExitUsage     = 2  // bad command line or configuration (also an unknown subcommand or --target)
	ExitRefused   = 3  // a security check refused (signature, hash, rollback, hardware, root)
	ExitNetwork   = 4  // repository unreachable or download broke off; the device is unchanged, retry later
	ExitState     = 5  // device state forbids it now (confirm or reboot pending, not provisioned, the release failed here before)
	ExitUnhealthy = 6  // fwagent confirm: a health check failed, the slot was marked bad
	ExitNoSpace   = 7  // fwagent update: the image does not fit the inactive slot (too small, or ENOSPC)
	ExitInstalled = 10 // fwagent update: installed, reboot needed
)

// ExitCodes lists every exit code with its constant's name, in order (for
// the README test and help output).
var ExitCodes = []struct {
	Code int
	Name string
}{
	{ExitOK, "ExitOK"}, {ExitFailure, "ExitFailure"}, {ExitUsage, "ExitUsage"}, {ExitRefused, "ExitRefused"},
	{ExitNetwork, "ExitNetwork"}, {ExitState, "ExitState"}, {ExitUnhealthy, "ExitUnhealthy"},
	{ExitNoSpace, "ExitNoSpace"}, {ExitInstalled, "ExitInstalled"},
}

// ExitError carries an exit code with an error.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string { return e.Err.Error() }
func (e *ExitError) Unwrap() error { return e.Err }

// WithCode attaches an exit code to err.
func WithCode(code int, err error) error {
	if err == nil {
		return nil
	}
	return &ExitError{Code: code, Err: err}
}

// Code returns the exit code for err.
func Code(err error) int {
	if err == nil {
		return ExitOK
	}
	var e *ExitError
	if errors.As(err, &e) {
		return e.Code
	}
	return ExitFailure
}

// Output prints results as text or, with JSON set, as one JSON document.
type Output struct {
	JSON bool
	Out  io.Writer
	Err  io.Writer
}

// Std returns an Output on stdout/stderr.
func Std(jsonOut bool) *Output { return &Output{JSON: jsonOut, Out: os.Stdout, Err: os.Stderr} }

// Result prints v as JSON, or calls human to print text.
func (o *Output) Result(v any, human func(w io.Writer)) error {
	if o.JSON {
		enc := json.NewEncoder(o.Out)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	human(o.Out)
	return nil
}

// Fail reports err on stderr (and as {"error": ...} on stdout under JSON)
// and returns the exit code.
func (o *Output) Fail(err error) int {
	code := Code(err)
	if o.JSON {
		json.NewEncoder(o.Out).Encode(map[string]any{"error": err.Error(), "exit_code": code})
	}
	fmt.Fprintf(o.Err, "error: %v\n", err)
	return code
}

// Interactive reports whether progress should be drawn: stderr is a
// terminal, output is not JSON and we are not in CI.
func (o *Output) Interactive() bool {
	if o.JSON || os.Getenv("CI") != "" {
		return false
	}
	f, ok := o.Err.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// Progress returns a progress callback drawing a bar on stderr, or nil when
// output is not interactive. Call the returned done func at the end.
func (o *Output) Progress(label string) (func(done, total int64), func()) {
	if !o.Interactive() {
		return nil, func() {}
	}
	var mu sync.Mutex
	var last time.Time
	start := time.Now()
	draw := func(done, total int64, force bool) {
		mu.Lock()
		defer mu.Unlock()
		if !force && time.Since(last) < 100*time.Millisecond {
			return
		}
		last = time.Now()
		pct := 0.0
		if total > 0 {
			pct = float64(done) / float64(total)
		}
		const width = 30
		n := int(pct * width)
		bar := make([]byte, width)
		for i := range bar {
			bar[i] = ' '
			if i < n {
				bar[i] = '='
			}
		}
		rate := float64(done) / max(time.Since(start).Seconds(), 0.001) / (1 << 20)
		fmt.Fprintf(o.Err, "\r%s [%s] %5.1f%% %s/%s %.1f MiB/s ", label, bar, pct*100, size(done), size(total), rate)
	}
	var lastDone, lastTotal int64
	return func(done, total int64) {
			lastDone, lastTotal = done, total
			draw(done, total, false)
		}, func() {
			if lastTotal > 0 {
				draw(lastDone, lastTotal, true)
			}
			fmt.Fprintln(o.Err)
		}
}

func size(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1fG", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1fM", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1fK", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%dB", n)
}
