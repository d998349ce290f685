package fwctlcli

import (
	"errors"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/fwctl/fwctl/repo"
	"github.com/fwctl/fwctl/repo/sbom"
)

func init() { registerCommand((*app).sbomCmd) }

// registerSBOMFlags adds 'target add”s SBOM and support-period flags.
func registerSBOMFlags(c *cobra.Command, opt *repo.AddOptions) {
	c.Flags().StringVar(&opt.SBOM, "sbom", "", "the image's SBOM (CycloneDX 1.4-1.6 or SPDX 2.2/2.3 JSON): published as a target of its own, bound by hash in custom.fw.sbom")
	c.Flags().StringVar(&opt.SBOMSHA256, "sbom-sha256", "", "refuse the --sbom file unless it has this SHA-256 (hex), e.g. the one the build recorded")
	c.Flags().StringVar(&opt.SupportUntil, "support-until", "", "last day of the release's security-support period, YYYY-MM-DD (custom.fw.support_until)")
}

// isSBOMError reports whether err is a bad SBOM given on the command line
// (a usage error, exit 2) rather than a failure of fwctl.
func isSBOMError(err error) bool {
	var se *sbom.Error
	return errors.As(err, &se)
}

type sbomShow struct {
	Release  string         `json:"release"`
	Target   string         `json:"target"`
	SBOM     string         `json:"sbom"`
	SHA256   string         `json:"sha256"`
	Support  string         `json:"support_until,omitempty"`
	Document *sbom.Document `json:"document"`
}

type sbomDiff struct {
	From string `json:"from"`
	To   string `json:"to"`
	sbom.DiffResult
}

func (a *app) sbomCmd() *cobra.Command {
	c := &cobra.Command{Use: "sbom", Short: "Show a release's SBOM and what changed between two releases",
		Example: "  fwctl -w ws sbom show 1.0.0\n  fwctl -w ws sbom diff 1.0.0 1.0.1"}
	var hardware string
	release := func(version string) (*sbomShow, error) {
		ws, err := a.open()
		if err != nil {
			return nil, err
		}
		t, doc, err := ws.ReleaseSBOM(version, hardware)
		if err != nil {
			if isSBOMError(err) || errors.Is(err, repo.ErrSBOMMismatch) {
				return nil, err
			}
			return nil, usage(err)
		}
		return &sbomShow{Release: version, Target: t.Path, SBOM: t.Firmware.SBOM.Path, SHA256: t.Firmware.SBOM.SHA256,
			Support: t.Firmware.SupportUntil, Document: doc}, nil
	}
	show := &cobra.Command{
		Use:   "show RELEASE",
		Short: "List the components of a release's SBOM, checked against its signed hash",
		Example: `  fwctl -w ws target add rootfs.img --hardware acme-gw-v2 --version 1.0.0 --counter 1 --sbom rootfs.cdx.json --support-until 2030-12-31
  fwctl -w ws sbom show 1.0.0
  fwctl -w ws --json sbom show 1.0.0 --hardware acme-gw-v2`,
		Args: cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			r, err := release(args[0])
			if err != nil {
				return err
			}
			return a.out.Result(r, func(w io.Writer) {
				d := r.Document
				fmt.Fprintf(w, "Release %s (%s)\n  SBOM %s: %s %s, %d components, sha256 %s\n", r.Release, r.Target, r.SBOM, d.Format, d.SpecVersion, len(d.Components), r.SHA256)
				if r.Support != "" {
					fmt.Fprintf(w, "  security support until %s\n", r.Support)
				}
				fmt.Fprintln(w)
				tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
				fmt.Fprintln(tw, "NAME\tVERSION\tPURL")
				for _, c := range d.Components {
					fmt.Fprintf(tw, "%s\t%s\t%s\n", c.Name, c.Version, c.PURL)
				}
				tw.Flush()
			})
		},
	}
	diff := &cobra.Command{
		Use:   "diff RELEASE RELEASE",
		Short: "List the components added, removed and changed from one release's SBOM to another's",
		Example: `  fwctl -w ws sbom diff 1.0.0 1.0.1
  fwctl -w ws --json sbom diff 1.0.0 1.0.1`,
		Args: cobra.ExactArgs(2),
		RunE: func(_ *cobra.Command, args []string) error {
			from, err := release(args[0])
			if err != nil {
				return err
			}
			to, err := release(args[1])
			if err != nil {
				return err
			}
			r := sbomDiff{From: args[0], To: args[1], DiffResult: sbom.Diff(from.Document, to.Document)}
			return a.out.Result(r, func(w io.Writer) {
				fmt.Fprintf(w, "%s -> %s: %d added, %d removed, %d changed\n", r.From, r.To, len(r.Added), len(r.Removed), len(r.Changed))
				tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
				for _, c := range r.Added {
					fmt.Fprintf(tw, "+\t%s\t\t%s\n", c.Name, c.Version)
				}
				for _, c := range r.Removed {
					fmt.Fprintf(tw, "-\t%s\t%s\t\n", c.Name, c.Version)
				}
				for _, c := range r.Changed {
					fmt.Fprintf(tw, "~\t%s\t%s\t%s\n", c.To.Name, c.From.Version, c.To.Version)
				}
				tw.Flush()
			})
		},
	}
	c.PersistentFlags().StringVar(&hardware, "hardware", "", "hardware ID, when a version was released for several")
	c.AddCommand(show, diff)
	return c
}
