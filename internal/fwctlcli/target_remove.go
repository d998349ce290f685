package fwctlcli

import (
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/fwctl/fwctl/repo"
)

func (a *app) targetRemoveCmd() *cobra.Command {
	var force bool
	c := &cobra.Command{
		Use:   "remove PATH",
		Short: "Unstage a target (and the deltas that rebuild it) before the next publish",
		Long: `Unstage the target at PATH, as 'fwctl target list' shows it
(HARDWARE/VERSION/NAME), with the deltas that rebuild it, and delete the
workspace's copies. A target the last publish released is removed only with
--force: the next publish withdraws it from every device that has not
installed it yet.`,
		Args: cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			ws, err := a.open()
			if err != nil {
				return err
			}
			removed, err := ws.RemoveTarget(args[0], force)
			if errors.Is(err, repo.ErrNoTarget) || errors.Is(err, repo.ErrPublishedTarget) {
				return usage(err)
			}
			if err != nil {
				return err
			}
			return a.out.Result(removed, func(w io.Writer) {
				for _, t := range removed {
					fmt.Fprintf(w, "Removed %s\n", printablePath(t.Path))
				}
				fmt.Fprintln(w, "Run 'fwctl publish' to release the change.")
			})
		},
	}
	c.Flags().BoolVar(&force, "force", false, "also remove a target the last publish released")
	return c
}
