package attest

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	slsa "github.com/in-toto/attestation/go/predicates/provenance/v1"
	intoto "github.com/in-toto/attestation/go/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Predicate types (the URIs cosign verify-blob-attestation --type maps
// cyclonedx, spdxjson and slsaprovenance1 to).
const (
	PredicateCycloneDX  = "https://cyclonedx.org/bom"
	PredicateSPDX       = "https://spdx.dev/Document"
	PredicateProvenance = "https://slsa.dev/provenance/v1"
)

// PayloadType is the DSSE payload type of an in-toto statement.
const PayloadType = "application/vnd.in-toto+json"

// BuildType names how fwctl describes a firmware build in SLSA provenance:
// the external parameters are the source and the release's identity.
const BuildType = "https://github.com/fwctl/fwctl/blob/main/docs/supply-chain.md#build-type-v1"

// ErrInvalid means a statement or its predicate is malformed.
var ErrInvalid = errors.New("invalid attestation")

// Subject is the artifact a statement is about: a firmware image.
type Subject struct {
	Name   string // the target path
	SHA256 []byte
}

// Input is one build input (resolved dependency) of a release.
type Input struct {
	Name   string `json:"name"`
	URI    string `json:"uri,omitempty"`
	SHA256 string `json:"sha256,omitempty"` // hex
}

// Provenance is what fwctl knows about how a release was built.
type Provenance struct {
	BuilderID      string    `json:"builder_id"`
	SourceRepo     string    `json:"source_repo,omitempty"`
	SourceRevision string    `json:"source_revision,omitempty"`
	InvocationID   string    `json:"invocation_id,omitempty"`
	StartedOn      time.Time `json:"started_on,omitzero"`
	Inputs         []Input   `json:"inputs,omitempty"`
	// Parameters are the release's identity (hardware, version, counter),
	// recorded as external parameters.
	Parameters map[string]any `json:"parameters,omitempty"`
}

func descriptor(s Subject) *intoto.ResourceDescriptor {
	return &intoto.ResourceDescriptor{Name: s.Name, Digest: map[string]string{"sha256": hex.EncodeToString(s.SHA256)}}
}

// marshal writes a protobuf message as compact JSON (protojson's output
// carries random whitespace on purpose; compacting makes it stable).
func marshal(m proto.Message) ([]byte, error) {
	b, err := protojson.Marshal(m)
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	if err := json.Compact(&out, b); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

func statement(s Subject, predicateType string, predicate *structpb.Struct) ([]byte, error) {
	if len(s.SHA256) != 32 || s.Name == "" {
		return nil, fmt.Errorf("%w: subject needs a name and a SHA-256", ErrInvalid)
	}
	st := &intoto.Statement{Type: intoto.StatementTypeUri, Subject: []*intoto.ResourceDescriptor{descriptor(s)},
		PredicateType: predicateType, Predicate: predicate}
	if err := st.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return marshal(st)
}

// SBOMStatement is the in-toto statement whose predicate is the release's
// SBOM (format "cyclonedx" or "spdx", as repo/sbom names them).
func SBOMStatement(s Subject, format string, sbomJSON []byte) ([]byte, error) {
	pt := map[string]string{"cyclonedx": PredicateCycloneDX, "spdx": PredicateSPDX}[format]
	if pt == "" {
		return nil, fmt.Errorf("%w: sbom format %q, want cyclonedx or spdx", ErrInvalid, format)
	}
	var pred structpb.Struct
	if err := protojson.Unmarshal(sbomJSON, &pred); err != nil {
		return nil, fmt.Errorf("%w: sbom is not a JSON object: %v", ErrInvalid, err)
	}
	return statement(s, pt, &pred)
}

// ProvenanceStatement is the in-toto statement with SLSA provenance v1.
func ProvenanceStatement(s Subject, p Provenance) ([]byte, error) {
	if p.BuilderID == "" {
		return nil, fmt.Errorf("%w: provenance needs a builder id (--builder-id, or a CI environment)", ErrInvalid)
	}
	ext := map[string]any{}
	if p.SourceRepo != "" {
		ext["source"] = p.SourceRepo
	}
	if p.SourceRevision != "" {
		ext["revision"] = p.SourceRevision
	}
	for k, v := range p.Parameters {
		ext[k] = v
	}
	extp, err := structpb.NewStruct(ext)
	if err != nil {
		return nil, fmt.Errorf("%w: external parameters: %v", ErrInvalid, err)
	}
	var deps []*intoto.ResourceDescriptor
	if p.SourceRepo != "" {
		d := &intoto.ResourceDescriptor{Uri: p.SourceRepo}
		if p.SourceRevision != "" {
			d.Digest = map[string]string{"gitCommit": p.SourceRevision}
		}
		deps = append(deps, d)
	}
	for _, in := range p.Inputs {
		d := &intoto.ResourceDescriptor{Name: in.Name, Uri: in.URI}
		if in.SHA256 != "" {
			d.Digest = map[string]string{"sha256": in.SHA256}
		}
		deps = append(deps, d)
	}
	prov := &slsa.Provenance{
		BuildDefinition: &slsa.BuildDefinition{BuildType: BuildType, ExternalParameters: extp, ResolvedDependencies: deps},
		RunDetails:      &slsa.RunDetails{Builder: &slsa.Builder{Id: p.BuilderID}},
	}
	if p.InvocationID != "" || !p.StartedOn.IsZero() {
		prov.RunDetails.Metadata = &slsa.BuildMetadata{InvocationId: p.InvocationID}
		if !p.StartedOn.IsZero() {
			prov.RunDetails.Metadata.StartedOn = timestamppb.New(p.StartedOn)
		}
	}
	if err := prov.Validate(); err != nil {
		return nil, fmt.Errorf("%w: provenance: %v", ErrInvalid, err)
	}
	b, err := marshal(prov)
	if err != nil {
		return nil, err
	}
	var pred structpb.Struct
	if err := protojson.Unmarshal(b, &pred); err != nil {
		return nil, err
	}
	return statement(s, PredicateProvenance, &pred)
}

// Statement is a parsed in-toto statement.
type Statement struct {
	PredicateType string
	Subjects      []Subject
	// Builder is the SLSA provenance's builder id ("" for other predicates).
	Builder string
	// Predicate is the predicate as JSON.
	Predicate []byte
}

// ParseStatement reads an in-toto v1 statement (a DSSE payload).
func ParseStatement(b []byte) (*Statement, error) {
	var st intoto.Statement
	if err := protojson.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("%w: statement: %v", ErrInvalid, err)
	}
	if err := st.Validate(); err != nil {
		return nil, fmt.Errorf("%w: statement: %v", ErrInvalid, err)
	}
	out := &Statement{PredicateType: st.GetPredicateType()}
	for _, s := range st.GetSubject() {
		d, err := hex.DecodeString(s.GetDigest()["sha256"])
		if err != nil || len(d) != 32 {
			continue
		}
		out.Subjects = append(out.Subjects, Subject{Name: s.GetName(), SHA256: d})
	}
	pred, err := marshal(st.GetPredicate())
	if err != nil {
		return nil, err
	}
	out.Predicate = pred
	if out.PredicateType == PredicateProvenance {
		var p slsa.Provenance
		if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(pred, &p); err != nil {
			return nil, fmt.Errorf("%w: provenance predicate: %v", ErrInvalid, err)
		}
		out.Builder = p.GetRunDetails().GetBuilder().GetId()
	}
	return out, nil
}
