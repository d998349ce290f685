package fwctlcli

import "github.com/spf13/cobra"

// extraCommands are top-level fwctl commands contributed by other files of
// this package (sbom, bundle, ...), each registered from an init function
// so that nobody edits a shared command list.
var extraCommands []func(a *app) *cobra.Command

// registerCommand adds a top-level fwctl command; call it from init.
func registerCommand(f func(a *app) *cobra.Command) { extraCommands = append(extraCommands, f) }
