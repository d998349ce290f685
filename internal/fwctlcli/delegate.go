package fwctlcli

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/fwctl/fwctl/manifests"
	"github.com/fwctl/fwctl/repo"
	"github.com/fwctl/fwctl/repo/layout"
)

// delegateCmd manages delegated targets roles.
func (a *app) delegateCmd() *cobra.Command {
	c := &cobra.Command{Use: "delegate", Short: "Delegate target paths to product-line or vendor roles, or to hashed bins"}
	var opt repo.DelegationOptions
	add := &cobra.Command{
		Use:   "add ROLE --paths PATTERN... --key URI...",
		Short: "Let ROLE's keys sign targets whose paths match the patterns (e.g. acme-gw-v2/*)",
		Args:  cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			ws, err := a.open()
			if err != nil {
				return err
			}
			if err := ws.AddDelegation(args[0], opt); err != nil {
				return err
			}
			return a.out.Result(map[string]any{"role": args[0], "paths": opt.Paths}, func(w io.Writer) {
				fmt.Fprintf(w, "Delegated %s to %s (%d of %d keys). Run 'fwctl publish' (targets keys sign the delegation).\n",
					strings.Join(opt.Paths, ", "), args[0], max(opt.Threshold, 1), len(opt.Keys))
			})
		},
	}
	add.Flags().StringSliceVar(&opt.Paths, "paths", nil, "target path patterns, e.g. acme-gw-v2/*")
	add.Flags().StringArrayVar(&opt.Keys, "key", nil, "key URI (repeatable)")
	add.Flags().IntVar(&opt.Threshold, "threshold", 1, "signatures required")
	add.Flags().BoolVar(&opt.Terminating, "terminating", false, "devices look no further for matching paths")

	var bins repo.BinsOptions
	binsCmd := &cobra.Command{
		Use:   "bins --bits N --key URI",
		Short: "Spread targets over 2^N hashed-bin roles (very large target sets)",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			ws, err := a.open()
			if err != nil {
				return err
			}
			if err := ws.AddHashedBins(bins); err != nil {
				return err
			}
			return a.out.Result(bins, func(w io.Writer) {
				fmt.Fprintf(w, "Delegated all targets to %d hashed bins. Add targets with 'fwctl delegate target IMAGE'.\n", 1<<bins.Bits)
			})
		},
	}
	binsCmd.Flags().IntVar(&bins.Bits, "bits", 8, "number of bins is 2^bits")
	binsCmd.Flags().StringVar(&bins.Prefix, "prefix", "bins", "bin role name prefix")
	binsCmd.Flags().StringArrayVar(&bins.Keys, "key", nil, "key URI (repeatable)")
	binsCmd.Flags().IntVar(&bins.Threshold, "threshold", 1, "signatures required")

	var img imageFlags
	var role string
	target := &cobra.Command{
		Use:   "target IMAGE [--role ROLE]",
		Short: "Stage an image in a delegated role (or its hashed bin)",
		Args:  cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			aopt, err := img.options()
			if err != nil {
				return err
			}
			ws, err := a.open()
			if err != nil {
				return err
			}
			t, err := ws.AddDelegatedTarget(role, args[0], aopt)
			if errors.Is(err, repo.ErrOutsideDelegation) || errors.Is(err, repo.ErrUnknownRole) ||
				errors.Is(err, repo.ErrCounterRegression) || errors.Is(err, repo.ErrCounterJump) ||
				errors.Is(err, manifests.ErrInvalidTarget) || errors.Is(err, layout.ErrInvalidName) {
				return usage(err)
			}
			if err != nil {
				return err
			}
			return a.out.Result(t, func(w io.Writer) {
				fmt.Fprintf(w, "Staged %s in %s\n", t.Path, orBins(role))
			})
		},
	}
	target.Flags().StringVar(&role, "role", "", "delegated role (default: the hashed bin of the path)")
	img.register(target)
	c.AddCommand(add, binsCmd, target)
	return c
}

func orBins(role string) string {
	if role == "" {
		return "its hashed bin"
	}
	return role
}
