//go:build !unix

package agent

import (
	"context"
	"errors"
)

// ErrBusy means another fwagent process holds the device's lock.
var ErrBusy = errors.New("another fwagent is updating this device")

// lock does nothing where there is no flock.
func (a *Agent) lock(context.Context) (func(), error) { return func() {}, nil }
