package sbom

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	cdx "github.com/CycloneDX/cyclonedx-go"
	"github.com/package-url/packageurl-go"
	spdxjson "github.com/spdx/tools-golang/json"
	"github.com/spdx/tools-golang/spdx"
)

// Formats an SBOM may be in.
const (
	FormatCycloneDX = "cyclonedx"
	FormatSPDX      = "spdx"
)

// DefaultMaxBytes is the size cap callers use unless they have a reason for
// another: a Debian rootfs of a few thousand packages is a few MiB as SPDX.
const DefaultMaxBytes = 64 << 20

// Errors callers branch on (with errors.Is); every one comes wrapped in an
// *Error that names the file and the field.
var (
	// ErrTooLarge means the SBOM is bigger than the cap it was read with.
	ErrTooLarge = errors.New("sbom larger than the size cap")
	// ErrMalformed means the bytes are not a valid document of the format.
	ErrMalformed = errors.New("malformed sbom")
	// ErrUnsupportedFormat means the document is neither CycloneDX nor SPDX JSON.
	ErrUnsupportedFormat = errors.New("not a CycloneDX or SPDX JSON document")
	// ErrUnsupportedVersion means the format's spec version is not one
	// this package accepts (CycloneDX 1.4-1.6, SPDX 2.2-2.3).
	ErrUnsupportedVersion = errors.New("unsupported sbom spec version")
)

// Error is a parse failure in one field of one file.
type Error struct {
	File  string // the name given to Parse
	Field string // JSON path of the offending field, "" for the whole document
	Err   error  // one of the sentinel errors above, wrapped with detail
}

func (e *Error) Error() string {
	if e.Field == "" {
		return fmt.Sprintf("sbom %s: %v", e.File, e.Err)
	}
	return fmt.Sprintf("sbom %s: field %s: %v", e.File, e.Field, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// Component is one package of an SBOM.
type Component struct {
	Name    string `json:"name"`
	Version string `json:"version,omitempty"`
	PURL    string `json:"purl,omitempty"`
	// Type is the CycloneDX component type or the SPDX primary package
	// purpose, lower case ("library", "application", "operating-system").
	Type     string `json:"type,omitempty"`
	Supplier string `json:"supplier,omitempty"`
	// Ecosystem is the purl type (deb, golang, npm, rpm, ...), "" without a purl.
	Ecosystem string `json:"ecosystem,omitempty"`
	// Namespace is the purl namespace (debian, github.com/spf13, ...).
	Namespace string `json:"namespace,omitempty"`
}

// Key identifies a component across releases: its purl without version
// (keeping the arch qualifier), or its name when it has no purl.
func (c Component) Key() string {
	if c.PURL == "" {
		return "name:" + c.Name
	}
	p, err := packageurl.FromString(c.PURL)
	if err != nil { // Parse checked it; keep Key total anyway
		return "purl:" + c.PURL
	}
	var q packageurl.Qualifiers
	if a, ok := p.Qualifiers.Map()["arch"]; ok {
		q = packageurl.QualifiersFromMap(map[string]string{"arch": a})
	}
	return packageurl.NewPackageURL(p.Type, p.Namespace, p.Name, "", q, "").ToString()
}

// Document is an SBOM reduced to what fwctl and fwrepo use.
type Document struct {
	Format      string `json:"format"`       // FormatCycloneDX or FormatSPDX
	SpecVersion string `json:"spec_version"` // "1.5", "2.3", ...
	// Subject is what the SBOM describes (CycloneDX metadata.component,
	// SPDX documentDescribes), when it says.
	Subject    *Component  `json:"subject,omitempty"`
	Components []Component `json:"components"`
}

// Parse reads a CycloneDX (1.4-1.6) or SPDX (2.2, 2.3) JSON SBOM of at most
// maxBytes from r, validates it with the format's own library and returns
// its components, sorted. name is the file name errors report.
func Parse(name string, r io.Reader, maxBytes int64) (*Document, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxBytes+1))
	if err != nil {
		return nil, &Error{File: name, Err: fmt.Errorf("read: %w", err)}
	}
	if int64(len(b)) > maxBytes {
		return nil, &Error{File: name, Err: fmt.Errorf("%w: more than %d bytes; trim the SBOM or raise the cap", ErrTooLarge, maxBytes)}
	}
	var head struct {
		BOMFormat   *string `json:"bomFormat"`
		SpecVersion *string `json:"specVersion"`
		SPDXVersion *string `json:"spdxVersion"`
	}
	if err := json.Unmarshal(b, &head); err != nil {
		return nil, &Error{File: name, Err: fmt.Errorf("%w: not JSON: %v", ErrMalformed, err)}
	}
	var d *Document
	switch {
	case head.BOMFormat != nil:
		if *head.BOMFormat != "CycloneDX" {
			return nil, &Error{File: name, Field: "bomFormat", Err: fmt.Errorf("%w: %q, want \"CycloneDX\"", ErrUnsupportedFormat, *head.BOMFormat)}
		}
		if head.SpecVersion == nil {
			return nil, &Error{File: name, Field: "specVersion", Err: fmt.Errorf("%w: missing", ErrMalformed)}
		}
		if !slices.Contains([]string{"1.4", "1.5", "1.6"}, *head.SpecVersion) {
			return nil, &Error{File: name, Field: "specVersion", Err: fmt.Errorf("%w: CycloneDX %q, want 1.4, 1.5 or 1.6", ErrUnsupportedVersion, *head.SpecVersion)}
		}
		d, err = parseCycloneDX(name, b)
	case head.SPDXVersion != nil:
		v := strings.TrimPrefix(*head.SPDXVersion, "SPDX-")
		if v != "2.2" && v != "2.3" {
			return nil, &Error{File: name, Field: "spdxVersion", Err: fmt.Errorf("%w: %q, want SPDX-2.2 or SPDX-2.3", ErrUnsupportedVersion, *head.SPDXVersion)}
		}
		d, err = parseSPDX(name, b)
		if d != nil {
			d.SpecVersion = v
		}
	default:
		return nil, &Error{File: name, Err: fmt.Errorf("%w: no bomFormat or spdxVersion field", ErrUnsupportedFormat)}
	}
	if err != nil {
		return nil, err
	}
	slices.SortFunc(d.Components, compare)
	return d, nil
}

func compare(a, b Component) int {
	return cmpStrings([]string{a.Ecosystem, a.Namespace, a.Name, a.Version, a.PURL}, []string{b.Ecosystem, b.Namespace, b.Name, b.Version, b.PURL})
}

func cmpStrings(a, b []string) int {
	for i := range a {
		if c := strings.Compare(a[i], b[i]); c != 0 {
			return c
		}
	}
	return 0
}

func parseCycloneDX(name string, b []byte) (*Document, error) {
	var bom cdx.BOM
	if err := cdx.NewBOMDecoder(bytes.NewReader(b), cdx.BOMFileFormatJSON).Decode(&bom); err != nil {
		return nil, &Error{File: name, Err: fmt.Errorf("%w: CycloneDX: %v", ErrMalformed, err)}
	}
	d := &Document{Format: FormatCycloneDX, SpecVersion: bom.SpecVersion.String()}
	if bom.Metadata != nil && bom.Metadata.Component != nil {
		c, err := cdxComponent(name, "metadata.component", bom.Metadata.Component)
		if err != nil {
			return nil, err
		}
		d.Subject = &c
	}
	var walk func(path string, cs *[]cdx.Component) error
	walk = func(path string, cs *[]cdx.Component) error {
		if cs == nil {
			return nil
		}
		for i := range *cs {
			p := fmt.Sprintf("%s[%d]", path, i)
			c, err := cdxComponent(name, p, &(*cs)[i])
			if err != nil {
				return err
			}
			d.Components = append(d.Components, c)
			if err := walk(p+".components", (*cs)[i].Components); err != nil {
				return err
			}
		}
		return nil
	}
	if err := walk("components", bom.Components); err != nil {
		return nil, err
	}
	return d, nil
}

func cdxComponent(file, path string, c *cdx.Component) (Component, error) {
	if c.Name == "" {
		return Component{}, &Error{File: file, Field: path + ".name", Err: fmt.Errorf("%w: missing (every component needs a name)", ErrMalformed)}
	}
	if c.Type == "" {
		return Component{}, &Error{File: file, Field: path + ".type", Err: fmt.Errorf("%w: missing", ErrMalformed)}
	}
	out := Component{Name: c.Name, Version: c.Version, Type: string(c.Type)}
	if c.Group != "" {
		out.Name = c.Group + "/" + c.Name
	}
	if c.Supplier != nil {
		out.Supplier = c.Supplier.Name
	}
	if err := setPURL(&out, c.PackageURL); err != nil {
		return Component{}, &Error{File: file, Field: path + ".purl", Err: err}
	}
	return out, nil
}

func setPURL(c *Component, s string) error {
	if s == "" {
		return nil
	}
	p, err := packageurl.FromString(s)
	if err != nil {
		return fmt.Errorf("%w: purl %q: %v", ErrMalformed, s, err)
	}
	c.PURL, c.Ecosystem, c.Namespace = s, p.Type, p.Namespace
	return nil
}

func parseSPDX(name string, b []byte) (*Document, error) {
	doc, err := spdxjson.Read(bytes.NewReader(b))
	if err != nil {
		return nil, &Error{File: name, Err: fmt.Errorf("%w: SPDX: %v", ErrMalformed, err)}
	}
	for _, f := range []struct{ field, val string }{
		{"SPDXID", string(doc.SPDXIdentifier)},
		{"name", doc.DocumentName},
		{"documentNamespace", doc.DocumentNamespace},
		{"dataLicense", doc.DataLicense},
	} {
		if f.val == "" {
			return nil, &Error{File: name, Field: f.field, Err: fmt.Errorf("%w: missing (mandatory in SPDX 2.2 and 2.3)", ErrMalformed)}
		}
	}
	if doc.CreationInfo == nil || len(doc.CreationInfo.Creators) == 0 {
		return nil, &Error{File: name, Field: "creationInfo.creators", Err: fmt.Errorf("%w: missing", ErrMalformed)}
	}
	d := &Document{Format: FormatSPDX}
	described := map[string]bool{}
	for _, r := range doc.Relationships {
		if r != nil && r.Relationship == "DESCRIBES" && string(r.RefA.ElementRefID) == "DOCUMENT" {
			described[string(r.RefB.ElementRefID)] = true
		}
	}
	for i, p := range doc.Packages {
		path := fmt.Sprintf("packages[%d]", i)
		if p == nil || p.PackageName == "" {
			return nil, &Error{File: name, Field: path + ".name", Err: fmt.Errorf("%w: missing (every package needs a name)", ErrMalformed)}
		}
		if p.PackageSPDXIdentifier == "" {
			return nil, &Error{File: name, Field: path + ".SPDXID", Err: fmt.Errorf("%w: missing", ErrMalformed)}
		}
		c := spdxComponent(p)
		for j, ref := range p.PackageExternalReferences {
			if ref == nil || ref.RefType != "purl" || c.PURL != "" {
				continue
			}
			if err := setPURL(&c, ref.Locator); err != nil {
				return nil, &Error{File: name, Field: fmt.Sprintf("%s.externalRefs[%d].referenceLocator", path, j), Err: err}
			}
		}
		if described[string(p.PackageSPDXIdentifier)] && d.Subject == nil && len(doc.Packages) > 1 {
			d.Subject = &c
			continue
		}
		d.Components = append(d.Components, c)
	}
	return d, nil
}

func spdxComponent(p *spdx.Package) Component {
	c := Component{Name: p.PackageName, Version: p.PackageVersion}
	if p.PrimaryPackagePurpose != "" {
		c.Type = strings.ReplaceAll(strings.ToLower(p.PrimaryPackagePurpose), "_", "-")
	}
	if p.PackageSupplier != nil && p.PackageSupplier.Supplier != "NOASSERTION" {
		c.Supplier = p.PackageSupplier.Supplier
	}
	return c
}
