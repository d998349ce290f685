// Package fwctlcli is the fwctl command line: it parses flags, calls
// package repo and signer, and prints results. cmd/fwctl only calls Main.
package fwctlcli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/fwctl/fwctl/internal/cli"
	"github.com/fwctl/fwctl/manifests"
	"github.com/fwctl/fwctl/repo"
	"github.com/fwctl/fwctl/repo/blob"
	"github.com/fwctl/fwctl/signer"
)

// PassphraseEnv is the environment variable holding the key passphrase.
const PassphraseEnv = "FWCTL_PASSPHRASE"

type app struct {
	json      bool
	workspace string
	out       *cli.Output
}

// Main runs fwctl with os.Args and returns the exit code.
func Main() int {
	a := &app{}
	root := a.command()
	a.out = cli.Std(false)
	root.SetArgs(os.Args[1:])
	err := root.Execute()
	a.out.JSON = a.json
	var silent silentExit
	if errors.As(err, &silent) {
		return silent.code
	}
	if err != nil {
		return a.out.Fail(err)
	}
	return cli.ExitOK
}

func (a *app) command() *cobra.Command {
	root := &cobra.Command{
		Use:   "fwctl",
		Short: "Sign and publish firmware releases (offline release side of fwctl)",
		Long: `fwctl creates a signing workspace, records firmware images with their
hardware, version and security counter, and publishes a signed TUF repository
that fwrepo serves and fwagent verifies.

Key passphrases come from $` + PassphraseEnv + ` or a terminal prompt.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRun: func(*cobra.Command, []string) {
			a.out.JSON = a.json
		},
	}
	root.PersistentFlags().BoolVar(&a.json, "json", false, "print one JSON document instead of text")
	root.PersistentFlags().StringVarP(&a.workspace, "workspace", "w", envOr("FWCTL_WORKSPACE", "."), "signing workspace directory ($FWCTL_WORKSPACE)")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return cli.WithCode(cli.ExitUsage, err) })
	root.AddCommand(a.initCmd(), a.targetCmd(), a.publishCmd(), a.statusCmd(), a.verifyCmd())
	root.AddCommand(a.deltaCmd(), a.auditCmd())
	root.AddCommand(a.keyCmd(), a.ceremonyCmd(), a.delegateCmd(), a.checkExpiryCmd())
	return root
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func usage(err error) error { return cli.WithCode(cli.ExitUsage, err) }

func (a *app) open() (*repo.Workspace, error) {
	ws, err := repo.Open(a.workspace, signer.PassphraseSource(PassphraseEnv, "Key passphrase: ", false))
	if errors.Is(err, repo.ErrNotWorkspace) {
		return nil, usage(err)
	}
	return ws, err
}

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

func short(ids []string) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = id[:16]
	}
	return out
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
		d, err := repo.ParseDuration(v)
		if err != nil {
			return nil, fmt.Errorf("--expiry %s: %w", k, err)
		}
		out[k] = d
	}
	return out, nil
}

func (a *app) targetCmd() *cobra.Command {
	c := &cobra.Command{Use: "target", Short: "Add and list firmware targets"}
	var img imageFlags
	var deltaFrom int
	add := &cobra.Command{
		Use:   "add IMAGE",
		Short: "Hash a firmware image and stage it as a target for the next publish",
		Args:  cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			opt, err := img.options()
			if err != nil {
				return err
			}
			ws, err := a.open()
			if err != nil {
				return err
			}
			var done func()
			opt.Progress, done = a.out.Progress("hash " + filepath.Base(args[0]))
			t, err := ws.AddTarget(args[0], opt)
			done()
			if errors.Is(err, repo.ErrCounterRegression) || errors.Is(err, manifests.ErrInvalidTarget) {
				return usage(err)
			}
			if err != nil {
				return err
			}
			res := addResult{Target: t}
			if deltaFrom > 0 {
				if res.Deltas, err = a.addDeltas(ws, t, deltaFrom); err != nil {
					return err
				}
			}
			return a.out.Result(res, func(w io.Writer) {
				fmt.Fprintf(w, "Staged %s\n  version %s, counter %d, hardware %s\n  %d bytes, sha256 %s\n",
					t.Path, t.Firmware.Version, t.Firmware.Counter, strings.Join(t.Firmware.Hardware, ","), t.Length, t.SHA256)
				for _, d := range res.Deltas {
					fmt.Fprintf(w, "Staged delta %s\n  from %s: %d bytes (%.1f%% of the full image)\n", d.Path, d.Firmware.Base.SHA256[:16], d.Length, 100*float64(d.Length)/float64(max(t.Length, 1)))
				}
				fmt.Fprintln(w, "Run 'fwctl publish' to release it.")
			})
		},
	}
	img.register(add)
	add.Flags().IntVar(&deltaFrom, "delta-from", 0, "also stage deltas from the last N releases of this hardware")
	list := &cobra.Command{
		Use:   "list",
		Short: "List staged and published targets",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			ws, err := a.open()
			if err != nil {
				return err
			}
			ts, err := ws.Targets()
			if err != nil {
				return err
			}
			return a.out.Result(ts, func(w io.Writer) { printTargets(w, ts) })
		},
	}
	c.AddCommand(add, list)
	return c
}

// imageFlags are the flags that describe a firmware image, shared by
// 'target add' and 'delegate target'.
type imageFlags struct {
	opt     repo.AddOptions
	counter int64
}

func (f *imageFlags) register(c *cobra.Command) {
	c.Flags().StringSliceVar(&f.opt.Hardware, "hardware", nil, "hardware ID(s) this image is for (repeatable)")
	c.Flags().StringVar(&f.opt.Version, "version", "", "human version, e.g. 2.4.1")
	c.Flags().Int64Var(&f.counter, "counter", -1, "security counter: devices refuse images with a lower one")
	c.Flags().StringVar(&f.opt.Name, "name", "", "file name in the target path (default: the image's)")
	c.Flags().BoolVar(&f.opt.Force, "force", false, "allow a counter lower than an existing release for the hardware")
}

// options checks the required flags and returns the image's AddOptions.
func (f *imageFlags) options() (repo.AddOptions, error) {
	if len(f.opt.Hardware) == 0 || f.opt.Version == "" || f.counter < 0 {
		return f.opt, usage(errors.New("--hardware, --version and --counter (>= 0) are required"))
	}
	f.opt.Counter = uint64(f.counter)
	return f.opt, nil
}

func printTargets(w io.Writer, ts []repo.Target) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "HARDWARE\tVERSION\tCOUNTER\tSIZE\tTARGET")
	for _, t := range ts {
		if t.Firmware == nil {
			fmt.Fprintf(tw, "-\t-\t-\t%d\t%s\n", t.Length, t.Path)
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\n", strings.Join(t.Firmware.Hardware, ","), t.Firmware.Version, t.Firmware.Counter, t.Length, t.Path)
	}
	tw.Flush()
}

func (a *app) publishCmd() *cobra.Command {
	var out, rekorURL, s3Endpoint string
	var expiry []string
	c := &cobra.Command{
		Use:   "publish",
		Short: "Sign targets, snapshot and timestamp and write the repository atomically",
		Long: `Sign targets, snapshot and timestamp and write the repository atomically:
to a directory, or with --out s3://BUCKET/PREFIX to S3-compatible object
storage (images and versioned metadata first, timestamp.json last).`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			ctx := context.Background()
			exp, err := parseExpiry(expiry)
			if err != nil {
				return usage(err)
			}
			ws, err := a.open()
			if err != nil {
				return err
			}
			if out == "" {
				out = filepath.Join(ws.Dir, "repository")
			}
			opt := repo.PublishOptions{Expiry: exp}
			if a.out.Interactive() {
				opt.Progress = func(m string) { fmt.Fprintln(a.out.Err, m) }
			}
			// Object storage: publish into a local staging directory,
			// then upload it in a safe order.
			dir := out
			var store blob.Store
			if blob.IsURL(out) {
				if store, err = blob.Open(out, blob.Options{S3Endpoint: s3Endpoint}); err != nil {
					return usage(err)
				}
				if dir, err = repo.StageFrom(ctx, store); err != nil {
					return err
				}
				defer os.RemoveAll(dir)
			}
			var logged []repo.Logged
			if rekorURL != "" {
				if logged, err = ws.LogTargets(ctx, rekorURL); err != nil {
					return err
				}
			}
			res, err := ws.Publish(dir, opt)
			if err != nil {
				return err
			}
			if rekorURL != "" {
				l, err := ws.LogTargetsMetadata(ctx, rekorURL, dir, res.Versions[metadata.TARGETS])
				if err != nil {
					return err
				}
				logged = append(logged, *l)
			}
			var up *repo.UploadResult
			if store != nil {
				rerun := "fwctl " + strings.Join(os.Args[1:], " ")
				if up, err = repo.Upload(ctx, dir, store, rerun, repo.UploadOptions{Progress: opt.Progress, SignTimestamp: ws.SignTimestamp}); err != nil {
					return err
				}
				res.Out = out
			}
			full := struct {
				*repo.PublishResult
				Logged []repo.Logged      `json:"logged,omitempty"`
				Upload *repo.UploadResult `json:"upload,omitempty"`
			}{res, logged, up}
			return a.out.Result(full, func(w io.Writer) {
				fmt.Fprintf(w, "Published %d targets to %s\n", res.Targets, res.Out)
				for _, r := range repo.Roles {
					fmt.Fprintf(w, "  %-9s version %d\n", r, res.Versions[r])
				}
				for _, l := range logged {
					fmt.Fprintf(w, "  logged %s at index %d (proof %s)\n", l.Path, l.LogIndex, l.Bundle)
				}
				if up != nil {
					fmt.Fprintf(w, "  uploaded %d files, timestamp.json last (%d already there)\n", len(up.Uploaded), up.Skipped)
				}
			})
		},
	}
	c.Flags().StringVar(&rekorURL, "rekor", os.Getenv("FWCTL_REKOR_URL"), "record new images and this targets version in the Rekor log at URL ($FWCTL_REKOR_URL)")
	c.Flags().StringVarP(&out, "out", "o", "", "output repository: a directory (default WORKSPACE/repository) or s3://BUCKET/PREFIX (credentials from $AWS_ACCESS_KEY_ID, $AWS_SECRET_ACCESS_KEY)")
	c.Flags().StringVar(&s3Endpoint, "s3-endpoint", "", "S3 API endpoint for an s3:// --out, e.g. http://127.0.0.1:7070 (default $AWS_ENDPOINT_URL, else AWS)")
	c.Flags().StringSliceVar(&expiry, "expiry", nil, "override lifetimes for this publish, e.g. timestamp=1h")
	return c
}

func (a *app) statusCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show roles, keys, thresholds, versions, expiry and targets",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			ws, err := a.open()
			if err != nil {
				return err
			}
			st, err := ws.Status()
			if err != nil {
				return err
			}
			return a.out.Result(st, func(w io.Writer) {
				tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
				fmt.Fprintln(tw, "ROLE\tVERSION\tTHRESHOLD\tKEYS\tEXPIRES\t")
				for _, r := range st.Roles {
					exp := "never published"
					if !r.Expires.IsZero() {
						exp = r.Expires.Format(time.RFC3339)
					}
					fmt.Fprintf(tw, "%s\t%d\t%d of %d\t%s\t%s\t%s\n", r.Role, r.Version, r.Threshold, len(r.KeyIDs), strings.Join(short(r.KeyIDs), ","), exp, r.Warning)
				}
				tw.Flush()
				fmt.Fprintln(w)
				printTargets(w, st.Targets)
				printStatusExtra(w, st)
				if st.Unstaged > 0 {
					fmt.Fprintf(w, "\n%d target(s) staged but not published: run 'fwctl publish'\n", st.Unstaged)
				}
			})
		},
	}
}

func (a *app) verifyCmd() *cobra.Command {
	var rootFile, dir, s3Endpoint string
	c := &cobra.Command{
		Use:   "verify --root ROOT --repo DIR|s3://BUCKET/PREFIX|URL",
		Short: "Verify a published repository from a trusted root, as a device would",
		Long: `Verify a published repository from a trusted root, as a device would: a
directory, object storage (s3://BUCKET/PREFIX, credentials from
$AWS_ACCESS_KEY_ID and $AWS_SECRET_ACCESS_KEY) or a served repository
(http(s)://…, the URL devices use). Every file is read no further than the
length signed metadata records for it. Exit 3: the repository is refused;
exit 4: it could not be reached.`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			if rootFile == "" || dir == "" {
				return usage(errors.New("--root and --repo are required"))
			}
			root, src, err := openRepo(rootFile, dir, s3Endpoint)
			if err != nil {
				return err
			}
			res, err := repo.Verify(context.Background(), src, root, time.Now())
			if err != nil {
				return verifyError(dir, err)
			}
			return a.out.Result(res, func(w io.Writer) {
				fmt.Fprintf(w, "OK: %s verifies from %s (root v%d, targets v%d, snapshot v%d, timestamp v%d)\n\n", dir, rootFile,
					res.Versions[metadata.ROOT], res.Versions[metadata.TARGETS], res.Versions[metadata.SNAPSHOT], res.Versions[metadata.TIMESTAMP])
				if len(res.Delegated) > 0 {
					fmt.Fprintf(w, "Delegated roles verified: %d (%s)\n\n", len(res.Delegated), delegatedSummary(res.Delegated))
				}
				printTargets(w, res.Targets)
			})
		},
	}
	c.Flags().StringVar(&rootFile, "root", "", "trusted root.json (as provisioned on devices)")
	c.Flags().StringVar(&dir, "repo", "", "published repository: a directory, s3://BUCKET/PREFIX or http(s)://URL")
	c.Flags().StringVar(&s3Endpoint, "s3-endpoint", "", "S3 API endpoint for an s3:// --repo (default $AWS_ENDPOINT_URL, else AWS)")
	return c
}

// verifyError gives a failed verification of location its exit code: 4
// when the repository could not be reached (retry), 3 when it was refused.
func verifyError(location string, err error) error {
	if errors.Is(err, repo.ErrUnreachable) {
		return cli.WithCode(cli.ExitNetwork, fmt.Errorf("verify %s: %w", location, err))
	}
	return cli.WithCode(cli.ExitRefused, fmt.Errorf("verify %s: %w", location, err))
}

// delegatedSummary names the verified delegated roles with their versions,
// eliding the middle of a long list (hashed bins).
func delegatedSummary(roles []repo.VerifiedRole) string {
	var parts []string
	for i, r := range roles {
		if len(roles) > 8 && i == 3 {
			parts = append(parts, fmt.Sprintf("… %d more …", len(roles)-6))
		}
		if len(roles) <= 8 || i < 3 || i >= len(roles)-3 {
			parts = append(parts, fmt.Sprintf("%s v%d", r.Role, r.Version))
		}
	}
	return strings.Join(parts, ", ")
}

// openRepo reads the trusted root that verify and audit start from and opens
// the published repository they check: a directory, s3://BUCKET/PREFIX or
// an http(s) URL. Either failure is a usage error.
func openRepo(rootFile, dir, s3Endpoint string) ([]byte, repo.Source, error) {
	root, err := os.ReadFile(rootFile)
	if err != nil {
		return nil, nil, usage(err)
	}
	src, err := repo.OpenSource(dir, blob.Options{S3Endpoint: s3Endpoint})
	if err != nil {
		return nil, nil, usage(err)
	}
	return root, src, nil
}
