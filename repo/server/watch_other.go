//go:build !linux

package server

import (
	"errors"
	"sync/atomic"
)

// watcher is inotify's on Linux; elsewhere there is none, and files
// replaced in place are compared with the source on every request.
type watcher struct{ gen atomic.Uint64 }

func newWatcher() (*watcher, error) { return nil, errors.New("no directory watch on this system") }

func (w *watcher) add(string) error { return errors.New("no directory watch on this system") }
