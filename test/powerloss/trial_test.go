package powerloss

import (
	"os"
	"testing"
)

// exitState is fwagent's exit code for "device state forbids it now".
const exitState = 5

// TestUpdateDuringTrialKeepsFallback: while a freshly installed slot runs
// its unconfirmed trial, the previous slot is its only fallback. An update
// must not overwrite it (and must not end the trial, which the bootcount
// scheme's Disable does): otherwise a power cut mid-write, or a trial slot
// that never confirms, leaves the device with no complete image to fall
// back to.
func TestUpdateDuringTrialKeepsFallback(t *testing.T) {
	fx := newFixture(t)
	for _, lay := range layouts {
		t.Run(lay.name, func(t *testing.T) {
			d, err := fx.newDevice(t.TempDir(), "dev", lay)
			if err != nil {
				t.Fatal(err)
			}
			if err := d.provisionAndBoot(fx); err != nil {
				t.Fatal(err)
			}
			if _, err := d.must([]int{exitInstalled}, "update", "--target", fx.v1Target); err != nil {
				t.Fatal(err)
			}
			if s, err := d.boot(); err != nil || s != "B" {
				t.Fatalf("trial boot chose %q (%v), want B", s, err)
			}
			env := d.envSnapshot()
			// v2 is published; the trial of v1 is not confirmed yet.
			if _, err := d.must([]int{exitState}, "update"); err != nil {
				t.Fatalf("update during an unconfirmed trial: %v", err)
			}
			if b, _ := os.ReadFile(d.slotPath("A")); sha256hex(b) != fx.factory.sha256 {
				t.Fatal("the update overwrote slot A, the trial's only fallback")
			}
			if !d.envSnapshot().same(env) {
				t.Fatal("the refused update changed the boot environment")
			}
			// The trial never confirms: the bootloader falls back to A.
			var boots []string
			for range 4 {
				s, err := d.boot()
				if err != nil {
					t.Fatal(err)
				}
				boots = append(boots, s)
			}
			if boots[len(boots)-1] != "A" {
				t.Fatalf("an unconfirmed trial booted %v: it never fell back to A", boots)
			}
			// Back on A, the update goes ahead (into B again).
			if _, err := d.must([]int{exitOK}, "confirm"); err != nil {
				t.Fatal(err)
			}
			if _, err := d.must([]int{exitInstalled}, "update"); err != nil {
				t.Fatal(err)
			}
		})
	}
}
