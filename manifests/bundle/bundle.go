// Package bundle is the wire format of an offline update bundle: one tar
// file (or a directory with the same files) holding a subset of a
// published repository, under its repository names (metadata/N.root.json,
// metadata/timestamp.json, targets/SHA256.NAME, ...), after a manifest
// entry fwbundle.json that names the format and its version.
//
// A bundle is plain data. Its authority comes only from the TUF signatures
// of the metadata inside it, which the agent verifies exactly as it
// verifies an online repository; this package never decides whether
// anything in a bundle is trustworthy. It only reads the container, with
// bounds: a truncated or oversized bundle, a name that leaves the bundle,
// a duplicate name or an entry that is not a plain file is a clear error,
// never a panic or an allocation the input chooses.
//
// It imports only the standard library (the agent links it).
package bundle

import (
	"errors"
	"fmt"
	"path"
	"strings"
	"time"
)

// Format and Version identify the manifest. A reader refuses a larger
// Version than it knows; every version keeps its golden vector in
// testdata/. Version 2 adds director metadata (director/ entries, the
// manifest's devices); a bundle without it is still written as version 1,
// so that older agents read it.
const (
	Format       = "fwctl-bundle"
	Version      = 2
	ManifestName = "fwbundle.json"
	// Ext is the file name extension of a bundle file, used to find one
	// on a mounted stick.
	Ext = ".fwbundle"
)

// Manifest is the bundle's first entry. It describes, it does not
// authorise: nothing in it is trusted.
type Manifest struct {
	Format  string `json:"format"`
	Version int    `json:"version"`
	// Created is when the bundle was written (informational).
	Created time.Time `json:"created,omitzero"`
	// Releases are the target paths the bundle was written for.
	Releases []string `json:"releases,omitempty"`
	// RootFrom is the first root version whose successor chain the bundle
	// carries: a device trusting root RootFrom or later can update from it.
	RootFrom int64 `json:"root_from,omitempty"`
	// Devices are the devices whose director metadata the bundle carries
	// (version 2), under director/ as fwrepo's store keeps it.
	Devices []string `json:"devices,omitempty"`
}

// Errors callers branch on.
var (
	// ErrFormat means the bytes are not a bundle (no manifest first, not
	// a tar file, an entry that is not a regular file).
	ErrFormat = errors.New("not a valid fwctl bundle")
	// ErrVersion means the manifest's version is newer than this reader.
	ErrVersion = errors.New("bundle format version not supported")
	// ErrTruncated means the bundle ends inside an entry.
	ErrTruncated = errors.New("bundle is truncated")
	// ErrTooLarge means the bundle exceeds the reader's limits.
	ErrTooLarge = errors.New("bundle too large")
	// ErrBadName means an entry name is not a clean relative path under
	// metadata/, targets/ or director/ (path traversal, absolute,
	// backslash, ...).
	ErrBadName = errors.New("bad entry name in bundle")
	// ErrDuplicate means two entries have the same name.
	ErrDuplicate = errors.New("duplicate entry in bundle")
	// ErrNotFound means the bundle has no entry of that name.
	ErrNotFound = errors.New("not in the bundle")
)

// Limits bound what a reader accepts.
type Limits struct {
	// MaxSize is the largest bundle in bytes (a file, or the sum of a
	// directory's files).
	MaxSize int64
	// MaxEntries is the most entries.
	MaxEntries int
	// MaxManifest is the largest manifest entry.
	MaxManifest int64
}

// DefaultLimits suit a stick holding a few releases of a large image.
var DefaultLimits = Limits{MaxSize: 64 << 30, MaxEntries: 4096, MaxManifest: 64 << 10}

func (l Limits) orDefault() Limits {
	if l.MaxSize <= 0 {
		l.MaxSize = DefaultLimits.MaxSize
	}
	if l.MaxEntries <= 0 {
		l.MaxEntries = DefaultLimits.MaxEntries
	}
	if l.MaxManifest <= 0 {
		l.MaxManifest = DefaultLimits.MaxManifest
	}
	return l
}

// maxName bounds an entry name (a target path of 255 bytes, its hash
// prefix and "targets/").
const maxName = 512

// CheckName reports whether name may be a bundle entry: the manifest, or
// a clean slash-separated relative path under metadata/, targets/ or
// director/ with
// no empty, "." or ".." element, no backslash and no control byte.
func CheckName(name string) error {
	bad := func(why string) error { return fmt.Errorf("%w: %q: %s", ErrBadName, trunc(name), why) }
	switch {
	case name == ManifestName:
		return nil
	case name == "" || len(name) > maxName:
		return bad("empty or longer than 512 bytes")
	case strings.HasPrefix(name, "/"):
		return bad("absolute path")
	case strings.ContainsAny(name, "\\:"):
		return bad("backslash or colon")
	case path.Clean(name) != name:
		return bad("not a clean path")
	case !strings.HasPrefix(name, "metadata/") && !strings.HasPrefix(name, "targets/") && !strings.HasPrefix(name, "director/"):
		return bad("outside metadata/, targets/ and director/")
	}
	for _, el := range strings.Split(name, "/") {
		if el == "" || el == "." || el == ".." {
			return bad("path traversal")
		}
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; c < 0x20 || c == 0x7f {
			return bad("control character")
		}
	}
	return nil
}

func trunc(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}
