package fwctlcli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/fwctl/fwctl/internal/cli"
	"github.com/fwctl/fwctl/repo/blob"
	"github.com/fwctl/fwctl/repo/verify"
)

func (a *app) verifyCmd() *cobra.Command {
	var rootFile, dir, s3Endpoint string
	var requireProvenance, releaseKey string
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
			res, err := verify.Verify(context.Background(), src, root, time.Now())
			if err != nil {
				return verifyError(dir, err)
			}
			if requireProvenance != "" {
				if err := requireProvenanceOf(a.out.Err, src, res, releaseKey, requireProvenance); err != nil {
					return err
				}
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
	c.Flags().StringVar(&requireProvenance, "require-provenance", "", "also require of every release SLSA provenance from builder id BUILDER, signed with --release-key (exit 3 otherwise)")
	c.Flags().StringVar(&releaseKey, "release-key", "", "the release public key (WORKSPACE/release.pub) that signs attestations, for --require-provenance")
	return c
}

// verifyError gives a failed verification of location its exit code: 4
// when the repository could not be reached (retry), 3 when it was refused.
func verifyError(location string, err error) error {
	if errors.Is(err, verify.ErrUnreachable) {
		return cli.WithCode(cli.ExitNetwork, fmt.Errorf("verify %s: %w", location, err))
	}
	return cli.WithCode(cli.ExitRefused, fmt.Errorf("verify %s: %w", location, err))
}

// delegatedSummary names the verified delegated roles with their versions,
// eliding the middle of a long list (hashed bins).
func delegatedSummary(roles []verify.VerifiedRole) string {
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
func openRepo(rootFile, dir, s3Endpoint string) ([]byte, verify.Source, error) {
	root, err := os.ReadFile(rootFile)
	if err != nil {
		return nil, nil, usage(err)
	}
	src, err := verify.OpenSource(dir, blob.Options{S3Endpoint: s3Endpoint})
	if err != nil {
		return nil, nil, usage(err)
	}
	return root, src, nil
}
