package manifests

import (
	"regexp"
	"strings"
	"testing"
)

// TestCharClassesMatchRegexps holds the hand-written checks to the regular
// expressions they replace, over edge cases and every short string of an
// alphabet that covers each class's boundaries.
func TestCharClassesMatchRegexps(t *testing.T) {
	checks := []struct {
		re string
		f  func(string) bool
	}{
		{`^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$`, ValidDeviceID},
		{`^[A-Za-z0-9_-]{16,128}$`, ValidNonce},
		{`^[A-Za-z0-9_-]{1,16}$`, func(s string) bool { return runOf(s, "_-", 1, 16) }},
		{`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`, ValidHardwareID},
		{`^[A-Za-z0-9][A-Za-z0-9.+_~-]{0,63}$`, ValidVersion},
		{`^-?(0|[1-9][0-9]*)$`, canonicalInteger},
	}
	alphabet := "aZ09._:-+~/ \x00\xff"
	var inputs []string
	var gen func(prefix string, n int)
	gen = func(prefix string, n int) {
		inputs = append(inputs, prefix)
		if n == 0 {
			return
		}
		for i := 0; i < len(alphabet); i++ {
			gen(prefix+alphabet[i:i+1], n-1)
		}
	}
	gen("", 3)
	for _, n := range []int{15, 16, 17, 63, 64, 65, 127, 128, 129, 130} {
		inputs = append(inputs, strings.Repeat("a", n), "-"+strings.Repeat("1", n), strings.Repeat("_", n))
	}
	inputs = append(inputs, "-0", "-", "00", "01", "10", "-10", "1.0.0", "é", "a\n")
	for _, c := range checks {
		re := regexp.MustCompile(c.re)
		for _, s := range inputs {
			if got, want := c.f(s), re.MatchString(s); got != want {
				t.Errorf("%s on %q: %v, regexp says %v", c.re, s, got, want)
			}
		}
	}
}
