package fwrepocli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/fwctl/fwctl/internal/cli"
	"github.com/fwctl/fwctl/repo/blob"
	"github.com/fwctl/fwctl/repo/exposure"
	"github.com/fwctl/fwctl/repo/inventory"
	"github.com/fwctl/fwctl/repo/layout"
	"github.com/fwctl/fwctl/repo/verify"
)

func init() {
	registerCommand(vulnsCmd)
	registerCommand(exposureCmd)
}

func vulnsCmd(jsonOut *bool) *cobra.Command {
	var dbPath string
	c := &cobra.Command{
		Use:     "vulns",
		Short:   "Import offline vulnerability data (OSV records, OpenVEX and CycloneDX VEX) into the inventory",
		Example: "  fwrepo vulns import --db fleet.db osv-all.zip vex/",
		Args:    cobra.NoArgs,
	}
	c.PersistentFlags().StringVar(&dbPath, "db", "", "inventory database, shared with 'fwrepo serve --db' (default $"+DBEnv+", else fwrepo.db)")
	imp := &cobra.Command{
		Use:   "import PATH...",
		Short: "Import OSV JSON records (files, directories, an osv.dev zip export) and VEX documents, all or nothing",
		Example: `  fwrepo vulns import --db fleet.db debian-osv.zip
  fwrepo vulns import --db fleet.db osv/ vex/openssl.openvex.json`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			d, err := exposure.Load(args...)
			if err != nil {
				return cli.WithCode(cli.ExitUsage, err)
			}
			if err := withInventory(dbPath, func(db *inventory.DB) error { return exposure.Import(cmd.Context(), db, d) }); err != nil {
				return err
			}
			out := struct {
				Advisories int `json:"advisories"`
				Statements int `json:"vex_statements"`
			}{len(d.Records), len(d.Statements)}
			return cli.Std(*jsonOut).Result(out, func(w io.Writer) {
				fmt.Fprintf(w, "Imported %d advisories and %d VEX statements\n", out.Advisories, out.Statements)
			})
		},
	}
	c.AddCommand(imp)
	return c
}

func exposureCmd(jsonOut *bool) *cobra.Command {
	var dbPath, dir, root, cve string
	c := &cobra.Command{
		Use:   "exposure",
		Short: "Which releases contain a vulnerable component, which devices and groups run them, which release fixes it",
		Long: `Joins the inventory's device reports with each release's SBOM and the imported
vulnerability data ('fwrepo vulns import'). With --dir, the published repository is
verified first and the SBOM of every release not read before is read, checked against
the sha256 in custom.fw.sbom and stored per release. Without --cve, every imported
advisory that affects a release is listed.`,
		Example: `  fwrepo exposure --db fleet.db --dir /srv/repo --cve CVE-2024-7264
  fwrepo --json exposure --db fleet.db --dir /srv/repo`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			return withInventory(dbPath, func(db *inventory.DB) error {
				if dir != "" {
					if err := indexRepo(ctx, db, dir, root); err != nil {
						return err
					}
				}
				rep, err := exposure.Query(ctx, db, cve, time.Now())
				if err != nil {
					return cli.WithCode(cli.ExitUsage, err)
				}
				return cli.Std(*jsonOut).Result(rep, func(w io.Writer) { printExposure(w, rep) })
			})
		},
	}
	c.Flags().StringVar(&dbPath, "db", "", "inventory database (default $"+DBEnv+", else fwrepo.db)")
	c.Flags().StringVar(&dir, "dir", "", "published repository to read release SBOMs from (a directory, s3://BUCKET/PREFIX or an http(s) URL); without it, the SBOMs read before")
	c.Flags().StringVar(&root, "root", "", "trusted root metadata the repository must verify from (default: the repository's own metadata/1.root.json)")
	c.Flags().StringVar(&cve, "cve", "", "advisory ID or alias (CVE-…, DSA-…, GO-…); default: all imported advisories")
	return c
}

func indexRepo(ctx context.Context, db *inventory.DB, dir, root string) error {
	src, err := verify.OpenSource(dir, blob.Options{})
	if err != nil {
		return cli.WithCode(cli.ExitUsage, err)
	}
	var trusted []byte
	if root != "" {
		trusted, err = os.ReadFile(root)
	} else {
		trusted, err = verify.ReadLimited(ctx, src, "metadata/1.root.json", layout.MaxRootLength, false)
	}
	if err != nil {
		return cli.WithCode(cli.ExitUsage, fmt.Errorf("trusted root: %w", err))
	}
	_, err = exposure.Index(ctx, db, src, trusted, time.Now())
	if errors.Is(err, exposure.ErrSBOMMismatch) {
		return cli.WithCode(cli.ExitUsage, err)
	}
	return err
}

func printExposure(w io.Writer, rep *exposure.Report) {
	if len(rep.Vulnerabilities) == 0 {
		fmt.Fprintln(w, "No imported advisory affects a release")
	}
	for _, v := range rep.Vulnerabilities {
		names := v.ID
		if len(v.Aliases) > 0 {
			names += " (" + strings.Join(v.Aliases, ", ") + ")"
		}
		fmt.Fprintf(w, "%s: %d releases affected, %d devices\n", names, len(v.Releases), v.Devices)
		if v.Summary != "" {
			fmt.Fprintf(w, "  %s\n", v.Summary)
		}
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		for _, r := range v.Releases {
			var comps []string
			for _, h := range r.Components {
				comps = append(comps, h.Name+" "+h.Version)
			}
			fixed := "no fixed release"
			if len(r.FixedBy) > 0 {
				fixed = "fixed by " + r.FixedBy[0]
			}
			support := ""
			if r.PastSupport {
				support = "  PAST SUPPORT (" + r.SupportUntil + ")"
			}
			line := fmt.Sprintf("  %s\t%s\t%d devices\t%s", r.Target, strings.Join(comps, ", "), len(r.Devices), fixed)
			if rest := strings.TrimSpace(groups(r.Groups) + support); rest != "" {
				line += "\t" + rest
			}
			fmt.Fprintln(tw, line)
		}
		tw.Flush()
		for _, n := range v.NotAffected {
			fmt.Fprintf(w, "  not affected (VEX %s): %s in %s\n", n.Statement.Source, n.Component, n.Target)
		}
	}
	if len(rep.PastSupport) > 0 {
		fmt.Fprintf(w, "%d devices run a release past its support period:\n", len(rep.PastSupport))
		for _, d := range rep.PastSupport {
			fmt.Fprintf(w, "  %s\t%s (support until %s)\n", d.Device, d.Target, d.SupportUntil)
		}
	}
}

func groups(g map[string]int) string {
	var out []string
	for k, n := range g {
		out = append(out, fmt.Sprintf("%s:%d", k, n))
	}
	sort.Strings(out)
	return strings.Join(out, " ")
}
