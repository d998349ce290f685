package cli

import (
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TestExitCodesInREADME holds the README's exit-code table to the
// constants: every code is documented, and the table lists no other.
func TestExitCodesInREADME(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, sec, ok := strings.Cut(string(b), "### Exit codes")
	if !ok {
		t.Fatal("README has no '### Exit codes' section")
	}
	sec, _, _ = strings.Cut(sec, "\n#")
	var documented []int
	for _, m := range regexp.MustCompile(`(?m)^\| (\d+) \|`).FindAllStringSubmatch(sec, -1) {
		n, _ := strconv.Atoi(m[1])
		documented = append(documented, n)
	}
	var want []int
	for _, c := range ExitCodes {
		want = append(want, c.Code)
	}
	if !slices.Equal(documented, want) {
		t.Fatalf("README documents exit codes %v, internal/cli defines %v", documented, want)
	}
}
