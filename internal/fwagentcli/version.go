package fwagentcli

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/fwctl/fwctl/internal/cli"
)

func (a *app) versionCmd() *command {
	return &command{
		name:  "version",
		short: "Print the version, commit and Go version this binary was built from",
		long:  "Also 'fwagent --version'. With --json: program, version, commit, date, modified, go_version, platform.",
		run: noArgs("version", func() error {
			return a.out.Result(cli.Version("fwagent"), func(w io.Writer) { fmt.Fprintln(w, cli.Version("fwagent")) })
		}),
	}
}

// versionFlag reports whether the global flags (those before the command)
// ask for --version, and prints it if so.
func (a *app) versionFlag(args []string) bool {
	var want, asJSON bool
	for _, arg := range args {
		if !strings.HasPrefix(arg, "-") {
			break
		}
		switch strings.TrimLeft(arg, "-") {
		case "version":
			want = true
		case "json":
			asJSON = true
		}
	}
	if !want {
		return false
	}
	if asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		enc.Encode(cli.Version("fwagent"))
	} else {
		fmt.Println(cli.Version("fwagent"))
	}
	return true
}

// flagNames lists the long flags cmd accepts (global ones included).
func (a *app) flagNames(c *command) []string {
	fs := flag.NewFlagSet(c.name, flag.ContinueOnError)
	a.globalFlags(fs)
	if c.flags != nil {
		c.flags(fs)
	}
	var names []string
	fs.VisitAll(func(f *flag.Flag) {
		if len(f.Name) > 1 {
			names = append(names, "--"+f.Name)
		}
	})
	sort.Strings(names)
	return names
}

func (a *app) completionCmd() *command {
	return &command{
		name:  "completion",
		args:  "bash|zsh|fish",
		short: "Print a shell completion script (commands and their flags)",
		long: `Load it in the current shell, or install it for every session:
  source <(fwagent completion bash)
  fwagent completion bash > /usr/share/bash-completion/completions/fwagent
  fwagent completion zsh  > "${fpath[1]}/_fwagent"
  fwagent completion fish > ~/.config/fish/completions/fwagent.fish`,
		run: func(args []string) error {
			if len(args) != 1 {
				return cli.WithCode(cli.ExitUsage, fmt.Errorf("completion takes one shell: bash, zsh or fish"))
			}
			return a.writeCompletion(os.Stdout, args[0])
		},
	}
}

func (a *app) writeCompletion(w io.Writer, shell string) error {
	cmds := a.commands()
	switch shell {
	case "bash", "zsh":
		if shell == "zsh" {
			fmt.Fprintln(w, "#compdef fwagent\nautoload -U +X bashcompinit && bashcompinit")
		}
		fmt.Fprint(w, "_fwagent() {\n  local cur=${COMP_WORDS[COMP_CWORD]} cmd=\"\" skip=\"\" w\n")
		// The command is the first word that is neither a flag nor the
		// value of -c/--config.
		fmt.Fprint(w, "  for w in \"${COMP_WORDS[@]:1:COMP_CWORD-1}\"; do\n    if [ -n \"$skip\" ]; then skip=; continue; fi\n")
		fmt.Fprint(w, "    case $w in -c|-config|--config) skip=1;; -*) ;; *) cmd=$w; break;; esac\n  done\n  case $cmd in\n")
		var names []string
		for _, c := range cmds {
			names = append(names, c.name)
			fmt.Fprintf(w, "    %s) COMPREPLY=($(compgen -W %q -- \"$cur\"));;\n", c.name, strings.Join(a.flagNames(c), " "))
		}
		fmt.Fprintf(w, "    *) COMPREPLY=($(compgen -W %q -- \"$cur\"));;\n  esac\n}\ncomplete -o default -F _fwagent fwagent\n",
			strings.Join(append(names, "--json", "--config", "--verbose", "--version"), " "))
	case "fish":
		for _, c := range cmds {
			fmt.Fprintf(w, "complete -c fwagent -n __fish_use_subcommand -f -a %s -d %q\n", c.name, c.short)
			for _, f := range a.flagNames(c) {
				fmt.Fprintf(w, "complete -c fwagent -n '__fish_seen_subcommand_from %s' -l %s\n", c.name, strings.TrimPrefix(f, "--"))
			}
		}
	default:
		return cli.WithCode(cli.ExitUsage, fmt.Errorf("completion: unknown shell %q (bash, zsh or fish)", shell))
	}
	return nil
}
