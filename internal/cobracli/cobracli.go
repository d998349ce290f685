// Package cobracli holds what fwctl and fwrepo (the two cobra command lines)
// share beyond package cli: the version command and --version flag, and the
// hidden command that writes their man pages and docs/cli/ page from the
// command tree itself, so the manuals cannot drift from the help.
//
// fwagent must never import it: it links cobra and the man page renderer,
// which the device binary's size budget has no room for.
package cobracli

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/fwctl/fwctl/internal/cli"
)

// Install adds `version`, `--version` and the hidden `__docs` command to
// root, and the commands' Example: sections (examples.go). Call it once, after every other command is added.
func Install(root *cobra.Command) {
	info := cli.Version(root.Name())
	root.Version = info.String()
	root.SetVersionTemplate("{{.Version}}\n")
	root.AddCommand(versionCmd(root.Name()), docsCmd(root))
	addExamples(root)
}

func versionCmd(program string) *cobra.Command {
	return &cobra.Command{
		Use:     "version",
		Short:   "Print the version, commit and Go version this binary was built from",
		Args:    cobra.NoArgs,
		Example: "  " + program + " version\n  " + program + " version --json | jq -r .commit",
		RunE: func(cmd *cobra.Command, _ []string) error {
			asJSON, _ := cmd.Flags().GetBool("json") // the roots' persistent --json
			return WriteVersion(cmd.OutOrStdout(), cli.Version(program), asJSON)
		},
	}
}

// WriteVersion prints v as one line, or as a JSON document.
func WriteVersion(w io.Writer, v cli.VersionInfo, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	_, err := fmt.Fprintln(w, v.String())
	return err
}
