package fwrepocli

import (
	"crypto"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/fwctl/fwctl/internal/cli"
	"github.com/fwctl/fwctl/internal/duration"
	"github.com/fwctl/fwctl/repo/blob"
	"github.com/fwctl/fwctl/repo/online/director"
	"github.com/fwctl/fwctl/signer"
)

// 'fwrepo director rotate' and 'fwrepo director refresh' (added to the
// director command in director.go).

func directorRotateCmd(jsonOut *bool) *cobra.Command {
	var (
		f                              directorFlags
		rootKeys, addRootKeys, genRoot []string
		revoke                         []string
		threshold                      int
		onlineKey, genOnline, out, alg string
		expires                        time.Duration
		plaintext                      bool
		tsLifetime                     time.Duration
	)
	c := &cobra.Command{
		Use:   "rotate --dir REPO --root-key KEY [--generate-online-key PATH | --online-key URI] [root key changes]",
		Short: "Rotate the director's online key or root keys: director root N+1 signed by N's and N+1's root keys, devices re-signed",
		Long: `Makes director root version N+1 from the newest root N in the store, signs it
with the --root-key keys and publishes it as director/metadata/N+1.root.json.
TUF's rule holds: N+1 is refused unless N's root threshold of N's root keys
and N+1's threshold of its own root keys signed it; nothing is written then.

With --generate-online-key or --online-key, N+1 names the new online key
(targets, snapshot, timestamp) instead of the old one, and every device's
director metadata is signed again with it and published: new versions,
targets and snapshot first, timestamp last; no published file is rewritten.
Devices follow the new root on their next poll (fwrepo's Fwctl-Root-Version
hint) and from then on refuse metadata signed by the old key.

Stop 'fwrepo serve --director-key' (or its rollout engine) before rotating
(one writer per director) and start it again with the new key: a fwrepo
serve still holding the rotated-out key refuses to sign and says so.
If the re-signing stops half way, 'fwrepo director refresh' (or fwrepo
serve) with the new key finishes it.

Without key changes, rotate renews the root's expiry (a new version).
Generated keys are encrypted: root keys with $` + signer.PassphraseEnv + `, online keys with
$` + PassphraseEnv + ` (or prompted); root keys are never printed and stay offline.`,
		Example: `  # a suspected compromise of the online key:
  fwrepo director rotate --dir /srv/fwrepo --root-key director-keys/root.key \
      --generate-online-key director-keys/online-2.key --out director-keys
  # replace the root key (v N+1 is signed by the old and the new key):
  fwrepo director rotate --dir /srv/fwrepo --root-key director-keys/root.key \
      --generate-root-key director-keys/root-2.key --revoke-root-key director-keys/root.key --out director-keys
  # root keys on an offline machine: rotate a copy of director/metadata/ there, naming the
  # server's new online key by its public key, then publish the root and re-sign on the server
  fwrepo director rotate --dir copy --root-key root.key --online-key online-2.pub --out director-keys
  fwrepo director publish-root --dir /srv/fwrepo director-keys/2.root.json
  fwrepo director refresh --dir /srv/fwrepo --director-key online-2.key
  # two of three root keys from now on (an HSM key and a colleague's public key added):
  fwrepo director rotate --dir /srv/fwrepo --root-key director-keys/root.key \
      --add-root-key 'pkcs11:token=director;object=root-2' --add-root-key alice-root.pub --root-threshold 2`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if f.dir == "" {
				return cli.WithCode(cli.ExitUsage, errors.New("--dir is required"))
			}
			if len(rootKeys)+len(addRootKeys)+len(genRoot) == 0 {
				return cli.WithCode(cli.ExitUsage, errors.New("--root-key is required: the director root key(s) that sign the new root ('fwrepo director init' made root.key)"))
			}
			if onlineKey != "" && genOnline != "" {
				return cli.WithCode(cli.ExitUsage, errors.New("--online-key and --generate-online-key exclude each other"))
			}
			st, err := blob.Open(f.dir, blob.Options{S3Endpoint: f.s3Endpoint})
			if err != nil {
				return cli.WithCode(cli.ExitUsage, err)
			}
			opt := director.Options{Store: st, TimestampLifetime: tsLifetime}
			if f.root != "" {
				if opt.TrustedRoot, err = os.ReadFile(f.root); err != nil {
					return cli.WithCode(cli.ExitUsage, fmt.Errorf("--director-root: %w", err))
				}
			}
			rot := director.Rotation{RootThreshold: threshold, Expires: expires, Out: out}
			var opened []crypto.Signer
			defer func() {
				for _, s := range opened {
					signer.Close(s)
				}
			}()
			openKey := func(flag, uri, env, prompt string) (crypto.Signer, error) {
				s, err := signer.Open(uri, signer.Options{Passphrase: signer.PassphraseSource(env, prompt+uri+": ", false)})
				if err != nil {
					return nil, cli.WithCode(cli.ExitUsage, fmt.Errorf("%s %s: %w", flag, uri, err))
				}
				opened = append(opened, s)
				return s, nil
			}
			for _, uri := range rootKeys {
				s, err := openKey("--root-key", uri, signer.PassphraseEnv, "Director root key passphrase for ")
				if err != nil {
					return err
				}
				rot.Signers = append(rot.Signers, s)
			}
			for _, uri := range addRootKeys {
				if pub, ok := publicOnly(uri); ok { // a public key: it does not sign here
					rot.AddRootKeys = append(rot.AddRootKeys, pub)
					continue
				}
				s, err := openKey("--add-root-key", uri, signer.PassphraseEnv, "Director root key passphrase for ")
				if err != nil {
					return err
				}
				rot.Signers = append(rot.Signers, s)
				rot.AddRootKeys = append(rot.AddRootKeys, s.Public())
			}
			for _, r := range revoke {
				id, err := revokeKeyID(r)
				if err != nil {
					return cli.WithCode(cli.ExitUsage, fmt.Errorf("--revoke-root-key %s: %w", r, err))
				}
				rot.RevokeRootKeys = append(rot.RevokeRootKeys, id)
			}
			if pub, ok := publicOnly(onlineKey); ok { // the private half is on the server: it re-signs there
				rot.OnlinePublic = pub
			} else if onlineKey != "" {
				if rot.Online, err = openKey("--online-key", onlineKey, PassphraseEnv, "Director key passphrase for "); err != nil {
					return err
				}
			}
			// Generated keys are saved (encrypted) before the root that
			// names them is published, and removed again if nothing was.
			var generated []string
			published := false
			defer func() {
				if !published {
					for _, p := range generated {
						os.Remove(p)
					}
				}
			}()
			gen := func(flag, path, role, env, prompt string) (crypto.Signer, error) {
				if _, err := os.Stat(path); err == nil {
					return nil, cli.WithCode(cli.ExitUsage, fmt.Errorf("%s %s: the file exists; refusing to overwrite a key", flag, path))
				}
				k, err := signer.Generate(alg)
				if err != nil {
					return nil, cli.WithCode(cli.ExitUsage, err)
				}
				var pw []byte
				if !plaintext {
					if pw, err = signer.PassphraseSource(env, prompt, true)(); err != nil {
						return nil, cli.WithCode(cli.ExitUsage, err)
					}
				}
				if _, err := signer.Save(path, role, k, pw); err != nil {
					return nil, err
				}
				generated = append(generated, path)
				return k, nil
			}
			for _, p := range genRoot {
				k, err := gen("--generate-root-key", p, "director-root", signer.PassphraseEnv, "New director root key passphrase: ")
				if err != nil {
					return err
				}
				rot.Signers = append(rot.Signers, k)
				rot.AddRootKeys = append(rot.AddRootKeys, k.Public())
			}
			if genOnline != "" {
				if rot.Online, err = gen("--generate-online-key", genOnline, "director-online", PassphraseEnv, "New director online key passphrase: "); err != nil {
					return err
				}
			}
			res, err := director.Rotate(cmd.Context(), opt, rot)
			published = res != nil
			if err != nil {
				switch {
				case errors.Is(err, director.ErrRotation):
					return cli.WithCode(cli.ExitRefused, err)
				case errors.Is(err, director.ErrRoot):
					return cli.WithCode(cli.ExitRefused, err)
				}
				return err
			}
			return cli.Std(*jsonOut).Result(res, func(w io.Writer) {
				fmt.Fprintf(w, "director root v%d published to %s (expires %s)\n", res.Version, f.dir, res.Expires)
				if res.Root != "" {
					fmt.Fprintf(w, "root:        %s\n", res.Root)
				}
				fmt.Fprintf(w, "root keys:   %d of %s\n", res.RootThreshold, strings.Join(res.RootKeyIDs, ", "))
				for _, id := range res.AddedRootKeys {
					fmt.Fprintf(w, "  added      %s\n", id)
				}
				for _, id := range res.RevokedRootKey {
					fmt.Fprintf(w, "  revoked    %s\n", id)
				}
				for _, p := range genRoot {
					fmt.Fprintf(w, "new root key %s — keep it offline\n", p)
				}
				if res.OldOnlineKeyID == "" {
					fmt.Fprintf(w, "online key:  %s (unchanged)\n", res.OnlineKeyID)
					return
				}
				fmt.Fprintf(w, "online key:  %s (was %s, now refused by devices that follow v%d)\n", res.OnlineKeyID, res.OldOnlineKeyID, res.Version)
				if rot.OnlinePublic != nil {
					fmt.Fprintf(w, "no device re-signed here: where the new online key is, run\n  fwrepo director refresh --dir REPO --director-key KEY\n(after 'fwrepo director publish-root' if this was a copy of the repository)\n")
				} else {
					fmt.Fprintf(w, "re-signed %d devices\n", res.Resigned)
					k := onlineKey
					if genOnline != "" {
						k = genOnline
					}
					fmt.Fprintf(w, "restart fwrepo serve with --director-key %s\n", k)
				}
				if plaintext {
					fmt.Fprintln(w, "WARNING: generated private keys are stored UNENCRYPTED (--insecure-plaintext-keys)")
				}
			})
		},
	}
	f.register(c, false)
	c.Flags().StringArrayVar(&rootKeys, "root-key", nil, "a root key that signs the new root (key file or pkcs11:/tpm: URI; repeatable, as many as the old root's threshold; passphrase in $"+signer.PassphraseEnv+")")
	c.Flags().StringArrayVar(&addRootKeys, "add-root-key", nil, "authorise this root key in the new root (key file or URI: it also signs; a PEM public key file: it does not) (repeatable)")
	c.Flags().StringArrayVar(&genRoot, "generate-root-key", nil, "generate a new root key file at this path, authorise it and sign with it (repeatable)")
	c.Flags().StringArrayVar(&revoke, "revoke-root-key", nil, "drop this root key from the new root: a key ID (8+ hex digits) or its key file/URI (repeatable; it may still sign this rotation)")
	c.Flags().IntVar(&threshold, "root-threshold", 0, "root threshold of the new root (default: unchanged)")
	c.Flags().StringVar(&onlineKey, "online-key", "", "replace the online key with this existing key (file, pkcs11: or tpm: URI) and re-sign every device; a PEM public key file names a key held elsewhere (re-sign there with 'fwrepo director refresh')")
	c.Flags().StringVar(&genOnline, "generate-online-key", "", "replace the online key with a new key file at this path and re-sign every device")
	c.Flags().StringVar(&out, "out", "", "also write N+1.root.json to this directory (the director key directory)")
	c.Flags().StringVar(&alg, "algorithm", signer.Ed25519, "algorithm of generated keys: ed25519 or ecdsa-p256")
	expires = 365 * 24 * time.Hour
	c.Flags().Var(duration.Flag{D: &expires}, "expires", "lifetime of the new director root")
	tsLifetime = director.DefaultTimestampLifetime
	c.Flags().Var(duration.Flag{D: &tsLifetime}, "director-timestamp-lifetime", "lifetime of the re-signed timestamps")
	c.Flags().BoolVar(&plaintext, "insecure-plaintext-keys", false, "store generated private keys UNENCRYPTED (tests and throwaway demos only)")
	return c
}

// publicOnly returns the public key of a PEM public key file (PATH,
// file:PATH or pub:PATH, as fwctl names them).
func publicOnly(uri string) (crypto.PublicKey, bool) {
	b, err := os.ReadFile(strings.TrimPrefix(strings.TrimPrefix(uri, "pub:"), "file:"))
	if err != nil || !strings.HasPrefix(string(b), "-----BEGIN PUBLIC KEY") {
		return nil, false
	}
	pub, err := signer.ParsePublicPEM(b)
	return pub, err == nil
}

// revokeKeyID returns the key ID r names: r itself (a key ID or prefix),
// or the key of the key file or URI r (its public half, no passphrase
// asked for a key file).
func revokeKeyID(r string) (string, error) {
	if _, err := os.Stat(r); err != nil && !strings.Contains(r, ":") {
		return r, nil
	}
	ref, err := signer.ParseRef(r)
	if err != nil {
		return "", err
	}
	pub, err := ref.Public(signer.Options{})
	if err != nil {
		return "", err
	}
	_, id, err := signer.TUFKey(pub)
	return id, err
}

func directorRefreshCmd(jsonOut *bool) *cobra.Command {
	var f directorFlags
	c := &cobra.Command{
		Use:   "refresh --dir REPO --director-key KEY",
		Short: "Re-sign director timestamps and targets that are due, and devices still signed by a rotated-out key (what fwrepo serve does periodically)",
		Example: `  # finish a rotation that stopped half way, or re-sign from cron without fwrepo serve:
  fwrepo director refresh --dir /srv/fwrepo --director-key director-keys/online-2.key`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			d, _, err := f.open(cmd.Context(), false)
			if err != nil {
				return err
			}
			defer d.Close()
			res, err := d.Refresh(cmd.Context())
			if err != nil {
				return err
			}
			out := map[string]int{"devices": res.Devices, "timestamps": res.Timestamps, "targets": res.Targets}
			return cli.Std(*jsonOut).Result(out, func(w io.Writer) {
				fmt.Fprintf(w, "%d devices: %d timestamps re-signed, %d re-published whole\n", res.Devices, res.Timestamps, res.Targets)
			})
		},
	}
	f.register(c, true)
	return c
}

func directorPublishRootCmd(jsonOut *bool) *cobra.Command {
	var f directorFlags
	c := &cobra.Command{
		Use:   "publish-root --dir REPO N.root.json...",
		Short: "Publish director root files (made by 'fwrepo director rotate' on another machine): each must follow the store's chain",
		Example: `  fwrepo director publish-root --dir /srv/fwrepo director-keys/2.root.json
  fwrepo director refresh --dir /srv/fwrepo --director-key director-keys/online-2.key`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if f.dir == "" {
				return cli.WithCode(cli.ExitUsage, errors.New("--dir is required"))
			}
			st, err := blob.Open(f.dir, blob.Options{S3Endpoint: f.s3Endpoint})
			if err != nil {
				return cli.WithCode(cli.ExitUsage, err)
			}
			var versions []int64
			for _, p := range args {
				b, err := os.ReadFile(p)
				if err != nil {
					return cli.WithCode(cli.ExitUsage, err)
				}
				v, err := director.PublishRoot(cmd.Context(), st, b)
				if err != nil {
					if errors.Is(err, director.ErrRoot) {
						return cli.WithCode(cli.ExitRefused, fmt.Errorf("%s: %w", p, err))
					}
					return fmt.Errorf("%s: %w", p, err)
				}
				versions = append(versions, v)
			}
			return cli.Std(*jsonOut).Result(map[string]any{"published": versions}, func(w io.Writer) {
				for _, v := range versions {
					fmt.Fprintf(w, "director root v%d published to %s\n", v, f.dir)
				}
			})
		},
	}
	c.Flags().StringVar(&f.dir, "dir", "", "published repository (a directory or s3://BUCKET/PREFIX)")
	c.Flags().StringVar(&f.s3Endpoint, "s3-endpoint", "", "S3 API endpoint for an s3:// --dir")
	return c
}
