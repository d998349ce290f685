package exposure

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	cdx "github.com/CycloneDX/cyclonedx-go"
	"github.com/openvex/go-vex/pkg/vex"
)

// Statement is a VEX statement: vulnerability Vuln does not affect (Status
// "not_affected") product Product, a purl with or without version (without:
// every version).
type Statement struct {
	Vuln          string `json:"vulnerability"`
	Product       string `json:"product"`
	Status        string `json:"status"`
	Justification string `json:"justification,omitempty"`
	Source        string `json:"source,omitempty"`
}

// ParseOpenVEX reads an OpenVEX document with the OpenVEX Go library.
func ParseOpenVEX(file string, b []byte) ([]Statement, error) {
	doc, err := vex.Parse(b)
	if err != nil {
		return nil, &InputError{File: file, Err: fmt.Errorf("not an OpenVEX document: %w", err)}
	}
	var out []Statement
	for i, s := range doc.Statements {
		field := fmt.Sprintf("statements[%d]", i)
		if err := s.Validate(); err != nil {
			return nil, &InputError{File: file, Field: field, Err: err}
		}
		names := []string{string(s.Vulnerability.Name)}
		for _, a := range s.Vulnerability.Aliases {
			names = append(names, string(a))
		}
		if names[0] == "" {
			return nil, &InputError{File: file, Field: field + ".vulnerability.name", Err: errors.New("missing")}
		}
		if len(s.Products) == 0 {
			return nil, &InputError{File: file, Field: field + ".products", Err: errors.New("missing: a statement names the products (purls) it is about")}
		}
		for j, p := range s.Products {
			// The component itself, and its subcomponents: a statement about
			// a firmware image's openssl names the image and the package.
			ids := []string{}
			for _, sc := range p.Subcomponents {
				ids = append(ids, componentID(sc.Component))
			}
			if len(ids) == 0 {
				ids = append(ids, componentID(p.Component))
			}
			for _, id := range ids {
				if !strings.HasPrefix(id, "pkg:") {
					return nil, &InputError{File: file, Field: fmt.Sprintf("%s.products[%d]", field, j), Err: fmt.Errorf("product %q: want a purl (pkg:…)", id)}
				}
				for _, n := range names {
					out = append(out, Statement{Vuln: n, Product: id, Status: string(s.Status), Justification: string(s.Justification), Source: file})
				}
			}
		}
	}
	return out, nil
}

func componentID(c vex.Component) string {
	if p := c.Identifiers[vex.PURL]; p != "" {
		return p
	}
	return c.ID
}

// ParseCycloneDXVEX reads the vulnerabilities of a CycloneDX document
// (CycloneDX VEX) with the CycloneDX Go library: each analysis state
// applies to the components it affects, by bom-ref (resolved to the
// component's purl) or by purl.
func ParseCycloneDXVEX(file string, b []byte) ([]Statement, error) {
	var bom cdx.BOM
	if err := json.Unmarshal(b, &bom); err != nil {
		return nil, &InputError{File: file, Err: fmt.Errorf("not a CycloneDX JSON document: %w", err)}
	}
	refs := map[string]string{}
	if bom.Components != nil {
		for _, c := range *bom.Components {
			if c.BOMRef != "" && c.PackageURL != "" {
				refs[c.BOMRef] = c.PackageURL
			}
		}
	}
	if bom.Vulnerabilities == nil {
		return nil, &InputError{File: file, Field: "vulnerabilities", Err: errors.New("missing: a CycloneDX VEX document lists vulnerabilities with an analysis")}
	}
	var out []Statement
	for i, v := range *bom.Vulnerabilities {
		field := fmt.Sprintf("vulnerabilities[%d]", i)
		if v.ID == "" {
			return nil, &InputError{File: file, Field: field + ".id", Err: errors.New("missing")}
		}
		if v.Analysis == nil || v.Analysis.State == "" {
			return nil, &InputError{File: file, Field: field + ".analysis.state", Err: errors.New("missing: want not_affected, exploitable, in_triage, resolved, false_positive")}
		}
		if v.Affects == nil || len(*v.Affects) == 0 {
			return nil, &InputError{File: file, Field: field + ".affects", Err: errors.New("missing: which components the analysis is about")}
		}
		status := string(v.Analysis.State)
		if v.Analysis.State == cdx.IASFalsePositive || v.Analysis.State == cdx.IASResolved {
			status = string(cdx.IASNotAffected)
		}
		for j, a := range *v.Affects {
			p := a.Ref
			if r, ok := refs[p]; ok {
				p = r
			}
			if !strings.HasPrefix(p, "pkg:") {
				return nil, &InputError{File: file, Field: fmt.Sprintf("%s.affects[%d].ref", field, j), Err: fmt.Errorf("%q is neither a purl nor the bom-ref of a component with one", a.Ref)}
			}
			out = append(out, Statement{Vuln: v.ID, Product: p, Status: status, Justification: string(v.Analysis.Justification), Source: file})
		}
	}
	return out, nil
}
