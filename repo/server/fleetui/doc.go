// Package fleetui is the fleet view served by fwrepo at /ui: server-rendered HTML without external assets.
package fleetui
