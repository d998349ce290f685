package fwrepocli

import (
	"context"
	"log/slog"
	"net/http"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/fwctl/fwctl/repo/blob"
)

// Commands and serve mounts contributed by other files of this package
// register themselves here from an init function, so that each command
// lives in its own file and nobody edits a shared command list.

// extraCommands are top-level commands (rollout, exposure, mirror, ...).
var extraCommands []func(jsonOut *bool) *cobra.Command

// registerCommand adds a top-level fwrepo command; call it from init.
func registerCommand(f func(jsonOut *bool) *cobra.Command) { extraCommands = append(extraCommands, f) }

// ServeEnv is what a serve mount gets: the opened store, the inventory
// database string (empty without --db) and the logger.
type serveEnv struct {
	Ctx   context.Context
	Dir   string
	Store blob.Store
	DB    string
	Log   *slog.Logger
}

// serveMount is a part of 'fwrepo serve' contributed by another file: its
// own flags, and a wrapper around the handler (the repository and device
// API) that may serve more paths. mount returns a close function (or nil).
type serveMount struct {
	name  string
	flags func(fs *pflag.FlagSet)
	mount func(env serveEnv, next http.Handler) (http.Handler, func() error, error)
}

var serveMounts []serveMount

// registerServeMount adds a serve mount; call it from init. Mounts wrap the
// handler in file-name order, inside /metrics.
func registerServeMount(m serveMount) { serveMounts = append(serveMounts, m) }
