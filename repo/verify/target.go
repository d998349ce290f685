package verify

import (
	"encoding/hex"
	"errors"
	"os"
	"sort"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/fwctl/fwctl/manifests"
	"github.com/fwctl/fwctl/repo/layout"
)

// ErrOutsideDelegation means a target path is not one a delegated role may
// sign.
var ErrOutsideDelegation = errors.New("target path outside the role's delegated paths")

// Target describes one firmware target.
type Target struct {
	Path     string              `json:"path"`
	Length   int64               `json:"length"`
	SHA256   string              `json:"sha256"`
	Firmware *manifests.Firmware `json:"fw"`
}

// ListTargets describes the targets of m, sorted by hardware, then
// counter, then path.
func ListTargets(m map[string]*metadata.TargetFiles) []Target {
	var out []Target
	for p, tf := range m {
		fw, _ := TargetFirmware(tf)
		out = append(out, Target{Path: p, Length: tf.Length, SHA256: hex.EncodeToString(tf.Hashes["sha256"]), Firmware: fw})
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Firmware != nil && b.Firmware != nil {
			if a.Firmware.Hardware[0] != b.Firmware.Hardware[0] {
				return a.Firmware.Hardware[0] < b.Firmware.Hardware[0]
			}
			if a.Firmware.Counter != b.Firmware.Counter {
				return a.Firmware.Counter < b.Firmware.Counter
			}
		}
		return a.Path < b.Path
	})
	return out
}

// TargetFirmware parses a target's firmware metadata (custom.fw); it wraps
// manifests.ErrNotFirmware for a target that carries none.
func TargetFirmware(tf *metadata.TargetFiles) (*manifests.Firmware, error) {
	if tf.Custom == nil {
		return nil, manifests.ErrNotFirmware
	}
	return manifests.ParseCustom(*tf.Custom)
}

// SortedTargetFiles returns the targets of m sorted by path, each with its
// Path set.
func SortedTargetFiles(m map[string]*metadata.TargetFiles) []*metadata.TargetFiles {
	var out []*metadata.TargetFiles
	for p, tf := range m {
		tf.Path = p
		out = append(out, tf)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out
}

// TargetFile is the repository file name of a target in a consistent
// snapshot: "targets/DIR/SHA256.NAME".
func TargetFile(tf *metadata.TargetFiles) string {
	return layout.TargetsDir + "/" + layout.HashedTarget(tf.Path, tf.Hashes["sha256"])
}

// DelegatedNames lists the delegated roles of a targets role: named roles,
// or every hashed bin, sorted.
func DelegatedNames(t *metadata.Metadata[metadata.TargetsType]) []string {
	d := t.Signed.Delegations
	if d == nil {
		return nil
	}
	var out []string
	for _, r := range d.Roles {
		out = append(out, r.Name)
	}
	if d.SuccinctRoles != nil {
		out = append(out, d.SuccinctRoles.GetRoles()...)
	}
	sort.Strings(out)
	return out
}

// VersionedFiles lists the files N.ROLE.json in dir, in version order.
func VersionedFiles(dir, role string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	names := make([]string, len(entries))
	for i, e := range entries {
		names[i] = e.Name()
	}
	return layout.SortVersioned(names, role), nil
}
