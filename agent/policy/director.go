package policy

import (
	"errors"
	"fmt"
	"slices"
)

// ErrDirectorDisagrees means the director assigned a release the image
// repository did not sign as assigned: an unknown target, or another
// length, hash, hardware or counter. Uptane's rule is that both must
// agree; a compromised director key alone cannot install anything.
var ErrDirectorDisagrees = errors.New("the director and the image repository disagree")

// Assigned is what the director's verified metadata assigns this device.
type Assigned struct {
	Path     string
	Length   int64
	Hashes   map[string]string // hex by algorithm
	Hardware string
	Counter  uint64
}

// Agree returns the image repository's offer of the director's assignment
// when both agree: the same target path, a full firmware image for this
// device's hardware (which the assignment names too), the same length and
// counter, a sha256 in both and equal, and every other hash both list
// equal. Anything else wraps ErrDirectorDisagrees.
func Agree(offers []Offer, as *Assigned, hardware string) (*Offer, error) {
	bad := func(format string, args ...any) (*Offer, error) {
		return nil, fmt.Errorf("%w: the director assigns %s, %s; not installed", ErrDirectorDisagrees, as.Path, fmt.Sprintf(format, args...))
	}
	var o *Offer
	for i := range offers {
		if offers[i].Path == as.Path {
			o = &offers[i]
		}
	}
	switch {
	case o == nil:
		return bad("which the image repository does not list")
	case o.Invalid != nil || o.FW == nil:
		return bad("which the image repository does not list as firmware")
	case as.Hardware != hardware:
		return bad("for hardware %s, this device is %s", as.Hardware, hardware)
	case !slices.Contains(o.FW.Hardware, hardware):
		return bad("which the image repository signed for %v, not %s", o.FW.Hardware, hardware)
	case o.FW.Kind != "full":
		return bad("which is a %s", o.FW.Kind)
	case as.Length != o.Length:
		return bad("with length %d, the image repository signed %d", as.Length, o.Length)
	case as.Counter != o.FW.Counter:
		return bad("with counter %d, the image repository signed %d", as.Counter, o.FW.Counter)
	case as.Hashes["sha256"] == "" || as.Hashes["sha256"] != o.SHA256:
		return bad("with sha256 %.16s…, the image repository signed %.16s…", as.Hashes["sha256"], o.SHA256)
	}
	for alg, h := range as.Hashes {
		if theirs, ok := o.Hashes[alg]; ok && theirs != h {
			return bad("with %s %.16s…, the image repository signed %.16s…", alg, h, theirs)
		}
	}
	return o, nil
}
