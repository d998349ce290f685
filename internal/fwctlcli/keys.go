package fwctlcli

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/fwctl/fwctl/internal/atomicfile"
	"github.com/fwctl/fwctl/repo"
	"github.com/fwctl/fwctl/signer"
)

// keyCmd: generate keys anywhere; add, revoke, rotate keys and change
// thresholds in a workspace (each a new root version, or a new targets
// version for a delegated role).
func (a *app) keyCmd() *cobra.Command {
	c := &cobra.Command{Use: "key", Short: "Generate keys; add, revoke and rotate role keys; change thresholds"}

	var alg, role, pubOut string
	var plaintext bool
	gen := &cobra.Command{
		Use:   "generate URI",
		Short: "Create a key: an encrypted file (file:PATH), a key in a PKCS#11 token (pkcs11:token=…;object=…) or in a TPM (tpm:DEVICE?handle=…)",
		Long: `Create a key where URI says. No workspace is needed: run it on the
air-gapped machine that will hold the key, and bring only the public key
(--public-out) to the workspace ('fwctl key add ROLE pub:FILE').
An existing key is never replaced: a key file that exists is refused, and a
TPM handle that already holds a key is reused (the output says so).
The passphrase comes from $` + PassphraseEnv + ` or a prompt, the PKCS#11 PIN
from $` + signer.PINEnv + ` or a prompt.`,
		Args: cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			var pw func() ([]byte, error)
			if !plaintext {
				pw = signer.PassphraseSource(PassphraseEnv, "New key passphrase: ", true)
			}
			info, pem, err := repo.GenerateKey(args[0], role, alg, pw, signer.Options{})
			if err != nil {
				return err
			}
			if pubOut != "" {
				if err := atomicfile.Write(pubOut, pem, 0o644); err != nil {
					return err
				}
			}
			return a.out.Result(info, func(w io.Writer) {
				if info.Reused {
					fmt.Fprintf(w, "Reused the existing %s key %s (it was already there; nothing was created or overwritten)\n  uri %s\n", info.Algorithm, info.KeyID, info.URI)
				} else {
					fmt.Fprintf(w, "Created %s key %s\n  uri %s\n", info.Algorithm, info.KeyID, info.URI)
				}
				if pubOut != "" {
					fmt.Fprintf(w, "  public key written to %s (add it with: fwctl key add ROLE pub:%s)\n", pubOut, pubOut)
				}
			})
		},
	}
	gen.Flags().StringVar(&alg, "algorithm", signer.Ed25519, "key algorithm: ed25519 or ecdsa-p256")
	gen.Flags().StringVar(&role, "role", "", "role recorded in a key file (informational)")
	gen.Flags().StringVar(&pubOut, "public-out", "", "also write the public key (PEM) to this file")
	gen.Flags().BoolVar(&plaintext, "insecure-plaintext-keys", false, "store the key file UNENCRYPTED (tests only)")

	var threshold int
	change := func(use, short string, args cobra.PositionalArgs, opt func(args []string) repo.RotateOptions) *cobra.Command {
		cmd := &cobra.Command{Use: use, Short: short, Args: args,
			RunE: func(_ *cobra.Command, args []string) error {
				ws, err := a.open()
				if err != nil {
					return err
				}
				o := opt(args)
				if threshold > 0 {
					o.Threshold = threshold
				}
				ch, err := ws.Rotate(args[0], o)
				if errors.Is(err, repo.ErrUnknownRole) {
					return usage(err)
				}
				if err != nil {
					return err
				}
				return a.out.Result(ch, func(w io.Writer) { printChange(w, ch) })
			}}
		return cmd
	}
	add := change("add ROLE URI...", "Authorise keys for a role (URI: file:, pkcs11:, or pub:PEMFILE for a key on another machine)",
		cobra.MinimumNArgs(2), func(args []string) repo.RotateOptions { return repo.RotateOptions{Add: args[1:]} })
	add.Flags().IntVar(&threshold, "threshold", 0, "also set the role's threshold")
	revoke := change("revoke ROLE KEYID...", "Remove keys from a role (a compromised or retired key)",
		cobra.MinimumNArgs(2), func(args []string) repo.RotateOptions { return repo.RotateOptions{Revoke: args[1:]} })
	revoke.Flags().IntVar(&threshold, "threshold", 0, "also set the role's threshold")
	var rotAdd, rotRevoke []string
	rotate := change("rotate ROLE --revoke KEYID --add URI", "Replace keys of a role in one new root version",
		cobra.ExactArgs(1), func([]string) repo.RotateOptions { return repo.RotateOptions{Add: rotAdd, Revoke: rotRevoke} })
	rotate.Flags().StringSliceVar(&rotAdd, "add", nil, "key URIs to add")
	rotate.Flags().StringSliceVar(&rotRevoke, "revoke", nil, "key IDs (or 8+ character prefixes) to remove")
	rotate.Flags().IntVar(&threshold, "threshold", 0, "also set the role's threshold")
	thr := &cobra.Command{Use: "threshold ROLE N", Short: "Change how many signatures a role needs", Args: cobra.ExactArgs(2),
		RunE: func(_ *cobra.Command, args []string) error {
			n, err := strconv.Atoi(args[1])
			if err != nil || n < 1 {
				return usage(fmt.Errorf("threshold %q: want a number >= 1", args[1]))
			}
			ws, err := a.open()
			if err != nil {
				return err
			}
			ch, err := ws.Rotate(args[0], repo.RotateOptions{Threshold: n})
			if errors.Is(err, repo.ErrUnknownRole) {
				return usage(err)
			}
			if err != nil {
				return err
			}
			return a.out.Result(ch, func(w io.Writer) { printChange(w, ch) })
		}}
	renew := &cobra.Command{Use: "renew-root", Short: "Stage a new root version with a fresh expiry", Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			ws, err := a.open()
			if err != nil {
				return err
			}
			v, err := ws.RenewRoot()
			if err != nil {
				return err
			}
			return a.out.Result(map[string]int64{"root_version": v}, func(w io.Writer) {
				fmt.Fprintf(w, "Staged root version %d with a fresh expiry.\nRun 'fwctl publish' (or the ceremony if root keys are offline).\n", v)
			})
		}}
	c.AddCommand(gen, add, revoke, rotate, thr, renew)
	return c
}

func printChange(w io.Writer, ch *repo.RootChange) {
	if ch.RootVersion > 0 {
		fmt.Fprintf(w, "Staged root version %d: %s is now %d of %d keys\n", ch.RootVersion, ch.Role, ch.Threshold, len(ch.KeyIDs))
	} else {
		fmt.Fprintf(w, "Staged delegation change: %s is now %d of %d keys\n", ch.Role, ch.Threshold, len(ch.KeyIDs))
	}
	for _, id := range ch.Added {
		fmt.Fprintf(w, "  + %s\n", id)
	}
	for _, id := range ch.Revoked {
		fmt.Fprintf(w, "  - %s (revoked)\n", id)
	}
	fmt.Fprintln(w, "Run 'fwctl publish'; if it lacks signatures, run the ceremony (fwctl ceremony export).")
}

// parseKeyFlags turns ROLE=URI flags into a map.
func parseKeyFlags(list []string) (map[string][]string, error) {
	out := map[string][]string{}
	for _, kv := range list {
		r, u, ok := strings.Cut(kv, "=")
		if !ok || u == "" {
			return nil, fmt.Errorf("--key %q: want ROLE=URI, e.g. root=pkcs11:token=release;object=root-1", kv)
		}
		out[r] = append(out[r], u)
	}
	return out, nil
}

// silentExit ends fwctl with a code after a command already printed its
// result (one JSON document under --json, no extra error document).
type silentExit struct{ code int }

func (e silentExit) Error() string { return "exit " + strconv.Itoa(e.code) }
