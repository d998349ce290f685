// Package fwagentcli is the fwagent command line: it loads the device
// configuration, wires the trust store, boot environment and TUF client into
// package agent, and prints results. cmd/fwagent only calls Main.
package fwagentcli

import (
	"context"
	"crypto/sha256"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/fwctl/fwctl/agent"
	"github.com/fwctl/fwctl/agent/boot"
	"github.com/fwctl/fwctl/agent/trust"
	"github.com/fwctl/fwctl/internal/cli"
	"github.com/fwctl/fwctl/tpm"
)

type app struct {
	closers []func() error
	json    bool
	config  string
	verbose bool
	out     *cli.Output
}

// command is one fwagent subcommand. fwagent uses the standard library's
// flag package rather than cobra (as fwctl and fwrepo do) to keep the
// device binary within its size budget.
type command struct {
	name  string
	args  string // synopsis of flags and arguments
	short string
	long  string
	// flags registers the command's own flags.
	flags func(fs *flag.FlagSet)
	// run executes the command with its positional arguments.
	run func(args []string) error
	// usageCode is the exit code for flag errors (default cli.ExitUsage).
	usageCode int
}

func (a *app) commands() []*command {
	cmds := []*command{
		a.provisionCmd(), a.checkCmd(), a.updateCmd(), a.confirmCmd(), a.statusCmd(),
		a.daemonCmd(), a.simulateBootCmd(), conformanceCmd(), a.reportCmd(), a.identityCmd(),
	}
	return append(cmds, a.versionCmd(), a.completionCmd(), a.metricsCmd())
}

const rootLong = `fwagent runs on the device. It verifies release metadata against the root
pinned at provisioning, installs the newest release for this hardware into the
inactive slot, and lets the bootloader try it; 'fwagent confirm' makes it
permanent, otherwise the device falls back to the previous slot.`

// Main runs fwagent with os.Args and returns the exit code.
func Main() int {
	a := &app{out: cli.Std(false)}
	code := a.main(os.Args[1:])
	for _, c := range a.closers {
		c()
	}
	return code
}

func (a *app) globalFlags(fs *flag.FlagSet) {
	fs.BoolVar(&a.json, "json", a.json, "print one JSON document instead of text")
	fs.StringVar(&a.config, "config", a.config, "configuration file ($FWAGENT_CONFIG)")
	fs.StringVar(&a.config, "c", a.config, "shorthand for --config")
	fs.BoolVar(&a.verbose, "verbose", a.verbose, "log progress details to stderr")
	fs.BoolVar(&a.verbose, "v", a.verbose, "shorthand for --verbose")
}

func (a *app) usage(w io.Writer) {
	fmt.Fprintf(w, "%s\n\nUsage: fwagent [--json] [-c CONFIG] COMMAND [flags]\n\nCommands:\n", rootLong)
	for _, c := range a.commands() {
		fmt.Fprintf(w, "  %-16s %s\n", c.name, c.short)
	}
	fmt.Fprintln(w, "\nRun 'fwagent COMMAND -h' for a command's flags. Exit codes: see the README.")
}

func (a *app) main(args []string) int {
	a.config = envOr("FWAGENT_CONFIG", "/etc/fwagent/config.json")
	if a.versionFlag(args) { // fwagent --version
		return cli.ExitOK
	}
	top := flag.NewFlagSet("fwagent", flag.ContinueOnError)
	top.SetOutput(io.Discard)
	a.globalFlags(top)
	if err := top.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			a.usage(os.Stdout)
			return cli.ExitOK
		}
		return a.fail(cli.WithCode(cli.ExitUsage, err))
	}
	args = top.Args()
	if len(args) == 0 || args[0] == "help" {
		a.usage(os.Stdout)
		if len(args) == 0 {
			return cli.ExitUsage
		}
		return cli.ExitOK
	}
	var cmd *command
	for _, c := range a.commands() {
		if c.name == args[0] {
			cmd = c
		}
	}
	if cmd == nil {
		a.usage(os.Stderr)
		return a.fail(cli.WithCode(cli.ExitUsage, fmt.Errorf("unknown command %q", args[0])))
	}
	fs := flag.NewFlagSet("fwagent "+cmd.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	a.globalFlags(fs)
	if cmd.flags != nil {
		cmd.flags(fs)
	}
	usageCode := cmd.usageCode
	if usageCode == 0 {
		usageCode = cli.ExitUsage
	}
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Printf("Usage: fwagent %s %s\n\n%s\n", cmd.name, cmd.args, cmd.short)
			if cmd.long != "" {
				fmt.Printf("\n%s\n", cmd.long)
			}
			if ex := agentExamples[cmd.name]; ex != "" { // docs.go
				fmt.Printf("\nExamples:\n%s\n", indent(ex))
			}
			fmt.Println("\nFlags:")
			printFlags(os.Stdout, fs) // flags.go
			return cli.ExitOK
		}
		return a.fail(cli.WithCode(usageCode, err))
	}
	a.out.JSON = a.json
	err := cmd.run(fs.Args())
	if err != nil && cli.Code(err) == cli.ExitInstalled {
		return cli.ExitInstalled // not a failure: the result was printed
	}
	return a.fail(err)
}

func (a *app) fail(err error) int {
	if err == nil {
		return cli.ExitOK
	}
	a.out.JSON = a.json
	return a.out.Fail(err)
}

// noArgs wraps a run function for commands without positional arguments.
func noArgs(name string, run func() error) func([]string) error {
	return func(args []string) error {
		if len(args) > 0 {
			return cli.WithCode(cli.ExitUsage, fmt.Errorf("%s takes no arguments, got %q (flags go before arguments)", name, args))
		}
		return run()
	}
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func (a *app) logger(level slog.Level) *slog.Logger {
	if a.verbose {
		level = slog.LevelDebug
	}
	opts := &slog.HandlerOptions{Level: level}
	if a.json {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}

// load reads the configuration and opens the trust store. The TPM is
// closed when the command ends (a.closers), since a TPM simulator serves
// one client at a time.
func (a *app) load(level slog.Level) (*agent.Agent, *agent.Config, error) {
	cfg, err := agent.LoadConfig(a.config)
	if err != nil {
		return nil, nil, cli.WithCode(cli.ExitUsage, err)
	}
	store, err := openTrust(cfg)
	if err != nil {
		return nil, nil, err
	}
	if c, ok := store.(interface{ Close() error }); ok {
		a.closers = append(a.closers, c.Close)
	}
	ag, err := agent.New(cfg, store, a.logger(level))
	if err != nil {
		return nil, nil, cli.WithCode(cli.ExitUsage, err)
	}
	return ag, cfg, nil
}

// TPMOwnerPasswordEnv holds the TPM owner password for provisioning.
const TPMOwnerPasswordEnv = "FWAGENT_TPM_OWNER_PASSWORD"

func openTrust(cfg *agent.Config) (trust.Store, error) {
	switch cfg.Trust.Type {
	case "file":
		return trust.File{Dir: filepath.Join(cfg.StateDir, "trust")}, nil
	case "tpm":
		var opts []tpm.Option
		if pw := os.Getenv(TPMOwnerPasswordEnv); pw != "" {
			opts = append(opts, tpm.WithOwnerAuth([]byte(pw)))
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		t, err := tpm.Open(ctx, cfg.Trust.Device, opts...)
		if err != nil {
			return nil, fmt.Errorf("open TPM %s: %w", cfg.Trust.Device, err)
		}
		return t, nil
	}
	return nil, cli.WithCode(cli.ExitUsage, fmt.Errorf("trust.type %q is not available in this build", cfg.Trust.Type))
}

// code maps agent errors to exit codes. The device-state checks come
// first: a missing pin is "not provisioned" (5), however deep it is wrapped.
func code(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, trust.ErrNotProvisioned), errors.Is(err, agent.ErrConfirmPending), errors.Is(err, agent.ErrRebootPending),
		errors.Is(err, boot.ErrAmbiguous), errors.Is(err, agent.ErrFailedBefore), errors.Is(err, agent.ErrBusy):
		return cli.WithCode(cli.ExitState, err)
	case errors.Is(err, agent.ErrUnknownTarget):
		return cli.WithCode(cli.ExitUsage, err)
	case errors.Is(err, agent.ErrNoSpace):
		return cli.WithCode(cli.ExitNoSpace, err)
	case errors.Is(err, agent.ErrRefused), errors.Is(err, agent.ErrRootNotPinned), errors.Is(err, agent.ErrInvalidRoot),
		errors.Is(err, trust.ErrAlreadyPinned):
		return cli.WithCode(cli.ExitRefused, err)
	case errors.Is(err, agent.ErrUnhealthy):
		return cli.WithCode(cli.ExitUnhealthy, err)
	case errors.Is(err, agent.ErrNetwork):
		return cli.WithCode(cli.ExitNetwork, err)
	}
	return err
}

func (a *app) provisionCmd() *command {
	var rootFile string
	return &command{
		name:  "provision",
		args:  "--root root.json",
		short: "Pin the initial trusted root and create the anti-rollback counter (factory step)",
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&rootFile, "root", "", "initial root.json from 'fwctl init' (WORKSPACE/metadata/1.root.json)")
		},
		run: noArgs("provision", func() error {
			if rootFile == "" {
				return cli.WithCode(cli.ExitUsage, errors.New("--root is required"))
			}
			ag, _, err := a.load(slog.LevelWarn)
			if err != nil {
				return err
			}
			b, err := os.ReadFile(rootFile)
			if err != nil {
				return cli.WithCode(cli.ExitUsage, err)
			}
			var dev *tpm.Report
			if t, ok := ag.Trust().(*tpm.TPM); ok {
				// Pin the root, create the counter and the device identity key.
				r, err := t.ProvisionDevice(context.Background(), sha256.Sum256(b))
				if err != nil {
					return code(err)
				}
				dev = &r
			}
			p, err := ag.Provision(context.Background(), b)
			if err != nil {
				return code(err)
			}
			if dev != nil {
				p.Provisioned = dev.Provisioned
				p.DeviceKeyID = dev.KeyID
				if k, err := ag.Trust().(*tpm.TPM).DeviceKey(context.Background()); err == nil {
					p.DeviceKeyPEM = string(k.PublicKeyPEM())
				}
			}
			return a.out.Result(p, func(w io.Writer) {
				switch {
				case p.RootPinned:
					fmt.Fprintf(w, "Pinned root v%d (sha256 %s) in the %s trust store\n", p.RootVersion, p.RootSHA256[:16], p.TrustStore)
				case p.RootWasPinned:
					fmt.Fprintf(w, "Root v%d (sha256 %s) was already pinned; nothing changed\n", p.RootVersion, p.RootSHA256[:16])
				}
				if p.CounterCreated {
					fmt.Fprintln(w, "Created the anti-rollback counter (0)")
				}
				fmt.Fprintf(w, "Running slot: %s\n", p.BootedSlot)
				if p.DeviceKeyID != "" {
					fmt.Fprintf(w, "Device identity key (TPM, non-exportable): %s\n%s", p.DeviceKeyID, p.DeviceKeyPEM)
				}
			})
		}),
	}
}

func (a *app) checkCmd() *command {
	return &command{
		name:  "check",
		short: "Refresh metadata and report whether an update is available (installs nothing)",
		run: noArgs("check", func() error {
			ag, _, err := a.load(slog.LevelWarn)
			if err != nil {
				return err
			}
			res, err := ag.Check(context.Background())
			if err != nil {
				return code(err)
			}
			return a.out.Result(res, func(w io.Writer) { fmt.Fprintln(w, res.Message) })
		}),
	}
}

func (a *app) updateCmd() *command {
	var target, from string
	var retry bool
	return &command{
		name:  "update",
		args:  "[--target PATH] [--retry] [--from BUNDLE]",
		short: "Install the newest release into the inactive slot (exit 10: installed or already waiting for a reboot, 0: nothing to do)",
		long: `A release that failed on this device (its slot fell back, was unhealthy, or
did not read back as written) is not installed again: update exits 5 and
says why, and 'fwagent status' keeps showing the failure. --retry installs
it again; a newer release is installed without it.

--from installs from an offline bundle (fwctl bundle): a bundle file, a
bundle directory, or a mount point holding one, with the same verification
as online; expired metadata is refused unless the device's
offline.max_metadata_age allows it (docs/offline.md).`,
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&target, "target", "", "install this target path instead of the newest release")
			fs.BoolVar(&retry, "retry", false, "install the release even though it failed on this device before")
			fs.StringVar(&from, "from", "", "install from this offline bundle (file, directory or mount point) instead of the repository")
		},
		run: noArgs("update", func() error {
			ag, _, err := a.load(slog.LevelWarn)
			if err != nil {
				return err
			}
			var done func()
			ag.Progress, done = a.out.Progress("download")
			opt := agent.UpdateOptions{Target: target, Retry: retry}
			var res *agent.UpdateResult
			if from != "" {
				res, err = ag.UpdateFrom(context.Background(), from, opt)
			} else {
				res, err = ag.Update(context.Background(), opt)
			}
			done()
			if err != nil {
				return code(err)
			}
			if err := a.out.Result(res, func(w io.Writer) { fmt.Fprintln(w, res.Message) }); err != nil {
				return err
			}
			if res.Installed || res.RebootPending {
				return &cli.ExitError{Code: cli.ExitInstalled, Err: errors.New("reboot needed")}
			}
			return nil
		}),
	}
}

func (a *app) confirmCmd() *command {
	return &command{
		name:  "confirm",
		short: "Run health checks, mark the running slot good; after an update, raise the anti-rollback counter",
		run: noArgs("confirm", func() error {
			ag, _, err := a.load(slog.LevelWarn)
			if err != nil {
				return err
			}
			res, err := ag.Confirm(context.Background())
			if err != nil {
				return code(err)
			}
			return a.out.Result(res, func(w io.Writer) {
				fmt.Fprintf(w, "%s; security counter %d\n", res.Message, res.Counter)
			})
		}),
	}
}

func (a *app) statusCmd() *command {
	return &command{
		name:  "status",
		short: "Show the device's state, slots, counter, trust store and recent install attempts (exit 5: not provisioned)",
		run: noArgs("status", func() error {
			ag, cfg, err := a.load(slog.LevelWarn)
			if err != nil {
				return err
			}
			st, err := ag.Status(context.Background())
			if err != nil {
				return code(err)
			}
			return a.out.Result(st, func(w io.Writer) { printStatus(w, st, cfg.SlotNames()) })
		}),
	}
}

func (a *app) daemonCmd() *command {
	var once bool
	return &command{
		name:  "daemon",
		args:  "[--once]",
		short: "Poll the repository (interval with jitter), install updates, send reports if configured",
		flags: func(fs *flag.FlagSet) {
			fs.BoolVar(&once, "once", false, "poll once and exit with the update's exit code (for timers and tests)")
		},
		run: noArgs("daemon", func() error {
			ag, cfg, err := a.load(slog.LevelInfo)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			opt := agent.DaemonOptions{Once: once}
			if r := cfg.Report; r != nil {
				key, err := a.deviceKey(ctx, ag, cfg)
				if err != nil {
					return err
				}
				opt.Reporter = &agent.Reporter{Agent: ag, Key: key, Interval: time.Duration(r.Interval),
					Options: agent.ReportOptions{DeviceID: r.DeviceID}}
			}
			if c := cfg.RebootCommand; len(c) > 0 {
				opt.Reboot = func(ctx context.Context) error {
					a.logger(slog.LevelInfo).Info("rebooting", "command", strings.Join(c, " "))
					return exec.CommandContext(ctx, c[0], c[1:]...).Run()
				}
			}
			return code(ag.Daemon(ctx, opt))
		}),
	}
}

func (a *app) simulateBootCmd() *command {
	return &command{
		name:  "simulate-boot",
		short: "Simulators only: act as the bootloader (choose a slot, count the attempt) and 'boot' it",
		long: `Runs the bootloader's side of the A/B convention on the configured
environment: picks the first slot in BOOT_ORDER with attempts left, decrements
them, and writes fwctl.slot=SLOT to the configured kernel command line file, as
a real reboot would. Use it with file slots in tests and demos.`,
		run: noArgs("simulate-boot", func() error {
			ag, _, err := a.load(slog.LevelWarn)
			if err != nil {
				return err
			}
			slot, err := ag.SimulateBoot()
			if errors.Is(err, agent.ErrNotSimulator) {
				return cli.WithCode(cli.ExitUsage, err)
			}
			if err != nil {
				return err
			}
			return a.out.Result(map[string]string{"booted_slot": slot}, func(w io.Writer) {
				fmt.Fprintf(w, "booted slot %s\n", slot)
			})
		}),
	}
}

func (a *app) reportCmd() *command {
	var to string
	return &command{
		name:  "report",
		args:  "[--to DIR]",
		short: reportShort,
		long:  reportLong,
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&to, "to", "", "write the signed report into DIR (an offline site's stick) for 'fwrepo reports import' instead of sending it")
		},
		run: noArgs("report", func() error { return a.runReport(to) }),
	}
}

func (a *app) identityCmd() *command {
	var pemOnly bool
	return &command{
		name:  "identity",
		args:  "[--pem]",
		short: identityShort,
		flags: func(fs *flag.FlagSet) {
			fs.BoolVar(&pemOnly, "pem", false, "print only the PEM public key (for 'fwrepo devices add --pubkey')")
		},
		run: noArgs("identity", func() error { return a.runIdentity(pemOnly) }),
	}
}
