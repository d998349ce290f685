//go:build !linux

package director

import "errors"

const canSync = false

func syncAll(string) error { return nil }

// relDir is Linux's (write uses it only where canSync).
type relDir struct{}

var errNoRelDir = errors.New("director: no relative directory writes on this system")

func openRel(string) (*relDir, error)                 { return nil, errNoRelDir }
func (*relDir) close()                                {}
func (*relDir) mkdir(string) error                    { return errNoRelDir }
func (*relDir) create(string, []byte) (string, error) { return "", errNoRelDir }
func (*relDir) rename(string, string) error           { return errNoRelDir }
func (*relDir) remove(string)                         {}
