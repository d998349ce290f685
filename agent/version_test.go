package agent

import (
	"fmt"
	"strconv"
	"testing"
)

// TestLeadingInt holds leadingInt to what fmt.Sscanf(s, "%d", …) read
// before the agent stopped linking fmt's scanner (inputs without leading
// blanks: versions and file names never have them).
func TestLeadingInt(t *testing.T) {
	for _, s := range []string{"", "0", "7", "10", "10rc1", "rc1", "+5", "-3", "-", "+", "007x",
		"0x1F", "9223372036854775807", "9223372036854775808", "-9223372036854775808",
		"99999999999999999999", "2147483648", "5.root.json", "5.root.json.root.json", "a5"} {
		for _, bits := range []int{strconv.IntSize, 64} {
			var want int64
			var err error
			if bits == 64 {
				_, err = fmt.Sscanf(s, "%d", &want)
			} else {
				var w int
				_, err = fmt.Sscanf(s, "%d", &w)
				want = int64(w)
			}
			got, _, ok := leadingInt(s, bits)
			if ok != (err == nil) || (ok && got != want) {
				t.Errorf("leadingInt(%q, %d) = %d, %v; fmt.Sscanf gives %d, %v", s, bits, got, ok, want, err)
			}
		}
	}
}
