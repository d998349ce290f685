package fwagentcli

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fwctl/fwctl/internal/testenv"
)

// TestConformanceClockFollowsFaketime: the tuf-conformance suite tests
// expiry by running the client under libfaketime. Go's clock ignores it,
// so the conformance entry reads the time from the date command; this runs
// the test binary under faketime and checks the shift arrives. With
// time.Now() as the reference (the old code) the shift is lost.
func TestConformanceClockFollowsFaketime(t *testing.T) {
	if os.Getenv("FW_PRINT_REFTIME") == "1" {
		fmt.Printf("reftime=%d\n", referenceTime().Unix())
		return
	}
	faketime := testenv.LookPath(t, "faketime", "apt-get install faketime")
	self := []string{os.Args[0], "-test.run=^TestConformanceClockFollowsFaketime$"}
	if emu := os.Getenv("FW_EMULATOR"); emu != "" {
		// scripts/cross-test.sh: the host cannot exec this binary, its
		// emulator can (the date command it runs is the host's, under faketime).
		self = append([]string{emu}, self...)
	}
	cmd := exec.Command(faketime, append([]string{"-f", "+10d"}, self...)...)
	cmd.Env = append(os.Environ(), "FW_PRINT_REFTIME=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	_, v, ok := strings.Cut(string(out), "reftime=")
	if !ok {
		t.Fatalf("no reference time in %s", out)
	}
	v, _, _ = strings.Cut(v, "\n")
	sec, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	if shift := time.Until(time.Unix(sec, 0)); shift < 9*24*time.Hour || shift > 11*24*time.Hour {
		t.Fatalf("reference time is %s from now, want about 10 days (faketime +10d)", shift.Round(time.Hour))
	}
}
