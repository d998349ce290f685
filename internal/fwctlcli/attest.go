package fwctlcli

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/fwctl/fwctl/internal/cli"
	"github.com/fwctl/fwctl/manifests"
	"github.com/fwctl/fwctl/repo"
	"github.com/fwctl/fwctl/repo/layout"
	"github.com/fwctl/fwctl/repo/verify"
	"github.com/fwctl/fwctl/transparency/attest"
)

// attestFlags are publish's attestation flags.
type attestFlags struct {
	on     bool
	prov   attest.Provenance
	inputs []string
}

func (f *attestFlags) register(c *cobra.Command) {
	c.Flags().BoolVar(&f.on, "attest", false, "write in-toto attestations of each new release (its SBOM, SLSA provenance), signed with the release key, logged with --rekor, published next to the image")
	c.Flags().StringVar(&f.prov.BuilderID, "builder-id", "", "SLSA builder id for the provenance (default: from GitHub Actions or GitLab CI variables)")
	c.Flags().StringVar(&f.prov.SourceRepo, "source-repo", "", "source repository URI for the provenance (default: from the CI environment)")
	c.Flags().StringVar(&f.prov.SourceRevision, "source-revision", "", "source revision (git commit) for the provenance (default: from the CI environment)")
	c.Flags().StringSliceVar(&f.inputs, "build-input", nil, "a build input NAME=SHA256 for the provenance (repeatable)")
}

// attestor returns the Attestor publish hands to Release, nil without --attest.
func (f *attestFlags) attestor(rekorURL string) (repo.Attestor, error) {
	if !f.on {
		if f.prov.BuilderID != "" || len(f.inputs) > 0 {
			return nil, errors.New("--builder-id and --build-input describe attestations: add --attest")
		}
		return nil, nil
	}
	prov := attest.ProvenanceFromEnv(os.Getenv).Merge(f.prov)
	for _, in := range f.inputs {
		name, sum, ok := strings.Cut(in, "=")
		if d, err := hex.DecodeString(sum); !ok || name == "" || err != nil || len(d) != 32 {
			return nil, fmt.Errorf("--build-input %q: want NAME=SHA256 (64 hex digits)", in)
		}
		prov.Inputs = append(prov.Inputs, attest.Input{Name: name, SHA256: strings.ToLower(sum)})
	}
	if prov.BuilderID == "" {
		return nil, errors.New("--attest needs a builder id for the SLSA provenance: run in GitHub Actions or GitLab CI, or pass --builder-id URI")
	}
	return func(ctx context.Context, key crypto.Signer, pub []byte, s repo.AttestSubject) ([]repo.Attestation, error) {
		subj := attest.Subject{Name: s.Path, SHA256: s.SHA256}
		var out []repo.Attestation
		sign := func(suffix string, st []byte) error {
			signed, err := attest.Sign(ctx, key, pub, st, rekorURL)
			if err != nil {
				return err
			}
			out = append(out, repo.Attestation{Suffix: suffix, Bundle: signed.Bundle, LogIndex: signed.LogIndex})
			return nil
		}
		if s.SBOM != nil {
			st, err := attest.SBOMStatement(subj, s.Firmware.SBOM.Format, s.SBOM)
			if err != nil {
				return nil, err
			}
			if err := sign(repo.SBOMAttestationSuffix, st); err != nil {
				return nil, err
			}
		}
		p := prov
		p.Parameters = map[string]any{"hardware": anySlice(s.Firmware.Hardware), "version": s.Firmware.Version, "counter": float64(s.Firmware.Counter)}
		if s.Firmware.SBOM != nil && s.Firmware.SBOM.Legacy == "" {
			p.Parameters["sbom"] = map[string]any{"path": s.Firmware.SBOM.Path, "sha256": s.Firmware.SBOM.SHA256}
		}
		st, err := attest.ProvenanceStatement(subj, p)
		if err != nil {
			return nil, err
		}
		if err := sign(repo.ProvenanceAttestationSuffix, st); err != nil {
			return nil, err
		}
		return out, nil
	}, nil
}

func anySlice(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

// ErrNoProvenance means a release has no provenance from the required
// builder.
var ErrNoProvenance = errors.New("release without provenance from the required builder")

// checkProvenance requires of every full-image release in a verified
// repository a provenance attestation (a signed target next to the image)
// that verifies with the release key pubPEM and names builder.
func checkProvenance(ctx context.Context, src verify.Source, res *verify.Result, pubPEM []byte, builder string) (int, error) {
	byPath := map[string]verify.Target{}
	for _, t := range res.Targets {
		byPath[t.Path] = t
	}
	var bad []string
	n := 0
	for _, t := range res.Targets {
		if t.Firmware == nil || t.Firmware.Kind != manifests.KindFull {
			continue
		}
		n++
		why := func() string {
			at, ok := byPath[t.Path+repo.ProvenanceAttestationSuffix]
			if !ok {
				return "no provenance attestation"
			}
			sum, _ := hex.DecodeString(at.SHA256)
			b, err := verify.ReadLimited(ctx, src, layout.TargetsDir+"/"+layout.HashedTarget(at.Path, sum), at.Length, true)
			if err != nil {
				return err.Error()
			}
			if got := sha256.Sum256(b); !bytes.Equal(got[:], sum) {
				return at.Path + " does not match its signed hash"
			}
			img, _ := hex.DecodeString(t.SHA256)
			st, err := attest.Verify(b, pubPEM, img)
			if err != nil {
				return err.Error()
			}
			if st.PredicateType != attest.PredicateProvenance {
				return "predicate " + st.PredicateType + ", not SLSA provenance v1"
			}
			if st.Builder != builder {
				return fmt.Sprintf("built by %q", st.Builder)
			}
			return ""
		}()
		if why != "" {
			bad = append(bad, fmt.Sprintf("%s (%s): %s", t.Path, t.Firmware.Version, why))
		}
	}
	if len(bad) > 0 {
		return n, fmt.Errorf("%w %s: %s", ErrNoProvenance, builder, strings.Join(bad, "; "))
	}
	return n, nil
}

// requireProvenanceOf is verify --require-provenance: a usage error without
// the release key, exit 3 when a release lacks provenance from builder.
func requireProvenanceOf(diag io.Writer, src verify.Source, res *verify.Result, releaseKey, builder string) error {
	if releaseKey == "" {
		return usage(errors.New("--require-provenance needs --release-key FILE (the workspace's release.pub)"))
	}
	pub, err := os.ReadFile(releaseKey)
	if err != nil {
		return usage(err)
	}
	n, err := checkProvenance(context.Background(), src, res, pub, builder)
	if err != nil {
		return cli.WithCode(cli.ExitRefused, fmt.Errorf("verify %s: %w", src, err))
	}
	fmt.Fprintf(diag, "provenance: all %d releases built by %s, signed with %s\n", n, builder, releaseKey)
	return nil
}
