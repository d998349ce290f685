package fwctlcli

import (
	"github.com/spf13/cobra"

	"github.com/fwctl/fwctl/internal/cli"
)

// Command returns fwctl's command tree, as Main runs it (for generating
// documentation and for tests).
func Command() *cobra.Command {
	a := &app{out: cli.Std(false)}
	return a.command()
}
