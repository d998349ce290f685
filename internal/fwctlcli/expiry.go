package fwctlcli

import (
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/fwctl/fwctl/internal/cli"
	"github.com/fwctl/fwctl/internal/duration"
	"github.com/fwctl/fwctl/repo"
	"github.com/fwctl/fwctl/repo/verify"
)

func (a *app) checkExpiryCmd() *cobra.Command {
	var within, repoDir string
	c := &cobra.Command{
		Use:   "check-expiry",
		Short: "Fail (exit 1) when published metadata expires within a duration (CI-friendly)",
		Long: `List every published role (root, targets, snapshot, timestamp, delegated
roles) that expires within --within, soonest first. Exit 0 when none does,
1 when any does (or already has). Reads the workspace, or a published
repository with --repo.

Without --within each role has a window that fits its lifetime: a quarter
of it, at most 30 days (root 30d, targets 22d12h, snapshot 1d18h,
timestamp 6h with the default lifetimes), so a repository published just
now passes and a timestamp nobody re-signs fails hours before devices
refuse it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var ws *repo.Workspace
			dir := repoDir
			if dir == "" {
				var err error
				if ws, err = a.open(); err != nil {
					return err
				}
				dir = ws.Dir
			}
			window := func(role string) time.Duration { return repo.CheckWindow(ws, role) }
			if cmd.Flags().Changed("within") {
				d, err := duration.Positive(within)
				if err != nil {
					return usage(fmt.Errorf("--within: %w", err))
				}
				window = func(string) time.Duration { return d }
			} else {
				within = "each role's default window"
			}
			all, err := verify.Expiries(dir+"/metadata", time.Now())
			if err != nil {
				return err
			}
			soon := verify.ExpiringWithinEach(all, window)
			type result struct {
				Within   string          `json:"within"`
				OK       bool            `json:"ok"`
				Expiring []verify.Expiry `json:"expiring"`
				All      []verify.Expiry `json:"roles"`
			}
			res := result{Within: within, OK: len(soon) == 0, Expiring: soon, All: all}
			if res.Expiring == nil {
				res.Expiring = []verify.Expiry{}
			}
			if err := a.out.Result(res, func(w io.Writer) {
				if len(soon) == 0 {
					fmt.Fprintf(w, "OK: nothing expires within %s (next: %s v%d in %s)\n", within, all[0].Role, all[0].Version, duration.Format(all[0].Left.Round(time.Minute)))
					return
				}
				for _, e := range soon {
					state := "expires in " + duration.Format(e.Left.Round(time.Minute))
					if e.Expired {
						state = "EXPIRED " + duration.Format((-e.Left).Round(time.Minute)) + " ago"
					}
					fmt.Fprintf(w, "%s v%d %s (%s): renew with %s\n", e.Role, e.Version, state, e.Expires.Format(time.RFC3339), e.Action)
				}
			}); err != nil {
				return err
			}
			if len(soon) > 0 {
				return silentExit{cli.ExitFailure} // the result above says why
			}
			return nil
		},
	}
	c.Flags().StringVar(&within, "within", "", "warn about metadata expiring within this duration, e.g. 30d or 12h, for every role (default: each role's window, see above)")
	c.Flags().StringVar(&repoDir, "repo", "", "check a published repository directory instead of the workspace")
	return c
}
