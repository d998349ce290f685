// Package layout is the one naming rule of a published fwctl repository:
// where metadata and targets live, how versioned metadata files are named,
// how a target's file is named in a consistent snapshot, which names are
// immutable once published, and how large each metadata file may be.
// fwctl, the blob stores, the HTTP source and fwrepo's server all decide
// names here, so a name one of them accepts is one all of them serve.
//
// It is a leaf: it imports only the standard library, and it never reads
// or writes a file.
package layout

import (
	"encoding/hex"
	"path"
	"sort"
	"strconv"
	"strings"
)

// Top-level directories of a published repository.
const (
	MetadataDir = "metadata"
	TargetsDir  = "targets"
)

// Timestamp is where a repository keeps its timestamp, the file every
// client reads first and the only metadata file replaced in place that
// names the rest.
const Timestamp = MetadataDir + "/timestamp.json"

// Size caps for metadata whose length no signed metadata records: the same
// as go-tuf's updater (and so a device) applies.
const (
	MaxRootLength      = 512000
	MaxTimestampLength = 16384
	MaxSnapshotLength  = 2000000
	MaxTargetsLength   = 5000000
	MaxBundleLength    = 1 << 20 // a transparency proof beside metadata (unsigned)
)

// Metadata returns the repository name of a metadata file ("metadata/NAME").
func Metadata(name string) string { return MetadataDir + "/" + name }

// Versioned returns the consistent-snapshot file name of a role's version:
// "N.ROLE.json".
func Versioned(version int64, role string) string {
	return strconv.FormatInt(version, 10) + "." + role + ".json"
}

// ParseVersioned splits a file name "N.ROLE.json" into its version and
// role. N is decimal digits without a leading zero, as Versioned writes it.
func ParseVersioned(name string) (version int64, role string, ok bool) {
	v, rest, found := strings.Cut(name, ".")
	role, isJSON := strings.CutSuffix(rest, ".json")
	if !found || !isJSON || role == "" || !decimal(v) {
		return 0, "", false
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n <= 0 {
		return 0, "", false
	}
	return n, role, true
}

func decimal(s string) bool {
	if s == "" || (len(s) > 1 && s[0] == '0') {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// SortVersioned returns the names of the form "N.ROLE.json" among names,
// in increasing version order.
func SortVersioned(names []string, role string) []string {
	type vf struct {
		v    int64
		name string
	}
	var list []vf
	for _, n := range names {
		if v, r, ok := ParseVersioned(n); ok && r == role {
			list = append(list, vf{v, n})
		}
	}
	sort.Slice(list, func(i, j int) bool { return list[i].v < list[j].v })
	out := make([]string, len(list))
	for i, f := range list {
		out[i] = f.name
	}
	return out
}

// HashedTarget is where a consistent-snapshot repository keeps a target,
// relative to TargetsDir: DIR/SHA256.NAME for target path DIR/NAME.
func HashedTarget(targetPath string, sha256 []byte) string {
	dir, name := path.Split(targetPath)
	return dir + hex.EncodeToString(sha256) + "." + name
}

// Immutable reports whether the repository file name (slash-separated,
// relative to the repository) never changes content once published: a
// versioned metadata file (or a bundle beside one) or a target. Such a file
// is served as cacheable forever, so a publish must never write different
// bytes under its name.
func Immutable(name string) bool {
	dir, base := path.Split(name)
	switch {
	case strings.HasPrefix(name, TargetsDir+"/"):
		return true
	case dir == MetadataDir+"/":
		v, _, ok := strings.Cut(base, ".")
		return ok && decimal(v)
	}
	return false
}
