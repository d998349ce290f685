package exposure

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/package-url/packageurl-go"

	"github.com/fwctl/fwctl/repo/inventory"
	"github.com/fwctl/fwctl/repo/layout"
	"github.com/fwctl/fwctl/repo/sbom"
	"github.com/fwctl/fwctl/repo/verify"
)

// ErrSBOMMismatch means an SBOM's bytes do not hash to what the signed
// targets metadata binds in custom.fw.sbom.
var ErrSBOMMismatch = errors.New("SBOM does not match the hash in the signed targets metadata")

// IndexResult says what Index read.
type IndexResult struct {
	Releases int `json:"releases"` // releases with an SBOM in the repository
	Indexed  int `json:"indexed"`  // of them, read now (the others were stored already)
	// Components is how many components the releases read now have.
	Components int `json:"components"`
}

// Index verifies the published repository src from trustedRoot and stores
// the components of every release's SBOM that is not stored yet (or whose
// bound SBOM changed): the SBOM is read from src, its SHA-256 checked
// against custom.fw.sbom and the signed target hash, and parsed with
// repo/sbom. A release's components are stored in one transaction.
func Index(ctx context.Context, db *inventory.DB, src verify.Source, trustedRoot []byte, now time.Time) (*IndexResult, error) {
	res, err := verify.Verify(ctx, src, trustedRoot, now)
	if err != nil {
		return nil, fmt.Errorf("verify the repository before reading its SBOMs: %w", err)
	}
	stored, err := db.SBOMReleases(ctx)
	if err != nil {
		return nil, err
	}
	have := map[string]string{}
	for _, r := range stored {
		have[r.Target] = r.SBOMSHA256
	}
	out := &IndexResult{}
	for _, t := range res.Targets {
		fw := t.Firmware
		if fw == nil || fw.SBOM == nil || fw.SBOM.Legacy != "" || fw.Kind == "delta" {
			continue
		}
		out.Releases++
		if have[t.Path] == fw.SBOM.SHA256 {
			continue
		}
		tf, ok := res.File(fw.SBOM.Path)
		if !ok {
			return nil, fmt.Errorf("release %s binds SBOM %s, which is not a signed target of the repository", t.Path, fw.SBOM.Path)
		}
		// Consistent snapshot: the file is named by its signed hash.
		name := layout.TargetsDir + "/" + layout.HashedTarget(fw.SBOM.Path, tf.Hashes["sha256"])
		b, err := verify.ReadLimited(ctx, src, name, tf.Length, true)
		if err != nil {
			return nil, fmt.Errorf("read SBOM of %s: %w", t.Path, err)
		}
		sum := sha256.Sum256(b)
		got := hex.EncodeToString(sum[:])
		if !strings.EqualFold(got, fw.SBOM.SHA256) || !bytes.Equal(sum[:], tf.Hashes["sha256"]) {
			return nil, fmt.Errorf("%w: %s of release %s has sha256 %s, custom.fw.sbom binds %s", ErrSBOMMismatch, fw.SBOM.Path, t.Path, got, fw.SBOM.SHA256)
		}
		doc, err := sbom.Parse(fw.SBOM.Path, bytes.NewReader(b), sbom.DefaultMaxBytes)
		if err != nil {
			return nil, fmt.Errorf("SBOM of release %s: %w", t.Path, err)
		}
		rel := inventory.SBOMRelease{Target: t.Path, Version: fw.Version, Hardware: strings.Join(fw.Hardware, ","),
			Counter: fw.Counter, SupportUntil: fw.SupportUntil, SBOMSHA256: strings.ToLower(fw.SBOM.SHA256)}
		comps := Components(doc)
		if err := db.StoreSBOMRelease(ctx, rel, comps); err != nil {
			return nil, err
		}
		out.Indexed++
		out.Components += len(doc.Components)
	}
	return out, nil
}

// Components turns an SBOM's components into the rows stored for a
// release: by purl type and name, and once more by the purl's "upstream"
// qualifier (the source package) when it names another package, since
// Debian's advisories name source packages.
func Components(doc *sbom.Document) []inventory.ReleaseComponent {
	var out []inventory.ReleaseComponent
	for _, c := range doc.Components {
		if c.Ecosystem == "" || c.Version == "" {
			continue // no purl or no version: nothing to compare
		}
		rc := inventory.ReleaseComponent{Ecosystem: c.Ecosystem, Name: c.Name, Version: c.Version, PURL: c.PURL}
		p, err := packageurl.FromString(c.PURL)
		if err == nil {
			rc.Name = purlName(p)
			if p.Version != "" {
				rc.Version = p.Version
			}
		}
		out = append(out, rc)
		if err == nil {
			if up := p.Qualifiers.Map()["upstream"]; up != "" && up != rc.Name {
				src := rc
				src.Name, _, _ = strings.Cut(up, "@")
				out = append(out, src)
			}
		}
	}
	return out
}

// purlName is the package name as OSV spells it: Go modules and npm
// scopes carry their namespace ("golang.org/x/net").
func purlName(p packageurl.PackageURL) string {
	switch p.Type {
	case "golang", "npm":
		if p.Namespace != "" {
			return p.Namespace + "/" + p.Name
		}
	}
	return p.Name
}
