// Package director is the Uptane-style director: per-device targets metadata signed by an online director key under its own root.
package director
