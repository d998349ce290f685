package cobragroups

import (
	"bytes"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/fwctl/fwctl/internal/cli"
)

func tree() (*cobra.Command, *bool) {
	ran := new(bool)
	root := &cobra.Command{Use: "fwx", SilenceErrors: true, SilenceUsage: true}
	key := &cobra.Command{Use: "key", Short: "keys"}
	key.AddCommand(&cobra.Command{Use: "generate", Run: func(*cobra.Command, []string) { *ran = true }})
	key.AddCommand(&cobra.Command{Use: "revoke", Run: func(*cobra.Command, []string) {}})
	root.AddCommand(key)
	root.AddCommand(&cobra.Command{Use: "status", Run: func(*cobra.Command, []string) {}})
	Strict(root)
	return root, ran
}

func TestStrict(t *testing.T) {
	for _, tt := range []struct {
		args []string
		code int
		out  string // in the error, or the output when code is 0
	}{
		{[]string{"key", "genrate"}, cli.ExitUsage, `unknown command "genrate" for "fwx key"; did you mean generate?`},
		{[]string{"key", "xyz"}, cli.ExitUsage, `unknown command "xyz" for "fwx key" (run 'fwx key --help'`},
		{[]string{"statsu"}, cli.ExitUsage, `did you mean status?`},
		{[]string{"key"}, cli.ExitOK, "generate"},
		{[]string{}, cli.ExitOK, "key"},
		{[]string{"key", "generate"}, cli.ExitOK, ""},
	} {
		root, ran := tree()
		var out bytes.Buffer
		root.SetOut(&out)
		root.SetArgs(tt.args)
		err := root.Execute()
		if got := cli.Code(err); got != tt.code {
			t.Errorf("%q: exit %d (%v), want %d", tt.args, got, err, tt.code)
			continue
		}
		text := out.String()
		if err != nil {
			text = err.Error()
		}
		if !strings.Contains(text, tt.out) {
			t.Errorf("%q: %q, want it to contain %q", tt.args, text, tt.out)
		}
		if len(tt.args) == 2 && tt.args[1] == "generate" && !*ran {
			t.Errorf("%q: the subcommand did not run", tt.args)
		}
	}
}
