package fwagentcli

// extraCommands are fwagent commands contributed by other files of this
// package, each registered from an init function so that nobody edits the
// shared list in commands().
var extraCommands []func(a *app) *command

// registerCommand adds an fwagent command; call it from init.
func registerCommand(f func(a *app) *command) { extraCommands = append(extraCommands, f) }
