package fwagentcli

import (
	"bytes"
	"flag"
	"strings"
	"testing"
)

// TestHelpSpellsLongFlags: every command's help lists its flags as the
// usage line writes them ("--config", "-c, --config"), never "-config"
// (issue 18: the help showed -config while the usage line said --json).
func TestHelpSpellsLongFlags(t *testing.T) {
	a := &app{}
	for _, c := range a.commands() {
		fs := flag.NewFlagSet(c.name, flag.ContinueOnError)
		a.globalFlags(fs)
		if c.flags != nil {
			c.flags(fs)
		}
		var b bytes.Buffer
		printFlags(&b, fs)
		out := b.String()
		for _, line := range strings.Split(out, "\n") {
			f := strings.TrimSpace(line)
			if strings.HasPrefix(f, "-") && !strings.HasPrefix(f, "--") && !strings.HasPrefix(f, "-c, --config") && !strings.HasPrefix(f, "-v, --verbose") {
				t.Errorf("fwagent %s -h: flag line %q is not spelled --NAME", c.name, f)
			}
		}
		for _, want := range []string{"-c, --config string", "-v, --verbose", "    --json"} {
			if !strings.Contains(out, want) {
				t.Errorf("fwagent %s -h lacks %q:\n%s", c.name, want, out)
			}
		}
	}
}
