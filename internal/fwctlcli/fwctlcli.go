// Package fwctlcli is the fwctl command line: it parses flags, calls
// package repo and signer, and prints results. cmd/fwctl only calls Main.
package fwctlcli

import (
	"errors"
	"os"

	"github.com/spf13/cobra"

	"github.com/fwctl/fwctl/internal/cli"
	"github.com/fwctl/fwctl/internal/cli/cobragroups"
	"github.com/fwctl/fwctl/internal/cobracli"
	"github.com/fwctl/fwctl/repo"
	"github.com/fwctl/fwctl/signer"
)

// PassphraseEnv is the environment variable holding the key passphrase.
const PassphraseEnv = signer.PassphraseEnv

type app struct {
	json      bool
	workspace string
	out       *cli.Output
}

// Main runs fwctl with os.Args and returns the exit code.
func Main() int {
	a := &app{}
	root := a.command()
	a.out = cli.Std(false)
	root.SetArgs(os.Args[1:])
	err := root.Execute()
	a.out.JSON = a.json
	var silent silentExit
	if errors.As(err, &silent) {
		return silent.code
	}
	if err != nil {
		return a.out.Fail(err)
	}
	return cli.ExitOK
}

func (a *app) command() *cobra.Command {
	root := &cobra.Command{
		Use:   "fwctl",
		Short: "Sign and publish firmware releases (offline release side of fwctl)",
		Long: `fwctl creates a signing workspace, records firmware images with their
hardware, version and security counter, and publishes a signed TUF repository
that fwrepo serves and fwagent verifies.

Key passphrases come from $` + PassphraseEnv + ` or a terminal prompt.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRun: func(*cobra.Command, []string) {
			a.out.JSON = a.json
		},
	}
	root.PersistentFlags().BoolVar(&a.json, "json", false, "print one JSON document instead of text")
	root.PersistentFlags().StringVarP(&a.workspace, "workspace", "w", envOr("FWCTL_WORKSPACE", "."), "signing workspace directory ($FWCTL_WORKSPACE)")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return cli.WithCode(cli.ExitUsage, err) })
	root.AddCommand(a.initCmd(), a.targetCmd(), a.publishCmd(), a.statusCmd(), a.verifyCmd())
	root.AddCommand(a.deltaCmd(), a.auditCmd())
	root.AddCommand(a.keyCmd(), a.ceremonyCmd(), a.delegateCmd(), a.checkExpiryCmd())
	for _, f := range extraCommands { // register.go
		root.AddCommand(f(a))
	}
	cobracli.Install(root) // version, --version, __docs (last: documents every command)
	// An unknown subcommand of a group exits 2, not 0 with help.
	cobragroups.Strict(root)
	return root
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func usage(err error) error { return cli.WithCode(cli.ExitUsage, err) }

func (a *app) open() (*repo.Workspace, error) {
	ws, err := repo.Open(a.workspace, signer.PassphraseSource(PassphraseEnv, "Key passphrase: ", false))
	if errors.Is(err, repo.ErrNotWorkspace) {
		return nil, usage(err)
	}
	return ws, err
}

func short(ids []string) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = id[:16]
	}
	return out
}
