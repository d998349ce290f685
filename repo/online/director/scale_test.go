package director

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"
)

// TestAssignWave signs and publishes a wave of devices and reports the
// time (issue 15: 10,000 devices in at most 10 s). The full 10,000 run
// with FWCTL_DIRECTOR_WAVE=10000 (make bench-fleet); the default is a
// quick 500 so that make test stays fast.
func TestAssignWave(t *testing.T) {
	n := 500
	if v := os.Getenv("FWCTL_DIRECTOR_WAVE"); v != "" {
		fmt.Sscan(v, &n)
	}
	d, _, _ := newDirector(t, nil)
	as := make([]Assignment, n)
	for i := range as {
		as[i] = assignment(fmt.Sprintf("device-%05d", i))
	}
	start := time.Now()
	if err := d.Assign(context.Background(), as); err != nil {
		t.Fatal(err)
	}
	el := time.Since(start)
	t.Logf("director: signed and published %d devices in %s (%.0f devices/s)", n, el.Round(time.Millisecond), float64(n)/el.Seconds())
	start = time.Now()
	ids := make([]string, n)
	for i := range ids {
		ids[i] = as[i].DeviceID
	}
	if err := d.Unassign(context.Background(), ids); err != nil {
		t.Fatal(err)
	}
	t.Logf("director: unassigned %d devices in %s", n, time.Since(start).Round(time.Millisecond))
}
