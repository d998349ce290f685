package fwctlcli

import (
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/fwctl/fwctl/internal/duration"
	"github.com/fwctl/fwctl/repo"
	"github.com/fwctl/fwctl/signer"
)

func (a *app) initCmd() *cobra.Command {
	var (
		alg       string
		rootKeys  int
		threshold int
		expiry    []string
		plaintext bool
		keys      []string
	)
	c := &cobra.Command{
		Use:   "init DIR",
		Short: "Create a new signing workspace with root, targets, snapshot and timestamp keys",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			exp, err := parseExpiry(expiry)
			if err != nil {
				return usage(err)
			}
			keyURIs, err := parseKeyFlags(keys)
			if err != nil {
				return usage(err)
			}
			if len(keyURIs["root"]) > 0 && !cmd.Flags().Changed("root-keys") {
				rootKeys = -1 // only the given root keys
			}
			opt := repo.InitOptions{Algorithm: alg, RootKeys: rootKeys, RootThreshold: threshold, Expiry: exp,
				InsecurePlaintext: plaintext, KeyURIs: keyURIs}
			if !plaintext {
				opt.Passphrase = signer.PassphraseSource(PassphraseEnv, "New key passphrase: ", true)
			}
			res, err := repo.Init(args[0], opt)
			if err != nil {
				return err
			}
			return a.out.Result(res, func(w io.Writer) {
				fmt.Fprintf(w, "Created workspace %s\n", res.Dir)
				for _, r := range repo.Roles {
					fmt.Fprintf(w, "  %-9s %s\n", r, strings.Join(short(res.Keys[r]), ", "))
				}
				if plaintext {
					fmt.Fprintln(w, "WARNING: private keys are stored UNENCRYPTED (--insecure-plaintext-keys)")
				}
				fmt.Fprintf(w, "Trusted root for devices: %s\n", filepath.Join(res.Dir, "metadata", "1.root.json"))
			})
		},
	}
	c.Flags().StringVar(&alg, "algorithm", signer.Ed25519, "key algorithm: ed25519 or ecdsa-p256")
	c.Flags().IntVar(&rootKeys, "root-keys", 1, "number of root keys to create")
	c.Flags().IntVar(&threshold, "root-threshold", 1, "root signatures required")
	c.Flags().StringSliceVar(&expiry, "expiry", nil, "metadata lifetime per role, e.g. root=365d,timestamp=24h")
	c.Flags().BoolVar(&plaintext, "insecure-plaintext-keys", false, "store private keys UNENCRYPTED (tests and throwaway demos only)")
	c.Flags().StringArrayVar(&keys, "key", nil, "use an existing key for a role instead of generating one: ROLE=URI (file:, pkcs11:, pub:PEMFILE); repeatable")
	return c
}

func parseExpiry(list []string) (map[string]time.Duration, error) {
	out := map[string]time.Duration{}
	for _, kv := range list {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return nil, fmt.Errorf("--expiry %q: want ROLE=DURATION, e.g. timestamp=24h", kv)
		}
		valid := false
		for _, r := range repo.Roles {
			valid = valid || r == k
		}
		if !valid {
			return nil, fmt.Errorf("--expiry %q: unknown role %q (root, targets, snapshot, timestamp)", kv, k)
		}
		d, err := duration.Positive(v)
		if err != nil {
			return nil, fmt.Errorf("--expiry %s: %w", k, err)
		}
		out[k] = d
	}
	return out, nil
}
