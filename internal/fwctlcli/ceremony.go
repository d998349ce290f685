package fwctlcli

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/fwctl/fwctl/internal/atomicfile"
	"github.com/fwctl/fwctl/internal/cli"
	"github.com/fwctl/fwctl/repo"
	"github.com/fwctl/fwctl/signer"
)

// ceremonyCmd is the offline signing ceremony: export a request, sign it on
// air-gapped machines, import the signatures.
func (a *app) ceremonyCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "ceremony",
		Short: "Offline threshold signing: export a request, sign it air-gapped, import the signatures",
		Long: `The offline signing ceremony.

  1. fwctl ceremony export -o request.json     (workspace: signs what its keys can)
  2. fwctl ceremony sign request.json --key URI -o sig-NAME.json
                                               (each air-gapped signer; no workspace, no network)
  3. fwctl ceremony import sig-*.json          (workspace)
  4. fwctl publish                             (refuses until every threshold is met)`,
	}
	var out string
	var showAll bool
	export := &cobra.Command{
		Use:   "export",
		Short: "Write a signing request for every role that lacks signatures",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			ws, err := a.open()
			if err != nil {
				return err
			}
			req, err := ws.ExportRequest()
			if err != nil {
				return err
			}
			b, err := json.MarshalIndent(req, "", "  ")
			if err != nil {
				return err
			}
			if err := atomicfile.Write(out, append(b, '\n'), 0o644); err != nil {
				return err
			}
			return a.out.Result(req, func(w io.Writer) {
				fmt.Fprintf(w, "Wrote signing request %s\n", out)
				printRequest(w, req, false)
				fmt.Fprintln(w, "Sign it where the keys live: fwctl ceremony sign", filepath.Base(out), "--key URI -o SIGFILE")
			})
		},
	}
	export.Flags().StringVarP(&out, "out", "o", "signing-request.json", "request file to write")

	show := &cobra.Command{
		Use:   "show REQUEST",
		Short: "Print what a signing request would sign (computed from its bytes)",
		Args:  cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			req, err := readRequest(args[0])
			if err != nil {
				return err
			}
			return a.out.Result(summaries(req, showAll), func(w io.Writer) { printRequest(w, req, showAll) })
		},
	}

	show.Flags().BoolVar(&showAll, "all", false, "list every target, not only those new since the previous version")

	var key, sigOut string
	var yes bool
	sign := &cobra.Command{
		Use:   "sign REQUEST --key URI -o SIGFILE",
		Short: "Review a signing request and sign it with one key (air-gapped; no workspace or network needed)",
		Args:  cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			if key == "" || sigOut == "" {
				return usage(errors.New("--key and -o are required"))
			}
			req, err := readRequest(args[0])
			if err != nil {
				return err
			}
			// The review comes first, from the bytes themselves.
			if !a.json {
				printRequest(os.Stdout, req, showAll)
			}
			if !yes {
				if !term.IsTerminal(int(os.Stdin.Fd())) {
					return usage(errors.New("review the summary above and confirm: run in a terminal to be asked, or pass --yes"))
				}
				fmt.Fprint(os.Stderr, "Sign this? Type 'yes': ")
				line, _ := bufio.NewReader(os.Stdin).ReadString('\n')
				if strings.TrimSpace(line) != "yes" {
					return errors.New("not signed")
				}
			}
			s, err := signer.Open(key, signer.Options{Passphrase: signer.PassphraseSource(PassphraseEnv, "Key passphrase: ", false)})
			if err != nil {
				return err
			}
			defer signer.Close(s)
			sf, err := repo.SignRequest(req, s)
			if err != nil {
				return cli.WithCode(cli.ExitUsage, err)
			}
			b, err := json.MarshalIndent(sf, "", "  ")
			if err != nil {
				return err
			}
			if err := atomicfile.Write(sigOut, append(b, '\n'), 0o644); err != nil {
				return err
			}
			return a.out.Result(sf, func(w io.Writer) {
				var roles []string
				for _, s := range sf.Signatures {
					roles = append(roles, fmt.Sprintf("%s v%d", s.Role, s.Version))
				}
				fmt.Fprintf(w, "Signed %s with key %s; signatures in %s\n", strings.Join(roles, ", "), sf.KeyID[:16], sigOut)
			})
		},
	}
	sign.Flags().StringVar(&key, "key", "", "signing key URI (file:PATH or pkcs11:token=…;object=…)")
	sign.Flags().StringVarP(&sigOut, "out", "o", "", "signature file to write")
	sign.Flags().BoolVar(&yes, "yes", false, "sign without asking (the summary is still printed)")
	sign.Flags().BoolVar(&showAll, "all", false, "list every target in the summary, not only new ones")

	imp := &cobra.Command{
		Use:   "import SIGFILE...",
		Short: "Verify signature files and add them to the pending metadata",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			ws, err := a.open()
			if err != nil {
				return err
			}
			var files []*repo.SignatureFile
			for _, f := range args {
				b, err := os.ReadFile(f)
				if err != nil {
					return usage(err)
				}
				var sf repo.SignatureFile
				if err := json.Unmarshal(b, &sf); err != nil {
					return usage(fmt.Errorf("%s: not a fwctl signature file: %w", f, err))
				}
				files = append(files, &sf)
			}
			res, err := ws.ImportSignatures(files...)
			if err != nil {
				return cli.WithCode(cli.ExitRefused, err)
			}
			return a.out.Result(res, func(w io.Writer) {
				for _, s := range res.Imported {
					fmt.Fprintf(w, "Imported %s v%d signature by %s\n", s.Role, s.Version, s.KeyID[:16])
				}
				if len(res.Missing) == 0 {
					fmt.Fprintln(w, "Every threshold is met: run 'fwctl publish'.")
					return
				}
				for _, m := range res.Missing {
					fmt.Fprintf(w, "Still missing: %s v%d has %d of %d by %s (%d more)\n", m.Role, m.Version, m.Have, m.Need, m.By, m.Need-m.Have)
				}
			})
		},
	}
	c.AddCommand(export, show, sign, imp)
	return c
}

func readRequest(path string) (*repo.Request, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, usage(err)
	}
	req, err := repo.ParseRequest(b)
	if err != nil {
		return nil, cli.WithCode(cli.ExitRefused, fmt.Errorf("%s: %w", path, err))
	}
	return req, nil
}

type roleSummary struct {
	Role    string         `json:"role"`
	Version int64          `json:"version"`
	SHA256  string         `json:"sha256"`
	Summary []string       `json:"summary"`
	Missing []repo.Missing `json:"missing"`
}

func summaries(req *repo.Request, all bool) []roleSummary {
	var out []roleSummary
	for _, rr := range req.Roles {
		out = append(out, roleSummary{rr.Role, rr.Version, rr.SHA256, rr.Summary(all), rr.Missing})
	}
	return out
}

func printRequest(w io.Writer, req *repo.Request, all bool) {
	for _, rr := range req.Roles {
		fmt.Fprintf(w, "== %s v%d (sha256 %s)\n", rr.Role, rr.Version, rr.SHA256)
		for _, l := range rr.Summary(all) {
			fmt.Fprintln(w, l)
		}
		for _, m := range rr.Missing {
			fmt.Fprintf(w, "  needs %d more signature(s) from %s (has %d of %d)\n", m.Need-m.Have, m.By, m.Have, m.Need)
		}
	}
}
