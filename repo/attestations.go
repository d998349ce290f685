package repo

import (
	"context"
	"crypto"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/fwctl/fwctl/manifests"
	"github.com/fwctl/fwctl/repo/layout"
	"github.com/fwctl/fwctl/repo/verify"
)

// Attestation bundles sit next to the image they are about, as targets of
// their own (so the signed targets metadata vouches for them too):
// IMAGE.sbom.intoto.sigstore.json and IMAGE.provenance.intoto.sigstore.json.
const (
	SBOMAttestationSuffix       = ".sbom.intoto" + BundleSuffix
	ProvenanceAttestationSuffix = ".provenance.intoto" + BundleSuffix
)

// AttestSubject is a staged release an Attestor writes attestations for.
type AttestSubject struct {
	Path     string // the image's target path
	SHA256   []byte
	Firmware *manifests.Firmware
	// SBOM is the bound SBOM's bytes (checked against custom.fw.sbom), nil
	// when the release has none.
	SBOM []byte
}

// Attestation is one signed attestation bundle for a subject.
type Attestation struct {
	Suffix   string // SBOMAttestationSuffix or ProvenanceAttestationSuffix
	Bundle   []byte
	LogIndex int64 // -1 when not logged
}

// Attestor writes the attestations of one release, signing with the
// release key (pubPEM is its public key). transparency/attest provides
// the real one; repo stays free of cosign.
type Attestor func(ctx context.Context, key crypto.Signer, pubPEM []byte, s AttestSubject) ([]Attestation, error)

// AttestTargets runs a for every staged full-image release that is new
// since the last publish and has no provenance attestation yet and stages the bundles it returns next to the
// image; it reports those recorded in a log. Run it before Publish (Release does), so targets metadata signs
// them.
func (ws *Workspace) AttestTargets(ctx context.Context, a Attestor) ([]Logged, error) {
	staged, err := ws.stagedTargets()
	if err != nil {
		return nil, err
	}
	paths := make([]string, 0, len(staged.Signed.Targets))
	for p := range staged.Signed.Targets {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	released, err := ws.publishedTargetPaths()
	if err != nil {
		return nil, err
	}
	var todo []AttestSubject
	for _, p := range paths {
		fw, err := verify.TargetFirmware(staged.Signed.Targets[p])
		if err != nil || fw.Kind != manifests.KindFull {
			continue
		}
		if _, done := staged.Signed.Targets[p+ProvenanceAttestationSuffix]; done {
			continue
		}
		// A release already published without attestations is left so: a
		// provenance written now would claim a build this run did not do.
		if released[p] {
			continue
		}
		s := AttestSubject{Path: p, SHA256: staged.Signed.Targets[p].Hashes["sha256"], Firmware: fw}
		if fw.SBOM != nil && fw.SBOM.Legacy == "" {
			file := filepath.Join(ws.Dir, "targets", filepath.FromSlash(fw.SBOM.Path))
			data, err := os.ReadFile(file)
			if err != nil {
				return nil, fmt.Errorf("attest %s: %w", p, err)
			}
			if _, err := CheckSBOM(file, fw, data); err != nil {
				return nil, fmt.Errorf("attest %s: %w", p, err)
			}
			s.SBOM = data
		}
		todo = append(todo, s)
	}
	if len(todo) == 0 {
		return nil, nil
	}
	key, pub, err := ws.ReleaseKey()
	if err != nil {
		return nil, err
	}
	var out []Logged
	for _, s := range todo {
		as, err := a(ctx, key, pub, s)
		if err != nil {
			return out, fmt.Errorf("attest %s: %w", s.Path, err)
		}
		for _, at := range as {
			if at.Suffix != SBOMAttestationSuffix && at.Suffix != ProvenanceAttestationSuffix {
				return out, fmt.Errorf("attest %s: unknown attestation suffix %q", s.Path, at.Suffix)
			}
			bpath := s.Path + at.Suffix
			if err := ws.putFile(staged, bpath, at.Bundle); err != nil {
				return out, err
			}
			if at.LogIndex >= 0 { // Logged lists log entries; unlogged bundles are only staged
				out = append(out, Logged{Path: s.Path, SHA256: fmt.Sprintf("%x", s.SHA256), LogIndex: at.LogIndex, Bundle: bpath})
			}
		}
	}
	return out, writeMetadata(ws.stagedTargetsPath(), staged)
}

// IsAttestation reports whether a target path is an attestation bundle.
func IsAttestation(path string) bool {
	return strings.HasSuffix(path, SBOMAttestationSuffix) || strings.HasSuffix(path, ProvenanceAttestationSuffix)
}

// publishedTargetPaths is the set of target paths of the newest targets
// version this workspace published (WORKSPACE/metadata/N.targets.json).
func (ws *Workspace) publishedTargetPaths() (map[string]bool, error) {
	entries, err := os.ReadDir(filepath.Join(ws.Dir, "metadata"))
	if err != nil {
		return nil, err
	}
	var newest int64
	for _, e := range entries {
		if v, role, ok := layout.ParseVersioned(e.Name()); ok && role == metadata.TARGETS && v > newest {
			newest = v
		}
	}
	out := map[string]bool{}
	if newest == 0 {
		return out, nil
	}
	md, err := metadata.Targets().FromFile(filepath.Join(ws.Dir, "metadata", layout.Versioned(newest, metadata.TARGETS)))
	if err != nil {
		return nil, fmt.Errorf("published targets v%d: %w", newest, err)
	}
	for p := range md.Signed.Targets {
		out[p] = true
	}
	return out, nil
}
