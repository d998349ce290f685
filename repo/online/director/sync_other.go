//go:build !linux

package director

const canSync = false

func syncAll(string) error { return nil }
