package attest

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/fwctl/fwctl/internal/testenv"
	"github.com/fwctl/fwctl/transparency"
	"github.com/fwctl/fwctl/transparency/rekortest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	rekortest.Stop()
	os.Exit(code)
}

func newKey(t *testing.T) (*ecdsa.PrivateKey, []byte) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return k, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

var testProvenance = Provenance{BuilderID: "https://github.com/acme/fw/.github/workflows/release.yml@refs/heads/main",
	SourceRepo: "git+https://github.com/acme/fw", SourceRevision: "4f1c7a0e0b3d2c1a9f8e7d6c5b4a39281706f5e4",
	Inputs:     []Input{{Name: "rootfs.tar", SHA256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"}},
	Parameters: map[string]any{"hardware": []any{"acme-gw-v2"}, "version": "1.0.0", "counter": float64(1)}}

func statements(t *testing.T, subject Subject) map[string][]byte {
	t.Helper()
	sb, err := os.ReadFile("../../repo/sbom/testdata/rootfs-v1.cdx.json")
	if err != nil {
		t.Fatal(err)
	}
	sbomSt, err := SBOMStatement(subject, "cyclonedx", sb)
	if err != nil {
		t.Fatal(err)
	}
	provSt, err := ProvenanceStatement(subject, testProvenance)
	if err != nil {
		t.Fatal(err)
	}
	return map[string][]byte{"sbom": sbomSt, "provenance": provSt}
}

func TestStatements(t *testing.T) {
	img := []byte("firmware image")
	d := sha256.Sum256(img)
	sts := statements(t, Subject{Name: "acme-gw-v2/1.0.0/fw.img", SHA256: d[:]})
	st, err := ParseStatement(sts["provenance"])
	if err != nil {
		t.Fatal(err)
	}
	if st.PredicateType != PredicateProvenance || st.Builder != testProvenance.BuilderID || !bytes.Equal(st.Subjects[0].SHA256, d[:]) {
		t.Fatalf("provenance statement %+v", st)
	}
	var j struct {
		Type      string `json:"_type"`
		Predicate struct {
			BuildDefinition struct {
				ResolvedDependencies []struct {
					URI    string            `json:"uri"`
					Digest map[string]string `json:"digest"`
				} `json:"resolvedDependencies"`
			} `json:"buildDefinition"`
		} `json:"predicate"`
	}
	if err := json.Unmarshal(sts["provenance"], &j); err != nil || j.Type != "https://in-toto.io/Statement/v1" ||
		len(j.Predicate.BuildDefinition.ResolvedDependencies) != 2 || j.Predicate.BuildDefinition.ResolvedDependencies[0].Digest["gitCommit"] != testProvenance.SourceRevision {
		t.Fatalf("provenance JSON %s: %v", sts["provenance"], err)
	}
	st, err = ParseStatement(sts["sbom"])
	if err != nil || st.PredicateType != PredicateCycloneDX || !bytes.Contains(st.Predicate, []byte(`"pkg:deb/debian/libc6@2.36-9%2Bdeb12u7?arch=amd64"`)) {
		t.Fatalf("sbom statement: %v", err)
	}
	for _, tt := range []struct {
		name string
		err  error
	}{
		{"no builder", func() error {
			_, err := ProvenanceStatement(Subject{Name: "x", SHA256: d[:]}, Provenance{})
			return err
		}()},
		{"bad format", func() error {
			_, err := SBOMStatement(Subject{Name: "x", SHA256: d[:]}, "swid", []byte("{}"))
			return err
		}()},
		{"sbom not an object", func() error {
			_, err := SBOMStatement(Subject{Name: "x", SHA256: d[:]}, "spdx", []byte("[1]"))
			return err
		}()},
		{"no digest", func() error { _, err := SBOMStatement(Subject{Name: "x"}, "spdx", []byte("{}")); return err }()},
	} {
		if !errors.Is(tt.err, ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", tt.name, tt.err)
		}
	}
}

func TestProvenanceFromEnv(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	gh := ProvenanceFromEnv(env(map[string]string{"GITHUB_ACTIONS": "true", "GITHUB_SERVER_URL": "https://github.com", "GITHUB_REPOSITORY": "acme/fw",
		"GITHUB_SHA": "abc", "GITHUB_WORKFLOW_REF": "acme/fw/.github/workflows/release.yml@refs/tags/v1", "GITHUB_RUN_ID": "42", "GITHUB_RUN_ATTEMPT": "1"}))
	if gh.BuilderID != "https://github.com/acme/fw/.github/workflows/release.yml@refs/tags/v1" || gh.SourceRepo != "git+https://github.com/acme/fw" ||
		gh.SourceRevision != "abc" || gh.InvocationID != "https://github.com/acme/fw/actions/runs/42/attempts/1" {
		t.Errorf("GitHub: %+v", gh)
	}
	gl := ProvenanceFromEnv(env(map[string]string{"GITLAB_CI": "true", "CI_SERVER_URL": "https://gitlab.com", "CI_PROJECT_PATH": "acme/fw",
		"CI_PROJECT_URL": "https://gitlab.com/acme/fw", "CI_COMMIT_SHA": "def", "CI_RUNNER_ID": "7", "CI_JOB_URL": "https://gitlab.com/acme/fw/-/jobs/9",
		"CI_JOB_STARTED_AT": "2026-12-01T10:00:00Z"}))
	if gl.BuilderID != "https://gitlab.com/acme/fw/-/runners/7" || gl.SourceRevision != "def" || gl.StartedOn.IsZero() {
		t.Errorf("GitLab: %+v", gl)
	}
	if p := ProvenanceFromEnv(env(nil)); p.BuilderID != "" {
		t.Errorf("outside CI: %+v", p)
	}
	if p := gh.Merge(Provenance{BuilderID: "flag"}); p.BuilderID != "flag" || p.SourceRevision != "abc" {
		t.Errorf("flags over env: %+v", p)
	}
}

func TestSignVerifyOffline(t *testing.T) {
	key, pub := newKey(t)
	_, other := newKey(t)
	img := []byte("firmware image")
	d := sha256.Sum256(img)
	sts := statements(t, Subject{Name: "hw/1/fw.img", SHA256: d[:]})
	s, err := Sign(context.Background(), key, pub, sts["provenance"], "")
	if err != nil {
		t.Fatal(err)
	}
	if s.LogIndex != -1 {
		t.Errorf("log index %d without a log", s.LogIndex)
	}
	st, err := Verify(s.Bundle, pub, d[:])
	if err != nil || st.Builder != testProvenance.BuilderID {
		t.Fatalf("Verify = %+v, %v", st, err)
	}
	if _, err := Verify(s.Bundle, other, d[:]); !errors.Is(err, ErrVerify) {
		t.Errorf("other key: %v", err)
	}
	o := sha256.Sum256([]byte("other image"))
	if _, err := Verify(s.Bundle, pub, o[:]); !errors.Is(err, ErrVerify) {
		t.Errorf("other image: %v", err)
	}
	tampered := bytes.Replace(s.Bundle, []byte(`"payload":"`), []byte(`"payload":"AAAA`), 1)
	if _, err := Verify(tampered, pub, d[:]); err == nil {
		t.Error("tampered payload verifies")
	}
	if _, err := Verify([]byte("{"), pub, d[:]); !errors.Is(err, ErrVerify) {
		t.Errorf("junk: %v", err)
	}
}

func cosignPath(t *testing.T) string {
	t.Helper()
	p := filepath.Join(rekortest.ToolsDir(), "cosign")
	if _, err := os.Stat(p); err == nil {
		return p
	}
	return testenv.LookPath(t, "cosign", "run scripts/cosign.sh to build it into "+rekortest.ToolsDir())
}

// TestCosignVerifyBlobAttestation: the real cosign verifies the SBOM and
// SLSA provenance attestations, logged in the real Rekor, with the release
// key, and refuses another key, another image and the wrong predicate type.
func TestCosignVerifyBlobAttestation(t *testing.T) {
	url, logPEM := rekortest.Need(t)
	cosign := cosignPath(t)
	key, pub := newKey(t)
	_, other := newKey(t)
	dir := t.TempDir()
	path := func(n string) string { return filepath.Join(dir, n) }
	img := []byte("firmware image for cosign")
	d := sha256.Sum256(img)
	sts := statements(t, Subject{Name: "hw/1/fw.img", SHA256: d[:]})
	root, err := transparency.TrustedRoot(url, logPEM, time.Now().Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{"trusted_root.json": root, "release.pub": pub, "other.pub": other, "fw.img": img, "tampered.img": append([]byte("x"), img...)}
	for _, n := range []string{"sbom", "provenance"} {
		s, err := Sign(context.Background(), key, pub, sts[n], url)
		if err != nil {
			t.Fatal(err)
		}
		if s.LogIndex < 0 {
			t.Fatalf("%s: not logged", n)
		}
		files[n+".sigstore.json"] = s.Bundle
		off, err := Sign(context.Background(), key, pub, sts[n], "")
		if err != nil {
			t.Fatal(err)
		}
		files[n+".offline.sigstore.json"] = off.Bundle
	}
	for n, b := range files {
		if err := os.WriteFile(path(n), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	run := func(bundle, key, typ, image string, extra ...string) error {
		args := append([]string{"verify-blob-attestation", "--new-bundle-format", "--trusted-root", path("trusted_root.json"),
			"--key", path(key), "--bundle", path(bundle), "--type", typ}, extra...)
		cmd := exec.Command(cosign, append(args, path(image))...)
		cmd.Env = append(os.Environ(), "TUF_ROOT="+path("tuf"), "HOME="+dir)
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("%w: %s", err, bytes.TrimSpace(out))
		}
		return nil
	}
	for _, tt := range []struct {
		name, bundle, key, typ, image string
		extra                         []string
		ok                            bool
	}{
		{"sbom", "sbom.sigstore.json", "release.pub", "cyclonedx", "fw.img", nil, true},
		{"provenance", "provenance.sigstore.json", "release.pub", "slsaprovenance1", "fw.img", nil, true},
		{"offline sbom", "sbom.offline.sigstore.json", "release.pub", "cyclonedx", "fw.img", []string{"--insecure-ignore-tlog=true"}, true},
		{"offline needs the tlog flag", "sbom.offline.sigstore.json", "release.pub", "cyclonedx", "fw.img", nil, false},
		{"wrong key", "provenance.sigstore.json", "other.pub", "slsaprovenance1", "fw.img", nil, false},
		{"tampered image", "provenance.sigstore.json", "release.pub", "slsaprovenance1", "tampered.img", nil, false},
		{"wrong predicate type", "sbom.sigstore.json", "release.pub", "slsaprovenance1", "fw.img", nil, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := run(tt.bundle, tt.key, tt.typ, tt.image, tt.extra...)
			if tt.ok && err != nil {
				t.Errorf("cosign verify-blob-attestation: %v", err)
			}
			if !tt.ok && err == nil {
				t.Error("cosign verify-blob-attestation accepted it")
			}
		})
	}
}

// FuzzVerify: bundles and statements are untrusted bytes (read from a
// repository): Verify and ParseStatement must fail cleanly, never panic.
func FuzzVerify(f *testing.F) {
	k, pub, err := fuzzKey()
	if err != nil {
		f.Fatal(err)
	}
	d := sha256.Sum256([]byte("img"))
	st, err := ProvenanceStatement(Subject{Name: "hw/1/fw.img", SHA256: d[:]}, testProvenance)
	if err != nil {
		f.Fatal(err)
	}
	s, err := Sign(context.Background(), k, pub, st, "")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(s.Bundle, st)
	f.Add([]byte(`{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json"}`), []byte(`{"_type":"https://in-toto.io/Statement/v1"}`))
	f.Fuzz(func(t *testing.T, bundle, statement []byte) {
		Verify(bundle, pub, d[:])
		ParseStatement(statement)
	})
}

func fuzzKey() (*ecdsa.PrivateKey, []byte, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		return nil, nil, err
	}
	return k, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}
