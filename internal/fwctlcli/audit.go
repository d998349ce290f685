package fwctlcli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/fwctl/fwctl/internal/cli"
	"github.com/fwctl/fwctl/repo"
	"github.com/fwctl/fwctl/repo/verify"
	"github.com/fwctl/fwctl/transparency"
)

func (a *app) auditCmd() *cobra.Command {
	var dir, rootFile, rekorURL, logKey, s3Endpoint string
	c := &cobra.Command{
		Use:   "audit --repo DIR|s3://BUCKET/PREFIX|URL --root ROOT --rekor URL [--log-key FILE]",
		Short: "Check a published repository against the transparency log (exit 3 on any finding)",
		Long: `audit checks that every firmware image and every signed targets version has
a log entry whose content matches, that the inclusion proofs verify against
signed checkpoints, that the log's checkpoint is consistent with the one seen
by the previous audit, and that the log holds no entry signed with the
release key that does not correspond to a published release (a key used
behind your back). Suited to a scheduled CI job: --json and exit codes.

The log key is pinned: --log-key, or WORKSPACE/transparency/log.pub, which
the first audit fetches from the log and keeps (trust on first use).`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			if dir == "" || rootFile == "" || rekorURL == "" {
				return usage(errors.New("--repo, --root and --rekor are required"))
			}
			ws, err := a.open()
			if err != nil {
				return err
			}
			root, src, err := openRepo(rootFile, dir, s3Endpoint)
			if err != nil {
				return err
			}
			state := filepath.Join(ws.Dir, "transparency")
			if logKey == "" {
				logKey = filepath.Join(state, "log.pub")
				if _, err := os.Stat(logKey); errors.Is(err, os.ErrNotExist) {
					pub, err := transparency.LogPublicKey(context.Background(), rekorURL)
					if err != nil {
						return cli.WithCode(cli.ExitNetwork, err)
					}
					os.MkdirAll(state, 0o700)
					if err := os.WriteFile(logKey, pub, 0o644); err != nil {
						return err
					}
				}
			}
			pub, err := os.ReadFile(logKey)
			if err != nil {
				return usage(err)
			}
			rep, err := ws.Audit(context.Background(), repo.AuditOptions{Source: src, TrustedRoot: root, RekorURL: rekorURL, LogKeyPEM: pub, StateDir: state})
			if errors.Is(err, verify.ErrUnreachable) {
				return cli.WithCode(cli.ExitNetwork, err)
			}
			if err != nil {
				return err
			}
			if err := a.out.Result(rep, func(w io.Writer) {
				fmt.Fprintf(w, "Audited %d images and %d targets versions against %s (tree size %d, previously %d; %d entries by the release key)\n",
					rep.Targets, rep.Metadata, rekorURL, rep.TreeSize, rep.PrevSize, rep.LogEntries)
				for _, f := range rep.Findings {
					fmt.Fprintf(w, "  %s: %s\n", f.Kind, f.Detail)
				}
				if len(rep.Findings) == 0 {
					fmt.Fprintln(w, "OK: no findings")
				}
			}); err != nil {
				return err
			}
			if len(rep.Findings) > 0 {
				return cli.WithCode(cli.ExitRefused, fmt.Errorf("audit: %d finding(s)", len(rep.Findings)))
			}
			return nil
		},
	}
	c.Flags().StringVar(&dir, "repo", "", "published repository: a directory, s3://BUCKET/PREFIX or http(s)://URL")
	c.Flags().StringVar(&s3Endpoint, "s3-endpoint", "", "S3 API endpoint for an s3:// --repo (default $AWS_ENDPOINT_URL, else AWS)")
	c.Flags().StringVar(&rootFile, "root", "", "trusted root.json")
	c.Flags().StringVar(&rekorURL, "rekor", os.Getenv("FWCTL_REKOR_URL"), "Rekor URL ($FWCTL_REKOR_URL)")
	c.Flags().StringVar(&logKey, "log-key", "", "the log's public key (PEM); default: pinned in the workspace")
	return c
}
