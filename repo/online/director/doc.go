// Package director is fwrepo's Uptane-style director: per-device targets
// metadata signed by an online director key under the director's own root.
//
// The director root (root keys offline, made by Init) authorises one online
// key for the targets, snapshot and timestamp roles. For each device the
// director publishes, in the same blob store as the image repository,
//
//	director/metadata/N.root.json                      the director root chain
//	director/devices/ID/metadata/N.targets.json        what the device may install
//	director/devices/ID/metadata/N.snapshot.json       names N.targets.json
//	director/devices/ID/metadata/timestamp.json        names N.snapshot.json
//
// (manifests.DirectorRoot, manifests.DirectorDevice). Versioned files are
// never rewritten; versions only grow; timestamp.json is written last. A
// device's targets list at most one target, carrying a manifests.Assignment
// in custom; the device installs it only if the image repository signed the
// same target with the same length, hashes, hardware and counter, so the
// director key alone can choose among signed releases but never add one.
//
// It never imports the release side (package repo) nor the transparency
// client: only the blob stores, the key backends and the wire formats.
// A Director is safe for concurrent use within one process; two processes
// must not write the same director at once.
package director
