package fwrepocli

import (
	"net/http"
	"time"

	"github.com/spf13/pflag"

	"github.com/fwctl/fwctl/internal/duration"
	"github.com/fwctl/fwctl/repo/server/fleetui"
)

// The fleet view at /ui (issue 15), on the rollout service the operator
// mount (fleet.go) runs.

func init() {
	registerServeMount(serveMount{name: "fleetui", flags: fleetUIServeFlags, mount: mountFleetUI})
}

var fleetUIServe struct {
	sessionTTL, refresh time.Duration
}

func fleetUIServeFlags(fs *pflag.FlagSet) {
	fleetUIServe.sessionTTL, fleetUIServe.refresh = fleetui.DefaultSessionTTL, fleetui.DefaultRefresh
	fs.Var(duration.Flag{D: &fleetUIServe.sessionTTL}, "ui-session-ttl", "how long a login to the fleet view (/ui, with --db) lasts")
	fs.Var(duration.Flag{D: &fleetUIServe.refresh}, "ui-refresh", "how often the fleet view's pages reload themselves")
}

// mountFleetUI serves the fleet view under /ui/ (with --db).
func mountFleetUI(env serveEnv, next http.Handler) (http.Handler, func() error, error) {
	if env.DB == "" {
		return next, nil, nil
	}
	ui := fleetui.Handler(fleetui.Options{Fleet: fleetui.FromService(serveFleet), Log: env.Log,
		SessionTTL: fleetUIServe.sessionTTL, Refresh: fleetUIServe.refresh})
	mux := http.NewServeMux()
	mux.Handle("/ui", ui)
	mux.Handle(fleetui.Prefix, ui)
	mux.Handle("/", next)
	env.Log.Info("fleet view enabled", "path", fleetui.Prefix)
	return mux, nil, nil
}
