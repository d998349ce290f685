package fwctlcli

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/fwctl/fwctl/repo"
)

func (a *app) statusCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show roles, keys, thresholds, versions, expiry and targets",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			ws, err := a.open()
			if err != nil {
				return err
			}
			st, err := ws.Status()
			if err != nil {
				return err
			}
			return a.out.Result(st, func(w io.Writer) {
				tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
				fmt.Fprintln(tw, "ROLE\tVERSION\tTHRESHOLD\tKEYS\tEXPIRES\t")
				for _, r := range st.Roles {
					exp := "never published"
					if !r.Expires.IsZero() {
						exp = r.Expires.Format(time.RFC3339)
					}
					fmt.Fprintf(tw, "%s\t%d\t%d of %d\t%s\t%s\t%s\n", r.Role, r.Version, r.Threshold, len(r.KeyIDs), strings.Join(short(r.KeyIDs), ","), exp, r.Warning)
				}
				tw.Flush()
				fmt.Fprintln(w)
				printTargets(w, st.Targets)
				printStatusExtra(w, st)
				if st.Unstaged > 0 {
					fmt.Fprintf(w, "\n%d target(s) staged but not published: run 'fwctl publish'\n", st.Unstaged)
				}
			})
		},
	}
}

// printStatusExtra prints delegations and the signatures still missing.
func printStatusExtra(w io.Writer, st *repo.Status) {
	var elsewhere []string
	for _, r := range st.Roles {
		if len(r.Elsewhere) > 0 {
			elsewhere = append(elsewhere, fmt.Sprintf("  %s: %s", r.Role, strings.Join(short(r.Elsewhere), ", ")))
		}
	}
	if len(elsewhere) > 0 {
		fmt.Fprintln(w, "\nKeys held on other machines (they sign through 'fwctl ceremony'):")
		fmt.Fprintln(w, strings.Join(elsewhere, "\n"))
	}
	if len(st.Delegations) > 0 {
		fmt.Fprintln(w)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "DELEGATED ROLE\tMAY SIGN\tTHRESHOLD\tKEYS\tVERSION\tTARGETS")
		for _, d := range st.Delegations {
			paths := strings.Join(d.Paths, ",")
			if d.Bins > 0 {
				paths = fmt.Sprintf("all paths, %d hashed bins", d.Bins)
			}
			fmt.Fprintf(tw, "%s\t%s\t%d of %d\t%s\t%d\t%d\n", d.Role, paths, d.Threshold, len(d.KeyIDs), strings.Join(short(d.KeyIDs), ","), d.Version, d.Targets)
		}
		tw.Flush()
	}
	if st.PendingRoot > 0 {
		fmt.Fprintf(w, "\nRoot version %d is staged and will be published next.\n", st.PendingRoot)
	}
	if len(st.Pending) > 0 {
		fmt.Fprintln(w, "\nSignatures still missing (fwctl ceremony export / sign / import):")
		for _, m := range st.Pending {
			fmt.Fprintf(w, "  %s v%d: %d of %d by %s (%d more)\n", m.Role, m.Version, m.Have, m.Need, m.By, m.Need-m.Have)
		}
	}
}
