// Package cobragroups makes the command groups of a cobra tree (commands
// that only hold subcommands, like "fwctl key") refuse an unknown
// subcommand with exit code 2 instead of printing their help and exiting 0,
// so a typo in a script fails. fwctl and fwrepo apply it to their roots.
//
// fwagent must never import it: fwagent does not link cobra.
package cobragroups

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/fwctl/fwctl/internal/cli"
)

// Strict gives every group under root, root included, a run function that
// prints the group's help when called without arguments and fails with
// cli.ExitUsage, naming the closest subcommands, when called with one it
// does not have. Call it after every command is added.
func Strict(root *cobra.Command) {
	for _, c := range root.Commands() {
		Strict(c)
	}
	if !root.HasSubCommands() || root.Runnable() {
		return
	}
	root.Args = cobra.ArbitraryArgs
	root.RunE = func(cmd *cobra.Command, args []string) error {
		if len(args) == 0 {
			return cmd.Help()
		}
		msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
		if cmd.SuggestionsMinimumDistance <= 0 {
			cmd.SuggestionsMinimumDistance = 2 // cobra's default, set only on its own path
		}
		if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
			msg += fmt.Sprintf("; did you mean %s?", strings.Join(s, " or "))
		}
		msg += fmt.Sprintf(" (run '%s --help' for its commands)", cmd.CommandPath())
		return cli.WithCode(cli.ExitUsage, errors.New(msg))
	}
}
