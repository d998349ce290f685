package fwrepocli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/fwctl/fwctl/internal/cli"
	"github.com/fwctl/fwctl/internal/duration"
	"github.com/fwctl/fwctl/manifests"
	"github.com/fwctl/fwctl/repo/blob"
	"github.com/fwctl/fwctl/repo/online/director"
	"github.com/fwctl/fwctl/repo/verify"
	"github.com/fwctl/fwctl/signer"
)

func init() {
	registerCommand(directorCmd)
	registerServeMount(serveMount{name: "director", flags: directorServeFlags, mount: mountDirector})
}

// The serve flags of the director mount.
var directorServe struct {
	key, root string
	lifetime  time.Duration
}

// servedDirector is the director 'fwrepo serve --director-key' opened.
var servedDirector atomic.Pointer[director.Director]

// serveDirector returns the director fwrepo serve opened (nil without
// --director-key). Mounts that come after the director's (rollouts, the
// operator API) call it from their mount function.
func serveDirector() *director.Director { return servedDirector.Load() }

func directorServeFlags(fs *pflag.FlagSet) {
	fs.StringVar(&directorServe.key, "director-key", "", "online director key (key file or file:, pkcs11:, tpm: URI, passphrase in $"+PassphraseEnv+"): enables the director (per-device metadata under /director/, timestamps re-signed before they expire); see 'fwrepo director init'")
	fs.StringVar(&directorServe.root, "director-root", "", "director root the store's director root chain must verify from (the 1.root.json devices are provisioned with; published to the store if it has none) (default: the store's director/metadata/1.root.json)")
	directorServe.lifetime = director.DefaultTimestampLifetime
	fs.Var(duration.Flag{D: &directorServe.lifetime}, "director-timestamp-lifetime", "lifetime of director timestamps; re-signed when less than half is left")
}

// mountDirector serves /director/ read-only from the store (always: a
// director run by 'fwrepo director assign' elsewhere is served too) and,
// with --director-key, opens the director and re-signs its timestamps.
func mountDirector(env serveEnv, next http.Handler) (http.Handler, func() error, error) {
	h := director.Handler(env.Store, next)
	if directorServe.key == "" {
		return h, nil, nil
	}
	opt := director.Options{Store: env.Store, KeyURI: directorServe.key, Log: env.Log, TimestampLifetime: directorServe.lifetime,
		KeyOptions: signer.Options{Passphrase: signer.PassphraseSource(PassphraseEnv, "Director key passphrase: ", false)}}
	if directorServe.root != "" {
		b, err := os.ReadFile(directorServe.root)
		if err != nil {
			return nil, nil, cli.WithCode(cli.ExitUsage, fmt.Errorf("--director-root: %w", err))
		}
		opt.TrustedRoot = b
	}
	d, err := director.Open(env.Ctx, opt)
	if err != nil {
		return nil, nil, cli.WithCode(cli.ExitUsage, err)
	}
	servedDirector.Store(d)
	env.Log.Info("director enabled", "keyid", d.KeyID(), "root_version", d.RootVersion())
	ctx, cancel := context.WithCancel(env.Ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		refreshLoop(ctx, env.Log, d, min(max(directorServe.lifetime/8, time.Second), time.Minute))
	}()
	return h, func() error {
		cancel()
		<-done
		servedDirector.Store(nil)
		d.Close()
		return nil
	}, nil
}

func refreshLoop(ctx context.Context, log *slog.Logger, d *director.Director, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		res, err := d.Refresh(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			log.Error("director: re-signing failed", "err", err)
		case res.Timestamps+res.Targets > 0:
			log.Info("director: re-signed", "devices", res.Devices, "timestamps", res.Timestamps, "targets", res.Targets)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func directorCmd(jsonOut *bool) *cobra.Command {
	c := &cobra.Command{
		Use:   "director",
		Short: "Uptane-style director: per-device metadata naming what each device may install",
		Example: `  fwrepo director init --out director-keys --dir /srv/fwrepo
  fwrepo director assign --dir /srv/fwrepo --director-key director-keys/online.key DEVICE_ID --target acme-gw-v2/2.4.1/firmware.img
  fwrepo director status --dir /srv/fwrepo`,
		Args: cobra.NoArgs,
	}
	c.AddCommand(directorInitCmd(jsonOut), directorAssignCmd(jsonOut), directorUnassignCmd(jsonOut), directorStatusCmd(jsonOut),
		directorRotateCmd(jsonOut), directorRefreshCmd(jsonOut), directorPublishRootCmd(jsonOut))
	return c
}

func directorInitCmd(jsonOut *bool) *cobra.Command {
	var (
		out, dir, onlineKey, alg, s3Endpoint string
		expires                              time.Duration
		plaintext                            bool
	)
	c := &cobra.Command{
		Use:   "init --out DIR",
		Short: "Create a director root: an offline root key, an online director key and 1.root.json (devices are provisioned with it)",
		Example: `  # passphrases from $FWCTL_PASSPHRASE (root key) and $FWREPO_PASSPHRASE (online key), or prompted
  fwrepo director init --out director-keys --dir /srv/fwrepo
  # authorise an online key in a PKCS#11 token instead of generating online.key
  fwrepo director init --out director-keys --online-key 'pkcs11:token=fwrepo;object=director'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return cli.WithCode(cli.ExitUsage, errors.New("--out is required"))
			}
			opt := director.InitOptions{Out: out, Algorithm: alg, Expires: expires}
			if !plaintext {
				var err error
				if opt.RootPassphrase, err = signer.PassphraseSource(signer.PassphraseEnv, "Director root key passphrase: ", true)(); err != nil {
					return cli.WithCode(cli.ExitUsage, err)
				}
				if onlineKey == "" {
					if opt.OnlinePassphrase, err = signer.PassphraseSource(PassphraseEnv, "Director online key passphrase: ", true)(); err != nil {
						return cli.WithCode(cli.ExitUsage, err)
					}
				}
			}
			if onlineKey != "" {
				k, err := signer.Open(onlineKey, signer.Options{Passphrase: signer.PassphraseSource(PassphraseEnv, "Director key passphrase: ", false)})
				if err != nil {
					return cli.WithCode(cli.ExitUsage, fmt.Errorf("--online-key: %w", err))
				}
				defer signer.Close(k)
				opt.OnlineKey = k
			}
			res, err := director.Init(opt)
			if err != nil {
				return err
			}
			if dir != "" {
				st, err := blob.Open(dir, blob.Options{S3Endpoint: s3Endpoint})
				if err != nil {
					return cli.WithCode(cli.ExitUsage, err)
				}
				b, err := os.ReadFile(res.Root)
				if err != nil {
					return err
				}
				if _, err := director.PublishRoot(cmd.Context(), st, b); err != nil {
					return err
				}
			}
			return cli.Std(*jsonOut).Result(res, func(w io.Writer) {
				fmt.Fprintf(w, "director root: %s (expires %s)\nroot key:      %s (%s) — keep it offline\n", res.Root, res.Expires, res.RootKey, res.RootKeyID)
				if res.OnlineKey != "" {
					fmt.Fprintf(w, "online key:    %s (%s) — for 'fwrepo serve --director-key'\n", res.OnlineKey, res.OnlineKeyID)
				} else {
					fmt.Fprintf(w, "online key:    %s (%s)\n", onlineKey, res.OnlineKeyID)
				}
				if plaintext {
					fmt.Fprintln(w, "WARNING: private keys are stored UNENCRYPTED (--insecure-plaintext-keys)")
				}
				if dir != "" {
					fmt.Fprintf(w, "published to %s under %s/\n", dir, manifests.DirectorRoot)
				}
				fmt.Fprintf(w, "provision devices with it: \"director\": {\"root\": \"%s\"} in fwagent's config\n", res.Root)
			})
		},
	}
	c.Flags().StringVar(&out, "out", "", "directory for root.key, online.key and 1.root.json (created 0700)")
	c.Flags().StringVar(&dir, "dir", "", "also publish 1.root.json to this repository (a directory or s3://BUCKET/PREFIX)")
	c.Flags().StringVar(&s3Endpoint, "s3-endpoint", "", "S3 API endpoint for an s3:// --dir")
	c.Flags().StringVar(&onlineKey, "online-key", "", "authorise this existing online key (file, pkcs11: or tpm: URI) instead of generating online.key")
	c.Flags().StringVar(&alg, "algorithm", signer.Ed25519, "key algorithm: ed25519 or ecdsa-p256")
	expires = 365 * 24 * time.Hour
	c.Flags().Var(duration.Flag{D: &expires}, "expires", "lifetime of the director root")
	c.Flags().BoolVar(&plaintext, "insecure-plaintext-keys", false, "store private keys UNENCRYPTED (tests and throwaway demos only); otherwise passphrases from $"+signer.PassphraseEnv+" (root) and $"+PassphraseEnv+" (online)")
	return c
}

// directorFlags are the flags of the commands that open a director.
type directorFlags struct {
	dir, key, root, s3Endpoint string
}

func (f *directorFlags) register(c *cobra.Command, withKey bool) {
	c.Flags().StringVar(&f.dir, "dir", "", "published repository (a directory or s3://BUCKET/PREFIX) holding the director under director/")
	c.Flags().StringVar(&f.s3Endpoint, "s3-endpoint", "", "S3 API endpoint for an s3:// --dir")
	c.Flags().StringVar(&f.root, "director-root", "", "director root the chain must verify from (default: the store's director/metadata/1.root.json)")
	if withKey {
		c.Flags().StringVar(&f.key, "director-key", "", "online director key (key file or file:, pkcs11:, tpm: URI; passphrase in $"+PassphraseEnv+")")
	}
}

func (f *directorFlags) open(ctx context.Context, readOnly bool) (*director.Director, blob.Store, error) {
	if f.dir == "" {
		return nil, nil, cli.WithCode(cli.ExitUsage, errors.New("--dir is required"))
	}
	if !readOnly && f.key == "" {
		return nil, nil, cli.WithCode(cli.ExitUsage, errors.New("--director-key is required"))
	}
	st, err := blob.Open(f.dir, blob.Options{S3Endpoint: f.s3Endpoint})
	if err != nil {
		return nil, nil, cli.WithCode(cli.ExitUsage, err)
	}
	opt := director.Options{Store: st, KeyURI: f.key, ReadOnly: readOnly,
		KeyOptions: signer.Options{Passphrase: signer.PassphraseSource(PassphraseEnv, "Director key passphrase: ", false)}}
	if f.root != "" {
		if opt.TrustedRoot, err = os.ReadFile(f.root); err != nil {
			return nil, nil, cli.WithCode(cli.ExitUsage, fmt.Errorf("--director-root: %w", err))
		}
	}
	d, err := director.Open(ctx, opt)
	if err != nil {
		return nil, nil, cli.WithCode(cli.ExitUsage, err)
	}
	return d, st, nil
}

func directorAssignCmd(jsonOut *bool) *cobra.Command {
	var (
		f                 directorFlags
		target, hardware  string
		imageRoot         string
		windows, timezone []string
	)
	c := &cobra.Command{
		Use:   "assign DEVICE_ID... --target PATH",
		Short: "Assign a release of the image repository to devices (signed per-device metadata; the device also checks the image repository agrees)",
		Example: `  fwrepo director assign --dir /srv/fwrepo --director-key director-keys/online.key \
      3f9a0c... 7be21d... --target acme-gw-v2/2.4.1/firmware.img --window "Sat 02:00-04:00" --timezone Europe/Berlin`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if target == "" {
				return cli.WithCode(cli.ExitUsage, errors.New("--target is required: a firmware target path of the image repository"))
			}
			d, st, err := f.open(cmd.Context(), false)
			if err != nil {
				return err
			}
			defer d.Close()
			var trusted []byte
			if imageRoot != "" {
				if trusted, err = os.ReadFile(imageRoot); err != nil {
					return cli.WithCode(cli.ExitUsage, fmt.Errorf("--root: %w", err))
				}
			} else if trusted, err = blob.ReadAll(cmd.Context(), st, "metadata/1.root.json"); err != nil {
				return fmt.Errorf("read the image repository's root: %w", err)
			}
			res, err := verify.Verify(cmd.Context(), verify.StoreSource(st), trusted, time.Now())
			if err != nil {
				return fmt.Errorf("the image repository does not verify, nothing assigned: %w", err)
			}
			var t *verify.Target
			for i := range res.Targets {
				if res.Targets[i].Path == target {
					t = &res.Targets[i]
				}
			}
			if t == nil {
				return cli.WithCode(cli.ExitUsage, fmt.Errorf("%s is not a target of the image repository (see 'fwctl target list')", target))
			}
			var m *manifests.Maintenance
			if len(windows) > 0 || len(timezone) > 0 {
				m = &manifests.Maintenance{Windows: windows}
				if len(timezone) > 0 {
					m.Timezone = timezone[len(timezone)-1]
				}
			}
			as := make([]director.Assignment, 0, len(args))
			for _, id := range args {
				a, err := director.ForTarget(id, hardware, *t)
				if err != nil {
					return cli.WithCode(cli.ExitUsage, err)
				}
				a.Maintenance = m
				as = append(as, a)
			}
			if err := d.Assign(cmd.Context(), as); err != nil {
				if errors.Is(err, director.ErrInvalid) {
					return cli.WithCode(cli.ExitUsage, err)
				}
				return err
			}
			return directorPrintStatus(cmd.Context(), *jsonOut, d, args)
		},
	}
	f.register(c, true)
	c.Flags().StringVar(&target, "target", "", "target path of the release (as 'fwctl target list' shows it)")
	c.Flags().StringVar(&hardware, "hardware", "", "hardware ID of the devices (default: the target's, when it has one)")
	c.Flags().StringVar(&imageRoot, "root", "", "trusted root of the image repository (default: its own metadata/1.root.json)")
	c.Flags().StringArrayVar(&windows, "window", nil, `maintenance window of the assignment, e.g. "Sat 02:00-04:00" (repeatable)`)
	c.Flags().StringArrayVar(&timezone, "timezone", nil, "time zone of --window, e.g. Europe/Berlin (default: the device's)")
	return c
}

func directorUnassignCmd(jsonOut *bool) *cobra.Command {
	var f directorFlags
	c := &cobra.Command{
		Use:     "unassign DEVICE_ID...",
		Short:   "Publish empty director metadata for devices: they stop being offered their assigned release",
		Example: `  fwrepo director unassign --dir /srv/fwrepo --director-key director-keys/online.key 3f9a0c...`,
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			d, _, err := f.open(cmd.Context(), false)
			if err != nil {
				return err
			}
			defer d.Close()
			if err := d.Unassign(cmd.Context(), args); err != nil {
				if errors.Is(err, director.ErrInvalid) {
					return cli.WithCode(cli.ExitUsage, err)
				}
				return err
			}
			return directorPrintStatus(cmd.Context(), *jsonOut, d, args)
		},
	}
	f.register(c, true)
	return c
}

func directorStatusCmd(jsonOut *bool) *cobra.Command {
	var f directorFlags
	c := &cobra.Command{
		Use:   "status [DEVICE_ID...]",
		Short: "Show what the director assigns each device (all devices with director metadata by default)",
		Example: `  fwrepo director status --dir /srv/fwrepo
  fwrepo director status --dir /srv/fwrepo --json 3f9a0c...`,
		RunE: func(cmd *cobra.Command, args []string) error {
			d, _, err := f.open(cmd.Context(), true)
			if err != nil {
				return err
			}
			if len(args) == 0 {
				if args, err = d.Devices(cmd.Context()); err != nil {
					return err
				}
			}
			return directorPrintStatus(cmd.Context(), *jsonOut, d, args)
		},
	}
	f.register(c, false)
	return c
}

func directorPrintStatus(ctx context.Context, jsonOut bool, d *director.Director, ids []string) error {
	out := []director.DeviceStatus{}
	for _, id := range ids {
		s, err := d.Status(ctx, id)
		if err != nil {
			return err
		}
		if s == nil {
			s = &director.DeviceStatus{DeviceID: id}
		}
		out = append(out, *s)
	}
	return cli.Std(jsonOut).Result(map[string]any{"devices": out}, func(w io.Writer) {
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "DEVICE\tASSIGNED\tCOUNTER\tVERSION\tTIMESTAMP EXPIRES")
		for _, s := range out {
			what, counter := "-", "-"
			if s.Assignment != nil {
				what, counter = s.Assignment.TargetName, fmt.Sprint(s.Assignment.Counter)
			}
			exp := "-"
			if !s.TimestampExpires.IsZero() {
				exp = s.TimestampExpires.UTC().Format(time.RFC3339)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\n", s.DeviceID, what, counter, s.TargetsVersion, exp)
		}
		tw.Flush()
	})
}
