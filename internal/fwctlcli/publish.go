package fwctlcli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/fwctl/fwctl/internal/cli"
	"github.com/fwctl/fwctl/repo"
	"github.com/fwctl/fwctl/repo/blob"
	"github.com/fwctl/fwctl/repo/upload"
)

func (a *app) publishCmd() *cobra.Command {
	var out, rekorURL, s3Endpoint string
	var expiry []string
	var att attestFlags
	c := &cobra.Command{
		Use:   "publish",
		Short: "Sign targets, snapshot and timestamp and write the repository atomically",
		Long: `Sign targets, snapshot and timestamp and write the repository atomically:
to a directory, or with --out s3://BUCKET/PREFIX to S3-compatible object
storage (images and versioned metadata first, timestamp.json last).`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			exp, err := parseExpiry(expiry)
			if err != nil {
				return usage(err)
			}
			ws, err := a.open()
			if err != nil {
				return err
			}
			opt := repo.ReleaseOptions{Out: out, RekorURL: rekorURL, Expiry: exp,
				Rerun: "fwctl " + strings.Join(os.Args[1:], " ")}
			if opt.Attest, err = att.attestor(rekorURL); err != nil {
				return usage(err)
			}
			if blob.IsURL(out) {
				if opt.Store, err = blob.Open(out, blob.Options{S3Endpoint: s3Endpoint}); err != nil {
					return usage(err)
				}
			}
			if a.out.Interactive() {
				opt.Progress = func(m string) { fmt.Fprintln(a.out.Err, m) }
			}
			res, err := ws.Release(context.Background(), opt)
			if errors.Is(err, repo.ErrForeignRelease) || errors.Is(err, repo.ErrImmutable) ||
				errors.Is(err, repo.ErrWouldNotVerify) || errors.Is(err, upload.ErrConflict) {
				return cli.WithCode(cli.ExitRefused, err)
			}
			if err != nil {
				return err
			}
			return a.out.Result(res, func(w io.Writer) {
				fmt.Fprintf(w, "Published %d targets to %s\n", res.Targets, res.Out)
				for _, r := range repo.Roles {
					fmt.Fprintf(w, "  %-9s version %d\n", r, res.Versions[r])
				}
				for _, l := range res.Logged {
					fmt.Fprintf(w, "  logged %s at index %d (proof %s)\n", l.Path, l.LogIndex, l.Bundle)
				}
				if res.Upload != nil {
					fmt.Fprintf(w, "  uploaded %d files, timestamp.json last (%d already there)\n", len(res.Upload.Uploaded), res.Upload.Skipped)
				}
			})
		},
	}
	c.Flags().StringVar(&rekorURL, "rekor", os.Getenv("FWCTL_REKOR_URL"), "record new images and this targets version in the Rekor log at URL ($FWCTL_REKOR_URL)")
	c.Flags().StringVarP(&out, "out", "o", "", "output repository: a directory (default WORKSPACE/repository) or s3://BUCKET/PREFIX (credentials from $AWS_ACCESS_KEY_ID, $AWS_SECRET_ACCESS_KEY)")
	c.Flags().StringVar(&s3Endpoint, "s3-endpoint", "", "S3 API endpoint for an s3:// --out, e.g. http://127.0.0.1:7070 (default $AWS_ENDPOINT_URL, else AWS)")
	c.Flags().StringSliceVar(&expiry, "expiry", nil, "override lifetimes for this publish, e.g. timestamp=1h")
	att.register(c)
	return c
}
