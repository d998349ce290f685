package fwctlcli

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fwctl/fwctl/internal/cli"
	"github.com/fwctl/fwctl/internal/testenv"
	"github.com/fwctl/fwctl/repo"
	"github.com/fwctl/fwctl/transparency"
	"github.com/fwctl/fwctl/transparency/rekortest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	rekortest.Stop()
	os.Exit(code)
}

// fwctl runs the fwctl command line in-process and returns its output and
// exit code.
func fwctl(t *testing.T, args ...string) (string, int) {
	t.Helper()
	var out bytes.Buffer
	a := &app{}
	root := a.command()
	a.out = &cli.Output{Out: &out, Err: &out}
	root.SetArgs(args)
	err := root.Execute()
	a.out.JSON = a.json
	if err != nil {
		return out.String() + err.Error(), a.out.Fail(err)
	}
	return out.String(), cli.ExitOK
}

func mustFwctl(t *testing.T, args ...string) string {
	t.Helper()
	out, code := fwctl(t, args...)
	if code != 0 {
		t.Fatalf("fwctl %s: exit %d: %s", strings.Join(args, " "), code, out)
	}
	return out
}

// TestPublishAttestations: fwctl publish --attest --rekor writes the SBOM and
// SLSA provenance attestations of a release as targets next to the image,
// logged in the real Rekor; the real cosign verify-blob-attestation accepts
// them with the release key; fwctl verify --require-provenance accepts the
// builder that built every release and refuses another builder and a
// release published without provenance.
func TestPublishAttestations(t *testing.T) {
	url, logPEM := rekortest.Need(t)
	cosign := filepath.Join(rekortest.ToolsDir(), "cosign")
	if _, err := os.Stat(cosign); err != nil {
		cosign = testenv.LookPath(t, "cosign", "run scripts/cosign.sh")
	}
	t.Setenv("FWCTL_PASSPHRASE", "correct-horse-battery")
	for _, k := range []string{"GITHUB_ACTIONS", "GITLAB_CI"} {
		t.Setenv(k, "")
	}
	dir := t.TempDir()
	p := func(n string) string { return filepath.Join(dir, n) }
	ws, pub := p("ws"), p("pub")
	os.WriteFile(p("fw1.img"), []byte("firmware one"), 0o644)
	os.WriteFile(p("fw2.img"), []byte("firmware two"), 0o644)
	const builder = "https://github.com/acme/fw/.github/workflows/release.yml@refs/heads/main"
	mustFwctl(t, "init", ws)
	mustFwctl(t, "-w", ws, "target", "add", p("fw1.img"), "--hardware", "hw1", "--version", "1.0", "--counter", "1",
		"--sbom", "../../repo/sbom/testdata/rootfs-v1.spdx.json", "--support-until", "2030-12-31")
	if out, code := fwctl(t, "-w", ws, "publish", "-o", pub, "--attest", "--rekor", url); code != cli.ExitUsage || !strings.Contains(out, "--builder-id") {
		t.Fatalf("publish --attest without a builder: exit %d: %s", code, out)
	}
	out := mustFwctl(t, "-w", ws, "publish", "-o", pub, "--rekor", url, "--attest", "--builder-id", builder,
		"--source-repo", "git+https://github.com/acme/fw", "--source-revision", "4f1c7a0e0b3d2c1a9f8e7d6c5b4a39281706f5e4",
		"--build-input", "rootfs.tar=9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08")
	for _, s := range []string{repo.SBOMAttestationSuffix, repo.ProvenanceAttestationSuffix} {
		if !strings.Contains(out, "hw1/1.0/fw1.img"+s) {
			t.Errorf("publish output does not name the %s attestation:\n%s", s, out)
		}
	}

	root, err := transparency.TrustedRoot(url, logPEM, time.Now().Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(p("trusted_root.json"), root, 0o644)
	cosignVerify := func(suffix, typ string) error {
		cmd := exec.Command(cosign, "verify-blob-attestation", "--new-bundle-format", "--trusted-root", p("trusted_root.json"),
			"--key", filepath.Join(ws, "release.pub"), "--type", typ,
			"--bundle", filepath.Join(ws, "targets", "hw1", "1.0", "fw1.img"+suffix), p("fw1.img"))
		cmd.Env = append(os.Environ(), "TUF_ROOT="+p("tuf"), "HOME="+dir)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("%w: %s", err, out)
		}
		return nil
	}
	if err := cosignVerify(repo.SBOMAttestationSuffix, "spdxjson"); err != nil {
		t.Errorf("cosign verify-blob-attestation sbom: %v", err)
	}
	if err := cosignVerify(repo.ProvenanceAttestationSuffix, "slsaprovenance1"); err != nil {
		t.Errorf("cosign verify-blob-attestation provenance: %v", err)
	}

	verifyArgs := func(b string) []string {
		return []string{"verify", "--root", filepath.Join(ws, "metadata", "1.root.json"), "--repo", pub,
			"--require-provenance", b, "--release-key", filepath.Join(ws, "release.pub")}
	}
	mustFwctl(t, verifyArgs(builder)...)
	if out, code := fwctl(t, verifyArgs("https://evil.example/builder")...); code != cli.ExitRefused || !strings.Contains(out, `built by "`+builder+`"`) {
		t.Errorf("another builder: exit %d: %s", code, out)
	}
	if out, code := fwctl(t, "verify", "--root", filepath.Join(ws, "metadata", "1.root.json"), "--repo", pub, "--require-provenance", builder); code != cli.ExitUsage {
		t.Errorf("without --release-key: exit %d: %s", code, out)
	}
	// A release published without --attest has no provenance: refused.
	mustFwctl(t, "-w", ws, "target", "add", p("fw2.img"), "--hardware", "hw1", "--version", "1.1", "--counter", "2")
	mustFwctl(t, "-w", ws, "publish", "-o", pub)
	out, code := fwctl(t, verifyArgs(builder)...)
	if code != cli.ExitRefused || !strings.Contains(out, "hw1/1.1/fw2.img (1.1): no provenance attestation") {
		t.Errorf("release without provenance: exit %d: %s", code, out)
	}
	if !errors.Is(fmt.Errorf("%w", ErrNoProvenance), ErrNoProvenance) {
		t.Fatal("unreachable")
	}
}
