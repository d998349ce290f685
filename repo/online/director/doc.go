// Package director is fwrepo's Uptane-style director: per-device targets metadata signed by an online director key under the director's own root.
package director
