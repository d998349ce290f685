// Package verify checks a published fwctl repository the way a device
// does, from any Source (a directory, a blob store, a served URL): the root
// chain from a trusted root, timestamp, snapshot and targets signatures,
// thresholds, versions, hashes and expiry, every delegated role reachable
// from targets, and every target file's length, hash and firmware metadata.
// It also reports when published metadata expires.
//
// It never writes, never signs and never imports the transparency log
// client: fwrepo links it to check what it serves, and 'fwctl publish'
// runs it over a complete output before the timestamp goes live.
package verify
