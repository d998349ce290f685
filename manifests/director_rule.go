package manifests

import "fmt"

// DirectorTarget is one target of verified director targets metadata, as
// the device rule sees it: its path and its custom metadata.
type DirectorTarget struct {
	Path   string
	Custom []byte
}

// DirectorSet is a verified director metadata set (timestamp, snapshot,
// targets), as the device rule sees it. The agent's TUF client, the site
// mirror and the bundle builder each fill it from their own verified
// metadata and apply the same rule to it (DirectorPick).
type DirectorSet struct {
	// TargetsVersion is the targets metadata's version (for messages).
	TargetsVersion int64
	// Binding is the targets' signed "director" object (none in format 1).
	Binding []byte
	// HashChained reports that the timestamp lists the snapshot's hashes
	// and the snapshot the targets' (director format 2 binds the whole set
	// to the targets, and through them to the device).
	HashChained bool
	// Delegations reports that the targets delegate.
	Delegations bool
	// Targets are the targets' targets.
	Targets []DirectorTarget
}

// DirectorPick applies the device rule of director format 2 to a verified
// director set for device deviceID: the targets are bound to this device
// (also empty ones: another device's "nothing assigned" would otherwise
// freeze this one), the timestamp and snapshot are hash-chained down to
// them, and they name at most one target, without delegations, whose
// assignment is to this device. It returns the target and its assignment,
// or nil and nil when nothing is assigned. Errors wrap
// ErrInvalidAssignment or ErrUnsupportedSchema.
func DirectorPick(s DirectorSet, deviceID string) (*DirectorTarget, *Assignment, error) {
	b, err := ParseBinding(s.Binding)
	if err != nil {
		return nil, nil, fmt.Errorf("director targets v%d: %w", s.TargetsVersion, err)
	}
	if b.Device != deviceID {
		return nil, nil, fmt.Errorf("%w: director targets v%d are for device %q, this device is %q", ErrInvalidAssignment, s.TargetsVersion, b.Device, deviceID)
	}
	if !s.HashChained {
		return nil, nil, fmt.Errorf("%w: director timestamp or snapshot lists no hashes: not bound to the targets", ErrInvalidAssignment)
	}
	if len(s.Targets) == 0 {
		return nil, nil, nil
	}
	if len(s.Targets) > 1 || s.Delegations {
		return nil, nil, fmt.Errorf("%w: director targets v%d names %d targets (and delegations: %v); a device is assigned one release",
			ErrInvalidAssignment, s.TargetsVersion, len(s.Targets), s.Delegations)
	}
	t := s.Targets[0]
	a, err := ParseAssignment(t.Custom)
	if err != nil {
		return nil, nil, fmt.Errorf("director target %s: %w", t.Path, err)
	}
	if a.Device != deviceID {
		return nil, nil, fmt.Errorf("%w: director target %s is assigned to device %q, this device is %q", ErrInvalidAssignment, t.Path, a.Device, deviceID)
	}
	return &t, a, nil
}
