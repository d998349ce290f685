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
	"github.com/fwctl/fwctl/repo/blob"
	"github.com/fwctl/fwctl/repo/bundle"
	"github.com/fwctl/fwctl/repo/verify"
)

func init() { registerCommand((*app).bundleCmd) }

func (a *app) bundleCmd() *cobra.Command {
	var out, repoDir, rootFile, s3Endpoint, directorRoot string
	var releases, bases, devices []string
	var fromRoot int64
	c := &cobra.Command{
		Use:   "bundle --repo DIR|URL --out FILE|DIR/ --release TARGET... [--from-root-version N] [--delta-from BASE...] [--device ID...]",
		Short: "Write an offline update bundle for air-gapped sites (fwagent update --from)",
		Long: `Write an offline update bundle: the root chain from --from-root-version
(default 1), timestamp, snapshot, targets and delegated metadata, the images
of the --release targets, their transparency proofs and SBOMs, and deltas to
them from the --delta-from bases. The repository is verified first, as a
device would. A bundle is plain data: devices trust it only through the
signatures inside it, so its timestamp must still be fresh when a device
reads it, unless the device's offline.max_metadata_age allows otherwise
(docs/offline.md).

--device carries the director metadata of a director device (its signed
assignment, which fwrepo's director publishes in the same repository: a
directory, bucket or fwrepo URL), verified from the director root; each must
be assigned one of the --release targets. A device configured for a director
installs from a bundle only with its own director metadata in it.

--out FILE writes one bundle file (atomically); --out DIR/ (a trailing slash
or an existing directory) writes the same files unpacked. Exit 3: the
repository does not verify.`,
		Example: `  fwctl bundle --repo pub --out /media/stick/site.fwbundle --release acme-gw-v2/2.4.1/firmware.img
  fwctl bundle --repo pub --out site/ --release acme-gw-v2/2.4.1/firmware.img --delta-from acme-gw-v2/2.3.0/firmware.img --from-root-version 3
  fwctl bundle --repo https://fwrepo.example.com --out ship.fwbundle --release acme-gw-v2/2.4.1/firmware.img --device gw-0017 --device gw-0018`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			if out == "" || repoDir == "" || len(releases) == 0 {
				return usage(errors.New("--repo, --out and --release are required"))
			}
			src, err := verify.OpenSource(repoDir, blob.Options{S3Endpoint: s3Endpoint})
			if err != nil {
				return usage(err)
			}
			opt := bundle.Options{Releases: releases, DeltaFrom: bases, FromRootVersion: fromRoot, Devices: devices}
			if directorRoot != "" {
				if opt.DirectorRoot, err = os.ReadFile(directorRoot); err != nil {
					return usage(err)
				}
			}
			if rootFile != "" {
				if opt.TrustedRoot, err = os.ReadFile(rootFile); err != nil {
					return usage(err)
				}
			}
			ctx := context.Background()
			plan, err := bundle.Prepare(ctx, src, opt)
			if err != nil {
				return cli.WithCode(cli.ExitRefused, err)
			}
			if fi, serr := os.Stat(out); strings.HasSuffix(out, "/") || serr == nil && fi.IsDir() {
				err = plan.WriteDir(ctx, src, out)
			} else {
				err = plan.WriteFile(ctx, src, out)
			}
			if err != nil {
				return err
			}
			return a.out.Result(plan, func(w io.Writer) {
				fmt.Fprintf(w, "wrote %s: %d files for %s (root chain from version %d)\n", out, len(plan.Files), strings.Join(plan.Manifest.Releases, ", "), plan.Manifest.RootFrom)
			})
		},
	}
	c.Flags().StringVar(&repoDir, "repo", "", "published repository: a directory, s3://BUCKET/PREFIX or http(s)://URL")
	c.Flags().StringVar(&out, "out", "", "bundle file to write, or a directory (trailing slash)")
	c.Flags().StringSliceVar(&releases, "release", nil, "target path of a release to carry (repeatable)")
	c.Flags().StringSliceVar(&bases, "delta-from", nil, "target path of a base image: carry deltas from it (repeatable)")
	c.Flags().Int64Var(&fromRoot, "from-root-version", 1, "oldest root version a device may trust and still update from the bundle")
	c.Flags().StringVar(&rootFile, "root", "", "verify from this trusted root.json instead of the repository's root of --from-root-version")
	c.Flags().StringVar(&s3Endpoint, "s3-endpoint", "", "S3 API endpoint for an s3:// --repo")
	c.Flags().StringSliceVar(&devices, "device", nil, "carry this director device's signed assignment (repeatable)")
	c.Flags().StringVar(&directorRoot, "director-root", "", "verify director metadata from this director root.json (default: the repository's director/metadata/1.root.json)")
	return c
}
