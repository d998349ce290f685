package fwagentcli

import (
	"flag"
	"fmt"
	"io"
	"strings"
)

// printFlags writes a command's flags as its usage line spells them:
// "--name" (the flag package takes one dash or two), with a one-letter
// shorthand ("shorthand for --name") on the line of its long flag.
func printFlags(w io.Writer, fs *flag.FlagSet) {
	short := map[string]string{} // long name → shorthand
	fs.VisitAll(func(f *flag.Flag) {
		if long, ok := strings.CutPrefix(f.Usage, "shorthand for --"); ok {
			short[long] = f.Name
		}
	})
	fs.VisitAll(func(f *flag.Flag) {
		if strings.HasPrefix(f.Usage, "shorthand for --") && fs.Lookup(strings.TrimPrefix(f.Usage, "shorthand for --")) != nil {
			return
		}
		name := "    --" + f.Name
		if s := short[f.Name]; s != "" {
			name = "-" + s + ", --" + f.Name
		}
		typ, usage := flag.UnquoteUsage(f)
		if typ != "" {
			name += " " + typ
		}
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" {
			usage += fmt.Sprintf(" (default %q)", f.DefValue)
		}
		fmt.Fprintf(w, "  %s\n      \t%s\n", name, strings.ReplaceAll(usage, "\n", "\n      \t"))
	})
}
