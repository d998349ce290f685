package director

import (
	"fmt"
	"slices"

	"github.com/fwctl/fwctl/repo/verify"
)

// ForTarget returns the assignment of a verified image-repository target
// (verify.Result.Targets) to a device of the given hardware, with the
// length, hash and counter the device will compare with the image
// repository's own metadata.
func ForTarget(deviceID, hardware string, t verify.Target) (Assignment, error) {
	if t.Firmware == nil {
		return Assignment{}, fmt.Errorf("%w: %s is not a firmware image", ErrInvalid, t.Path)
	}
	if hardware == "" && len(t.Firmware.Hardware) == 1 {
		hardware = t.Firmware.Hardware[0]
	}
	if !slices.Contains(t.Firmware.Hardware, hardware) {
		return Assignment{}, fmt.Errorf("%w: %s is built for %v, not hardware %q", ErrInvalid, t.Path, t.Firmware.Hardware, hardware)
	}
	if t.Firmware.Kind != "full" {
		return Assignment{}, fmt.Errorf("%w: %s is a %s, a device is assigned full images", ErrInvalid, t.Path, t.Firmware.Kind)
	}
	return Assignment{DeviceID: deviceID, Hardware: hardware, TargetName: t.Path, Length: t.Length,
		Hashes: map[string]string{"sha256": t.SHA256}, Counter: t.Firmware.Counter}, nil
}
