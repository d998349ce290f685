// Command sbomgen writes the SBOM test data of repo/sbom (and the demo's)
// from a package list, with the formats' own encoders: CycloneDX through
// cyclonedx-go, SPDX through tools-golang. scripts/sbom-testdata.sh feeds
// it the packages of the benchmark corpus's Debian images and the modules
// of a Go binary; it is a test-data tool, never linked into fwctl.
//
// Input, one package a line, tab-separated:
//
//	TYPE NAMESPACE NAME VERSION ARCH SUPPLIER
//
// (TYPE is the purl type, deb or golang; ARCH may be "-").
package main

import (
	"bufio"
	"crypto/sha256"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"strings"

	cdx "github.com/CycloneDX/cyclonedx-go"
	"github.com/package-url/packageurl-go"
	spdxjson "github.com/spdx/tools-golang/json"
	"github.com/spdx/tools-golang/spdx/v2/common"
	"github.com/spdx/tools-golang/spdx/v2/v2_2"
	"github.com/spdx/tools-golang/spdx/v2/v2_3"
)

type pkg struct {
	typ, ns, name, version, arch, supplier string
}

func (p pkg) purl() string {
	var q packageurl.Qualifiers
	if p.arch != "" && p.arch != "-" {
		q = packageurl.QualifiersFromMap(map[string]string{"arch": p.arch})
	}
	return packageurl.NewPackageURL(p.typ, p.ns, p.name, p.version, q, "").ToString()
}

func main() {
	format := flag.String("format", "cyclonedx-1.6", "cyclonedx-1.4|cyclonedx-1.5|cyclonedx-1.6|spdx-2.2|spdx-2.3")
	name := flag.String("name", "rootfs", "name of the described image")
	version := flag.String("version", "1.0.0", "version of the described image")
	created := flag.String("created", "2023-11-14T22:13:20Z", "creation time written into the document (fixed: reproducible files)")
	flag.Parse()
	pkgs, err := read(os.Stdin)
	if err != nil {
		log.Fatal(err)
	}
	switch *format {
	case "cyclonedx-1.4", "cyclonedx-1.5", "cyclonedx-1.6":
		err = writeCycloneDX(os.Stdout, *format, *name, *version, *created, pkgs)
	case "spdx-2.2", "spdx-2.3":
		err = writeSPDX(os.Stdout, *format, *name, *version, *created, pkgs)
	default:
		err = fmt.Errorf("unknown -format %q", *format)
	}
	if err != nil {
		log.Fatal(err)
	}
}

func read(r io.Reader) ([]pkg, error) {
	var out []pkg
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		if strings.TrimSpace(sc.Text()) == "" {
			continue
		}
		f := strings.Split(sc.Text(), "\t")
		if len(f) != 6 {
			return nil, fmt.Errorf("line %d: %d fields, want 6 (TYPE NAMESPACE NAME VERSION ARCH SUPPLIER)", n, len(f))
		}
		out = append(out, pkg{f[0], f[1], f[2], f[3], f[4], f[5]})
	}
	return out, sc.Err()
}

// uuid derives a stable RFC 4122 v5-shaped UUID from s, so re-running the
// script gives byte-identical files.
func uuid(s string) string {
	h := sha256.Sum256([]byte(s))
	h[6] = h[6]&0x0f | 0x50
	h[8] = h[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", h[0:4], h[4:6], h[6:8], h[8:10], h[10:16])
}

func writeCycloneDX(w io.Writer, format, name, version, created string, pkgs []pkg) error {
	sv := map[string]cdx.SpecVersion{"cyclonedx-1.4": cdx.SpecVersion1_4, "cyclonedx-1.5": cdx.SpecVersion1_5, "cyclonedx-1.6": cdx.SpecVersion1_6}[format]
	bom := cdx.NewBOM()
	bom.SerialNumber = "urn:uuid:" + uuid(format+name+version)
	bom.Metadata = &cdx.Metadata{
		Timestamp: created,
		Component: &cdx.Component{BOMRef: "image", Type: cdx.ComponentTypeFirmware, Name: name, Version: version},
	}
	cs := make([]cdx.Component, 0, len(pkgs))
	for _, p := range pkgs {
		purl := p.purl()
		c := cdx.Component{BOMRef: purl, Type: cdx.ComponentTypeLibrary, Name: p.name, Version: p.version, PackageURL: purl}
		if p.typ == "golang" && p.ns != "" {
			c.Name = p.ns + "/" + p.name
		}
		if p.supplier != "" {
			c.Supplier = &cdx.OrganizationalEntity{Name: p.supplier}
		}
		cs = append(cs, c)
	}
	bom.Components = &cs
	return cdx.NewBOMEncoder(w, cdx.BOMFileFormatJSON).SetPretty(true).EncodeVersion(bom, sv)
}

func spdxID(p pkg) common.ElementID {
	r := strings.NewReplacer("/", "-", "+", "-", "~", "-", ":", "-", "_", "-")
	return common.ElementID("Package-" + p.typ + "-" + r.Replace(p.name) + "-" + r.Replace(p.version))
}

func supplier(s string) *common.Supplier {
	if s == "" {
		return &common.Supplier{Supplier: "NOASSERTION"}
	}
	s = strings.NewReplacer("<", "(", ">", ")").Replace(s)
	return &common.Supplier{Supplier: s, SupplierType: "Organization"}
}

func writeSPDX(w io.Writer, format, name, version, created string, pkgs []pkg) error {
	ns := "https://fwctl.example/spdx/" + name + "-" + version + "-" + uuid(format+name+version)
	creators := []common.Creator{{Creator: "fwctl-sbomgen", CreatorType: "Tool"}}
	rootID := common.ElementID("Package-image")
	if format == "spdx-2.2" {
		doc := &v2_2.Document{SPDXVersion: v2_2.Version, DataLicense: v2_2.DataLicense, SPDXIdentifier: "DOCUMENT",
			DocumentName: name + "-" + version, DocumentNamespace: ns,
			CreationInfo: &v2_2.CreationInfo{Creators: creators, Created: created}}
		doc.Packages = append(doc.Packages, &v2_2.Package{PackageName: name, PackageSPDXIdentifier: rootID, PackageVersion: version,
			PackageDownloadLocation: "NOASSERTION"})
		for _, p := range pkgs {
			doc.Packages = append(doc.Packages, &v2_2.Package{PackageName: p.name, PackageSPDXIdentifier: spdxID(p), PackageVersion: p.version,
				PackageSupplier: supplier(p.supplier), PackageDownloadLocation: "NOASSERTION",
				PackageExternalReferences: []*v2_2.PackageExternalReference{{Category: "PACKAGE-MANAGER", RefType: "purl", Locator: p.purl()}}})
			doc.Relationships = append(doc.Relationships, &v2_2.Relationship{RefA: common.MakeDocElementID("", string(rootID)), RefB: common.MakeDocElementID("", string(spdxID(p))), Relationship: "CONTAINS"})
		}
		doc.Relationships = append([]*v2_2.Relationship{{RefA: common.MakeDocElementID("", "DOCUMENT"), RefB: common.MakeDocElementID("", string(rootID)), Relationship: "DESCRIBES"}}, doc.Relationships...)
		return spdxjson.Write(doc, w, spdxjson.Indent(" "))
	}
	doc := &v2_3.Document{SPDXVersion: v2_3.Version, DataLicense: v2_3.DataLicense, SPDXIdentifier: "DOCUMENT",
		DocumentName: name + "-" + version, DocumentNamespace: ns,
		CreationInfo: &v2_3.CreationInfo{Creators: creators, Created: created}}
	doc.Packages = append(doc.Packages, &v2_3.Package{PackageName: name, PackageSPDXIdentifier: rootID, PackageVersion: version,
		PackageDownloadLocation: "NOASSERTION", PrimaryPackagePurpose: "FIRMWARE"})
	for _, p := range pkgs {
		doc.Packages = append(doc.Packages, &v2_3.Package{PackageName: p.name, PackageSPDXIdentifier: spdxID(p), PackageVersion: p.version,
			PackageSupplier: supplier(p.supplier), PackageDownloadLocation: "NOASSERTION", PrimaryPackagePurpose: "LIBRARY",
			PackageExternalReferences: []*v2_3.PackageExternalReference{{Category: "PACKAGE-MANAGER", RefType: "purl", Locator: p.purl()}}})
		doc.Relationships = append(doc.Relationships, &v2_3.Relationship{RefA: common.MakeDocElementID("", string(rootID)), RefB: common.MakeDocElementID("", string(spdxID(p))), Relationship: "CONTAINS"})
	}
	doc.Relationships = append([]*v2_3.Relationship{{RefA: common.MakeDocElementID("", "DOCUMENT"), RefB: common.MakeDocElementID("", string(rootID)), Relationship: "DESCRIBES"}}, doc.Relationships...)
	return spdxjson.Write(doc, w, spdxjson.Indent(" "))
}
