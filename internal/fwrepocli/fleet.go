package fwrepocli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/fwctl/fwctl/internal/cli"
	"github.com/fwctl/fwctl/internal/duration"
	"github.com/fwctl/fwctl/manifests"
	"github.com/fwctl/fwctl/repo/inventory"
	"github.com/fwctl/fwctl/repo/inventory/rollout"
	"github.com/fwctl/fwctl/repo/server/operator"
)

// The fleet: device tags and history, operator tokens, rollouts, and the
// operator API of fwrepo serve (issue 15).

func init() {
	registerCommand(rolloutCmd)
	registerCommand(tokenCmd)
	registerServeMount(serveMount{name: "operator", flags: operatorServeFlags, mount: mountOperator})
}

var operatorServe struct {
	interval time.Duration
}

// servedFleet is the rollout service fwrepo serve runs (nil without --db).
var servedFleet atomic.Pointer[operator.Service]

// serveFleet returns the rollout service of fwrepo serve (nil without
// --db); the fleet view calls it per request.
func serveFleet() *operator.Service { return servedFleet.Load() }

var _ = serveFleet // for the fleet view's mount (fleetui), which calls it per request

func operatorServeFlags(fs *pflag.FlagSet) {
	operatorServe.interval = 5 * time.Second
	fs.Var(duration.Flag{D: &operatorServe.interval}, "rollout-interval", "how often rollouts are reconciled with the devices' reports and with changes made by 'fwrepo rollout' (also soon after each accepted report)")
}

// mountOperator serves the operator API under /api/v1/fleet/ (with --db)
// and, with the director, runs the rollouts.
func mountOperator(env serveEnv, next http.Handler) (http.Handler, func() error, error) {
	if env.DB == "" {
		return next, nil, nil
	}
	db, err := openInventory(env.DB)
	if err != nil {
		return nil, nil, err
	}
	svc := &operator.Service{DB: db, Releases: operator.StoreReleases{Store: env.Store}, Log: env.Log}
	ctx, cancel := context.WithCancel(env.Ctx)
	done := make(chan struct{})
	if d := serveDirector(); d != nil {
		svc.Director = d
		go func() {
			defer close(done)
			svc.Run(ctx, operatorServe.interval)
		}()
	} else {
		close(done)
		env.Log.Warn("rollouts are not carried out: fwrepo serve needs --director-key for that (the operator API still records them)")
	}
	servedFleet.Store(svc)
	mux := http.NewServeMux()
	mux.Handle(operator.Prefix, operator.Handler(svc, env.Log))
	mux.Handle("/", kickOnReport(svc, next))
	env.Log.Info("operator API enabled", "path", operator.Prefix, "rollouts", svc.Director != nil)
	return mux, func() error {
		cancel()
		<-done
		servedFleet.Store(nil)
		return db.Close()
	}, nil
}

// kickOnReport reconciles rollouts soon after a device report is accepted.
func kickOnReport(svc *operator.Service, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != manifests.ManifestPath {
			next.ServeHTTP(w, r)
			return
		}
		sw := &codeWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r)
		if sw.code == http.StatusOK {
			svc.Kick()
		}
	})
}

type codeWriter struct {
	http.ResponseWriter
	code int
}

func (w *codeWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}
func (w *codeWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// dbFlag adds --db to c.
func dbFlag(c *cobra.Command, p *string) {
	c.PersistentFlags().StringVar(p, "db", "", "inventory database, shared with 'fwrepo serve --db' (default $"+DBEnv+", else fwrepo.db)")
}

func usage(err error) error {
	switch {
	case errors.Is(err, inventory.ErrUnknownDevice), errors.Is(err, inventory.ErrDeviceRemoved), errors.Is(err, inventory.ErrInvalidTag),
		errors.Is(err, inventory.ErrUnknownRollout), errors.Is(err, rollout.ErrInvalidSpec), errors.Is(err, rollout.ErrTransition),
		errors.Is(err, inventory.ErrNoDevices), errors.Is(err, inventory.ErrDeviceBusy), errors.Is(err, inventory.ErrRolloutExists),
		errors.Is(err, inventory.ErrTokenExists), errors.Is(err, inventory.ErrUnknownToken), errors.Is(err, rollout.ErrApproval):
		return cli.WithCode(cli.ExitUsage, err)
	}
	return err
}

// ---- fwrepo devices tag|untag|history

func devicesTagCmd(jsonOut *bool, dbPath *string) *cobra.Command {
	return &cobra.Command{
		Use:     "tag DEVICE_ID KEY=VALUE...",
		Example: `  fwrepo devices tag gw-0042 site=berlin ring=canary`,
		Short:   "Set tags on a device (groups and rollouts select devices by tag)",
		Args:    cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			tags, err := inventory.ParseTags(args[1:])
			if err != nil {
				return cli.WithCode(cli.ExitUsage, err)
			}
			return withInventory(*dbPath, func(db *inventory.DB) error {
				if err := db.SetTags(cmd.Context(), args[0], tags); err != nil {
					return usage(err)
				}
				dev, err := db.Device(cmd.Context(), args[0])
				if err != nil {
					return err
				}
				return cli.Std(*jsonOut).Result(dev, func(w io.Writer) { fmt.Fprintf(w, "%s: %s\n", dev.ID, formatTags(dev.Tags)) })
			})
		},
	}
}

func devicesUntagCmd(jsonOut *bool, dbPath *string) *cobra.Command {
	return &cobra.Command{
		Use:     "untag DEVICE_ID KEY...",
		Example: `  fwrepo devices untag gw-0042 ring`,
		Short:   "Remove tags from a device",
		Args:    cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withInventory(*dbPath, func(db *inventory.DB) error {
				if err := db.RemoveTags(cmd.Context(), args[0], args[1:]); err != nil {
					return usage(err)
				}
				dev, err := db.Device(cmd.Context(), args[0])
				if err != nil {
					return err
				}
				return cli.Std(*jsonOut).Result(dev, func(w io.Writer) { fmt.Fprintf(w, "%s: %s\n", dev.ID, formatTags(dev.Tags)) })
			})
		},
	}
}

func formatTags(t map[string]string) string {
	if len(t) == 0 {
		return "(no tags)"
	}
	return inventory.FormatFilter(t)
}

// identityLabel marks a file identity as weaker.
func identityLabel(kind string) string {
	if kind == inventory.IdentityFile {
		return "file (weaker)"
	}
	return kind
}

func devicesHistoryCmd(jsonOut *bool, dbPath *string) *cobra.Command {
	var limit int
	c := &cobra.Command{
		Use:     "history DEVICE_ID",
		Example: `  fwrepo devices history gw-0042 --limit 20`,
		Short:   "Show every install attempt a device reported (signed reports), newest first",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withInventory(*dbPath, func(db *inventory.DB) error {
				ev, err := db.History(cmd.Context(), args[0], limit)
				if err != nil {
					return usage(err)
				}
				doc := struct {
					DeviceID string            `json:"device_id"`
					Events   []inventory.Event `json:"events"`
				}{args[0], ev}
				return cli.Std(*jsonOut).Result(doc, func(w io.Writer) {
					if len(ev) == 0 {
						fmt.Fprintf(w, "%s has reported no install attempt\n", args[0])
						return
					}
					tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
					defer tw.Flush()
					fmt.Fprintln(tw, "AT\tOUTCOME\tVERSION\tTARGET\tERROR")
					for _, e := range ev {
						fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", e.At.Format(time.RFC3339), e.Outcome, dash(e.Version), dash(e.Target), dash(e.Error))
					}
				})
			})
		},
	}
	c.Flags().IntVar(&limit, "limit", 0, "show at most this many (0: all)")
	return c
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// ---- fwrepo token

func tokenCmd(jsonOut *bool) *cobra.Command {
	var dbPath string
	c := &cobra.Command{
		Use: "token",
		Example: `  fwrepo token create --role operator alice
  fwrepo token list`,
		Short: "Operator tokens for the operator API (/api/v1/fleet/) and the fleet view: create, list, revoke",
		Args:  cobra.NoArgs,
	}
	dbFlag(c, &dbPath)
	var role string
	create := &cobra.Command{
		Use: "create --role viewer|operator NAME",
		Example: `  fwrepo token create --role operator alice   # prints the token once
  fwrepo token create --role viewer noc`,
		Short: "Create an operator token and print it (once: only its hash is stored)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withInventory(dbPath, func(db *inventory.DB) error {
				tok, t, err := db.CreateToken(cmd.Context(), args[0], role)
				if err != nil {
					if errors.Is(err, inventory.ErrTokenExists) {
						return usage(err)
					}
					return cli.WithCode(cli.ExitUsage, err)
				}
				doc := struct {
					*inventory.Token
					Secret string `json:"token"`
				}{t, tok}
				return cli.Std(*jsonOut).Result(doc, func(w io.Writer) {
					fmt.Fprintln(w, tok)
					fmt.Fprintf(cmd.ErrOrStderr(), "Created %s token %q; it is shown only now (send it as 'Authorization: Bearer TOKEN')\n", t.Role, t.Name)
				})
			})
		},
	}
	create.Flags().StringVar(&role, "role", "", "viewer (read the fleet) or operator (also change devices, tags and rollouts)")
	_ = create.MarkFlagRequired("role")
	list := &cobra.Command{
		Use:     "list",
		Short:   "List operator tokens (names, roles, last use; never the tokens)",
		Example: `  fwrepo token list`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withInventory(dbPath, func(db *inventory.DB) error {
				ts, err := db.Tokens(cmd.Context())
				if err != nil {
					return err
				}
				return cli.Std(*jsonOut).Result(map[string]any{"tokens": ts}, func(w io.Writer) {
					if len(ts) == 0 {
						fmt.Fprintln(w, "No operator tokens; create one with 'fwrepo token create --role operator NAME'")
						return
					}
					tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
					defer tw.Flush()
					fmt.Fprintln(tw, "NAME\tROLE\tCREATED\tLAST USED")
					for _, t := range ts {
						used := "never"
						if t.LastUsed != nil {
							used = t.LastUsed.Format(time.RFC3339)
						}
						fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", t.Name, t.Role, t.CreatedAt.Format(time.RFC3339), used)
					}
				})
			})
		},
	}
	revoke := &cobra.Command{
		Use:     "revoke NAME",
		Example: `  fwrepo token revoke alice`,
		Short:   "Revoke an operator token: requests with it are refused from now on",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withInventory(dbPath, func(db *inventory.DB) error {
				if err := db.RevokeToken(cmd.Context(), args[0]); err != nil {
					return usage(err)
				}
				return cli.Std(*jsonOut).Result(map[string]any{"name": args[0], "revoked": true}, func(w io.Writer) {
					fmt.Fprintf(w, "Revoked token %s\n", args[0])
				})
			})
		},
	}
	c.AddCommand(create, list, revoke)
	return c
}

// ---- fwrepo rollout

func rolloutCmd(jsonOut *bool) *cobra.Command {
	var dbPath string
	c := &cobra.Command{
		Use: "rollout",
		Example: `  fwrepo rollout create --id gw-2.4.1 --target acme-gw-v2/2.4.1/firmware.img --filter site=berlin --waves 1,10%,50%
  fwrepo rollout start gw-2.4.1
  fwrepo rollout status gw-2.4.1`,
		Short: "Roll a release out to devices in waves, with thresholds, automatic halt and approval (carried out by 'fwrepo serve --director-key')",
		Long: `Roll a release out to a group of devices in waves. The rollout is stored in the
inventory database; 'fwrepo serve --db … --director-key …' carries it out by
signing director assignments, and advances or halts it on the devices' signed
reports only.`,
		Args: cobra.NoArgs,
	}
	dbFlag(c, &dbPath)
	var token tokenFlags
	c.PersistentFlags().StringVar(&token.token, "token", "", "act as the operator of this token (default $"+TokenEnv+"): create and actions record its name; approve needs one, of another operator than the creator")
	c.PersistentFlags().StringVar(&token.file, "token-file", "", "read --token from this file (keeps it out of the process list)")
	c.AddCommand(rolloutCreateCmd(jsonOut, &dbPath, &token), rolloutListCmd(jsonOut, &dbPath), rolloutStatusCmd(jsonOut, &dbPath))
	for _, a := range []struct{ action, short string }{
		{rollout.Start, "Start a rollout (its first wave is assigned; with --approval it first waits for 'fwrepo rollout approve')"},
		{rollout.Approve, "Approve a started rollout that asked for approval (--token of an operator other than its creator)"},
		{rollout.Pause, "Pause a rollout: devices that have not started are withdrawn until resume"},
		{rollout.Resume, "Resume a paused rollout"},
		{rollout.Abort, "Abort a rollout: devices that have not started are withdrawn for good"},
	} {
		c.AddCommand(rolloutActionCmd(jsonOut, &dbPath, &token, a.action, a.short))
	}
	return c
}

// TokenEnv names the default operator token of 'fwrepo rollout'.
const TokenEnv = "FWREPO_TOKEN"

// tokenFlags are --token and --token-file.
type tokenFlags struct{ token, file string }

// operatorName returns the name of the operator token of f (--token,
// --token-file, else $FWREPO_TOKEN), which must have the operator role,
// or rollout.Anonymous without one.
func operatorName(ctx context.Context, db *inventory.DB, f tokenFlags) (string, error) {
	tok := f.token
	if f.file != "" {
		b, err := os.ReadFile(f.file)
		if err != nil {
			return "", cli.WithCode(cli.ExitUsage, fmt.Errorf("--token-file: %w", err))
		}
		tok = string(b)
	}
	if tok == "" {
		tok = os.Getenv(TokenEnv)
	}
	if tok == "" {
		return rollout.Anonymous, nil
	}
	t, err := db.Authenticate(ctx, strings.TrimSpace(tok))
	if errors.Is(err, inventory.ErrBadToken) {
		return "", cli.WithCode(cli.ExitUsage, fmt.Errorf("--token: %w", err))
	}
	if err != nil {
		return "", err
	}
	if !t.Allows(inventory.RoleOperator) {
		return "", cli.WithCode(cli.ExitUsage, fmt.Errorf("--token: token %s has role %s; changing rollouts needs the operator role", t.Name, t.Role))
	}
	return t.Name, nil
}

func rolloutCreateCmd(jsonOut *bool, dbPath *string, token *tokenFlags) *cobra.Command {
	var (
		id, waves, timezone string
		filter, windows     []string
		spec                rollout.Spec
	)
	c := &cobra.Command{
		Use: "create --target PATH [--filter KEY=VALUE]... [--waves 1,10%,… | --auto-split N]",
		Example: `  fwrepo rollout create --id gw-2.4.1 --target acme-gw-v2/2.4.1/firmware.img \
    --filter site=berlin --waves 1,10%,50% --success-threshold 0.95 --failure-threshold 0.05
  fwrepo rollout create --target acme-gw-v2/2.4.1/firmware.img --auto-split 4 --approval \
    --window 'Sat 02:00-04:00' --timezone Europe/Berlin`,
		Short: "Create a rollout of a release to the devices a tag filter selects (membership fixed now), split into waves",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var err error
			if spec.Filter, err = inventory.ParseTags(filter); err != nil {
				return cli.WithCode(cli.ExitUsage, err)
			}
			if waves != "" {
				if spec.Waves, err = rollout.ParseWaves(waves); err != nil {
					return cli.WithCode(cli.ExitUsage, err)
				}
			}
			if len(windows) > 0 || timezone != "" {
				spec.Maintenance = &manifests.Maintenance{Windows: windows, Timezone: timezone}
			}
			return withInventory(*dbPath, func(db *inventory.DB) error {
				by, err := operatorName(cmd.Context(), db, *token)
				if err != nil {
					return err
				}
				r, err := db.CreateRollout(cmd.Context(), id, spec, by)
				if err != nil {
					return usage(err)
				}
				return cli.Std(*jsonOut).Result(r, func(w io.Writer) {
					fmt.Fprintf(w, "Created rollout %s of %s to %d devices (%s) in %d waves %v; start it with 'fwrepo rollout start %s'\n",
						r.ID, r.Spec.Target, sum(r.Sizes), inventory.FormatFilter(r.Spec.Filter), r.Waves, r.Sizes, r.ID)
				})
			})
		},
	}
	c.Flags().StringVar(&id, "id", "", "rollout ID (default: generated)")
	c.Flags().StringVar(&spec.Target, "target", "", "the release: a firmware target path of the image repository (fwctl target list)")
	c.Flags().StringArrayVar(&filter, "filter", nil, "select devices with tag KEY=VALUE (repeatable: all must match; none: every device)")
	c.Flags().StringVar(&waves, "waves", "", "wave sizes, counts or percentages of the devices: 1,10%,50% (devices left over join the last wave)")
	c.Flags().IntVar(&spec.AutoSplit, "auto-split", 0, "split the devices into N waves of (nearly) equal size")
	c.Flags().Float64Var(&spec.SuccessThreshold, "success-threshold", rollout.DefaultSuccessThreshold, "fraction of a wave's devices that must have succeeded (confirmed) before the next wave starts")
	c.Flags().Float64Var(&spec.FailureThreshold, "failure-threshold", rollout.DefaultFailureThreshold, "fraction of a wave's devices allowed to fail; more halts the rollout by itself")
	c.Flags().BoolVar(&spec.Approval, "approval", false, "start waits for 'fwrepo rollout approve'")
	c.Flags().StringArrayVar(&windows, "window", nil, "maintenance window carried to the devices, e.g. 'Sat 02:00-04:00' (repeatable)")
	c.Flags().StringVar(&timezone, "timezone", "", "time zone of --window (IANA name, e.g. Europe/Berlin; default: the device's local time)")
	return c
}

func sum(v []int) int {
	n := 0
	for _, x := range v {
		n += x
	}
	return n
}

func rolloutActionCmd(jsonOut *bool, dbPath *string, token *tokenFlags, action, short string) *cobra.Command {
	return &cobra.Command{
		Use:     action + " ROLLOUT_ID",
		Example: "  fwrepo rollout " + action + " gw-2.4.1",
		Short:   short,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withInventory(*dbPath, func(db *inventory.DB) error {
				by, err := operatorName(cmd.Context(), db, *token)
				if err != nil {
					return err
				}
				svc := &operator.Service{DB: db}
				r, err := svc.Act(cmd.Context(), args[0], action, by)
				if err != nil {
					return usage(err)
				}
				return cli.Std(*jsonOut).Result(r, func(w io.Writer) {
					fmt.Fprintf(w, "Rollout %s is %s", r.ID, r.Status)
					if r.Status == rollout.Running || r.Status == rollout.Paused || r.Status == rollout.Aborted {
						fmt.Fprint(w, "; 'fwrepo serve --director-key' carries it out within its --rollout-interval")
					}
					fmt.Fprintln(w)
				})
			})
		},
	}
}

func rolloutListCmd(jsonOut *bool, dbPath *string) *cobra.Command {
	return &cobra.Command{
		Use:     "list",
		Short:   "List rollouts, newest first",
		Example: `  fwrepo rollout list --json`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withInventory(*dbPath, func(db *inventory.DB) error {
				rs, err := db.Rollouts(cmd.Context())
				if err != nil {
					return err
				}
				return cli.Std(*jsonOut).Result(map[string]any{"rollouts": rs}, func(w io.Writer) {
					if len(rs) == 0 {
						fmt.Fprintln(w, "No rollouts; create one with 'fwrepo rollout create --target PATH'")
						return
					}
					tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
					defer tw.Flush()
					fmt.Fprintln(tw, "ID\tTARGET\tFILTER\tSTATUS\tWAVE\tDEVICES\tREASON")
					for _, r := range rs {
						fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d/%d\t%d\t%s\n", r.ID, r.Spec.Target, inventory.FormatFilter(r.Spec.Filter), r.Status,
							r.Wave+1, r.Waves, sum(r.Sizes), dash(r.Reason))
					}
				})
			})
		},
	}
}

func rolloutStatusCmd(jsonOut *bool, dbPath *string) *cobra.Command {
	var devices bool
	c := &cobra.Command{
		Use:     "status ROLLOUT_ID",
		Example: `  fwrepo rollout status gw-2.4.1 --devices`,
		Short:   "Show a rollout: its state, why it halted, per-wave progress from the devices' signed reports",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withInventory(*dbPath, func(db *inventory.DB) error {
				st, err := db.Status(cmd.Context(), args[0])
				if err != nil {
					return usage(err)
				}
				return cli.Std(*jsonOut).Result(st, func(w io.Writer) { printRollout(w, st, devices) })
			})
		},
	}
	c.Flags().BoolVar(&devices, "devices", false, "list every device with its phase")
	return c
}

func printRollout(w io.Writer, st *inventory.RolloutStatus, devices bool) {
	r := st.Rollout
	fmt.Fprintf(w, "Rollout %s: %s of %s to %s\n", r.ID, r.Status, r.Spec.Target, inventory.FormatFilter(r.Spec.Filter))
	if r.Reason != "" {
		fmt.Fprintf(w, "Reason: %s\n", r.Reason)
	}
	fmt.Fprintf(w, "Thresholds: next wave at %g%% succeeded; halt above %g%% failed", r.Spec.SuccessThreshold*100, r.Spec.FailureThreshold*100)
	if r.Spec.Approval {
		fmt.Fprintf(w, "; approval required from an operator other than %s (approved by: %s)", r.CreatedBy, dash(r.ApprovedBy))
	}
	fmt.Fprintln(w)
	if m := r.Spec.Maintenance; m != nil {
		fmt.Fprintf(w, "Window: %s %s\n", strings.Join(m.Windows, ", "), m.Timezone)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "WAVE\tDEVICES\tPENDING\tASSIGNED\tDEFERRED\tINSTALLING\tSUCCEEDED\tFAILED\tWITHDRAWN")
	for i, c := range st.Counts {
		mark := " "
		if i == r.Wave && !r.Status.Terminal() && r.Status != rollout.Created {
			mark = "*"
		}
		fmt.Fprintf(tw, "%d%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\n", i+1, mark, c.Devices, c.Pending, c.Assigned, c.Deferred, c.Installing, c.Succeeded, c.Failed, c.Withdrawn)
	}
	tw.Flush()
	var failed []inventory.RolloutDevice
	for _, d := range st.Devices {
		if d.Phase == rollout.Failed {
			failed = append(failed, d)
		}
	}
	sort.Slice(failed, func(i, j int) bool { return failed[i].ID < failed[j].ID })
	for _, d := range failed {
		fmt.Fprintf(w, "failed: %s (wave %d): %s\n", d.ID, d.Wave+1, d.Error)
	}
	if devices {
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "DEVICE\tWAVE\tPHASE")
		for _, d := range st.Devices {
			fmt.Fprintf(tw, "%s\t%d\t%s\n", d.ID, d.Wave+1, d.Phase)
		}
		tw.Flush()
	}
}
