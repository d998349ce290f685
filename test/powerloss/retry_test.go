package powerloss

import (
	"math/rand/v2"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/fwctl/fwctl/agent/policy"
)

// TestPowerLossRetry kills fwagent at random points of the two paths a
// failed release takes (issue 13): the refused reinstall ('fwagent update'
// after the trial of v2 fell back: it must change nothing) and the
// operator's 'fwagent update --retry' (a full install again). After every
// kill the device must boot a complete image, and the retry must go
// through on the next attempt.
func TestPowerLossRetry(t *testing.T) {
	fx := newFixture(t)
	base := t.TempDir()
	fx.updateTime = fx.calibrate(t, base, false)
	rng := rand.New(rand.NewPCG(seed(t), 13))
	allowed := map[string]string{fx.factory.sha256: "factory", fx.v1.sha256: "v1", fx.v2.sha256: "v2"}
	for _, lay := range layouts {
		t.Run(lay.name, func(t *testing.T) {
			d, err := fx.newDevice(t.TempDir(), "dev", lay)
			if err != nil {
				t.Fatal(err)
			}
			if err := d.provisionAndBoot(fx); err != nil {
				t.Fatal(err)
			}
			// v2 is installed into B and never confirmed: the device falls
			// back to A, and v2 is a failed release.
			if _, err := d.must([]int{exitInstalled}, "update"); err != nil {
				t.Fatal(err)
			}
			for s := ""; s != "A"; {
				if s, err = d.boot(); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := d.must([]int{exitOK}, "confirm"); err != nil {
				t.Fatal(err)
			}
			if st := d.state(); st == nil || !slices.ContainsFunc(st.Failed, func(f policy.Failure) bool { return f.SHA256 == fx.v2.sha256 }) {
				t.Fatalf("after the fallback the state records no failure of v2: %+v", st)
			}
			r := &result{}
			// The refused reinstall, killed anywhere, leaves the environment
			// and slot A as they were.
			for range 3 {
				env := d.envSnapshot()
				if _, err := d.killAfter(time.Duration(rng.Int64N(int64(50*time.Millisecond))), "update"); err != nil {
					t.Fatal(err)
				}
				if !d.envSnapshot().same(env) {
					t.Fatal("a refused reinstall, killed, changed the boot environment")
				}
				if !r.bootAndCheck(d, allowed) {
					t.Fatalf("after a killed refusal: %v", r.problems)
				}
				if b, _ := os.ReadFile(d.slotPath("A")); sha256hex(b) != fx.factory.sha256 {
					t.Fatal("slot A no longer holds the factory image")
				}
			}
			// The retry, killed at a random point of a throttled install.
			if err := d.setRepository(fx.slow); err != nil {
				t.Fatal(err)
			}
			for range 3 {
				if _, err := d.killAfter(time.Duration(rng.Int64N(int64(fx.updateTime))), "update", "--retry"); err != nil {
					t.Fatal(err)
				}
				if !r.bootAndCheck(d, allowed) {
					t.Fatalf("after a killed retry: %v", r.problems)
				}
				if _, err := d.must([]int{exitOK, exitState}, "confirm"); err != nil {
					t.Fatal(err)
				}
			}
			// The next attempt (with or without --retry, as recover decides)
			// ends on v2, confirmed.
			if err := fx.recover(d); err != nil {
				t.Fatal(err)
			}
		})
	}
}
