package sbom

import (
	"slices"
	"strings"
)

// Change is one component whose version differs between two SBOMs.
type Change struct {
	Key  string    `json:"key"`
	From Component `json:"from"`
	To   Component `json:"to"`
}

// DiffResult is what changed from one SBOM to the next.
type DiffResult struct {
	Added   []Component `json:"added"`
	Removed []Component `json:"removed"`
	Changed []Change    `json:"changed"`
}

// Empty reports whether the two SBOMs have the same components.
func (r DiffResult) Empty() bool {
	return len(r.Added) == 0 && len(r.Removed) == 0 && len(r.Changed) == 0
}

// Diff compares the components of a (older) and b (newer) by Key: a key
// with one version on each side whose versions differ is a change; other
// versions only in a are removed, only in b added. The order is stable
// (sorted by key, then version).
func Diff(a, b *Document) DiffResult {
	ga, gb := group(a), group(b)
	keys := make([]string, 0, len(ga)+len(gb))
	for k := range ga {
		keys = append(keys, k)
	}
	for k := range gb {
		if _, ok := ga[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	r := DiffResult{Added: []Component{}, Removed: []Component{}, Changed: []Change{}}
	for _, k := range keys {
		ca, cb := ga[k], gb[k]
		if len(ca) == 1 && len(cb) == 1 {
			if ca[0].Version != cb[0].Version {
				r.Changed = append(r.Changed, Change{Key: k, From: ca[0], To: cb[0]})
			}
			continue
		}
		for _, c := range ca {
			if !slices.ContainsFunc(cb, func(x Component) bool { return x.Version == c.Version }) {
				r.Removed = append(r.Removed, c)
			}
		}
		for _, c := range cb {
			if !slices.ContainsFunc(ca, func(x Component) bool { return x.Version == c.Version }) {
				r.Added = append(r.Added, c)
			}
		}
	}
	return r
}

func group(d *Document) map[string][]Component {
	m := map[string][]Component{}
	if d == nil {
		return m
	}
	for _, c := range d.Components {
		k := c.Key()
		m[k] = append(m[k], c)
	}
	for _, cs := range m {
		slices.SortFunc(cs, func(x, y Component) int { return strings.Compare(x.Version, y.Version) })
	}
	return m
}
