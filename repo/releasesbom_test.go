package repo

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fwctl/fwctl/manifests"
	"github.com/fwctl/fwctl/repo/sbom"
)

func readTestSBOM(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("sbom", "testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestAddTargetSBOM: the SBOM becomes a target of its own, bound by path,
// format and hash in custom.fw.sbom (schema 2), with the support period.
func TestAddTargetSBOM(t *testing.T) {
	w := initWorkspace(t, InitOptions{})
	dir := t.TempDir()
	img := filepath.Join(dir, "fw.img")
	os.WriteFile(img, []byte("firmware"), 0o644)
	sb := filepath.Join(dir, "rootfs.spdx.json")
	os.WriteFile(sb, readTestSBOM(t, "rootfs-v1.spdx.json"), 0o644)
	tg, err := w.AddTarget(img, AddOptions{Hardware: []string{"hw1"}, Version: "1.0", Counter: 1, SBOM: sb, SupportUntil: "2030-12-31"})
	if err != nil {
		t.Fatal(err)
	}
	fw := tg.Firmware
	if fw.Schema != 2 || fw.SupportUntil != "2030-12-31" || fw.SBOM == nil || fw.SBOM.Path != "hw1/1.0/fw.img.spdx.json" || fw.SBOM.Format != sbom.FormatSPDX {
		t.Fatalf("firmware %+v sbom %+v", fw, fw.SBOM)
	}
	ts, err := w.Targets()
	if err != nil {
		t.Fatal(err)
	}
	var found bool
	for _, x := range ts {
		if x.Path == fw.SBOM.Path {
			found = x.SHA256 == fw.SBOM.SHA256 && x.Firmware == nil
		}
	}
	if !found {
		t.Fatalf("sbom target %s not staged with the bound hash: %+v", fw.SBOM.Path, ts)
	}
	_, doc, err := w.ReleaseSBOM("1.0", "")
	if err != nil || len(doc.Components) != 31 {
		t.Fatalf("ReleaseSBOM = %v, %v", doc, err)
	}
	// plain targets stay schema 1
	img2 := filepath.Join(dir, "fw2.img")
	os.WriteFile(img2, []byte("firmware 2"), 0o644)
	tg2, err := w.AddTarget(img2, AddOptions{Hardware: []string{"hw1"}, Version: "1.1", Counter: 2})
	if err != nil || tg2.Firmware.Schema != manifests.SchemaBase {
		t.Fatalf("plain target: %v, %+v", err, tg2)
	}
	// tampering with the staged SBOM is caught against the binding
	os.WriteFile(filepath.Join(w.Dir, "targets", "hw1", "1.0", "fw.img.spdx.json"), bytes.Replace(readTestSBOM(t, "rootfs-v1.spdx.json"), []byte("2.36-9+deb12u7"), []byte("2.36-9+deb12u14"), 1), 0o644)
	if _, _, err := w.ReleaseSBOM("1.0", ""); !errors.Is(err, ErrSBOMMismatch) || !strings.Contains(err.Error(), "custom.fw.sbom.sha256") {
		t.Fatalf("tampered sbom: %v", err)
	}
}

// TestAddTargetBadSBOM: every bad SBOM is refused with the file and field
// named, and nothing of the release is left in the workspace.
func TestAddTargetBadSBOM(t *testing.T) {
	w := initWorkspace(t, InitOptions{})
	dir := t.TempDir()
	img := filepath.Join(dir, "fw.img")
	os.WriteFile(img, []byte("firmware"), 0o644)
	good := readTestSBOM(t, "rootfs-v1.cdx.json")
	big := append([]byte(`{"bomFormat":"CycloneDX","specVersion":"1.6","x":"`), bytes.Repeat([]byte("a"), sbom.DefaultMaxBytes)...)
	for _, tt := range []struct {
		name, says string
		data       []byte
		opt        AddOptions
		want       error
	}{
		{"malformed", "field components[0].name", bytes.Replace(good, []byte(`"name": "bash",`), nil, 1), AddOptions{}, sbom.ErrMalformed},
		{"unsupported version", "field specVersion", bytes.Replace(good, []byte(`"1.6"`), []byte(`"1.2"`), 1), AddOptions{}, sbom.ErrUnsupportedVersion},
		{"oversized", "more than 67108864 bytes", big, AddOptions{}, sbom.ErrTooLarge},
		{"wrong hash", "field sha256", good, AddOptions{SBOMSHA256: strings.Repeat("0", 64)}, ErrSBOMMismatch},
		{"bad support date", "support_until", good, AddOptions{SupportUntil: "2030-13-01"}, manifests.ErrInvalidTarget},
	} {
		t.Run(tt.name, func(t *testing.T) {
			sb := filepath.Join(dir, "bad.cdx.json")
			os.WriteFile(sb, tt.data, 0o644)
			opt := tt.opt
			opt.Hardware, opt.Version, opt.Counter, opt.SBOM = []string{"hw1"}, "1.0", 1, sb
			_, err := w.AddTarget(img, opt)
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.says) {
				t.Fatalf("AddTarget = %v, want %v saying %q", err, tt.want, tt.says)
			}
			if tt.want != manifests.ErrInvalidTarget && !strings.Contains(err.Error(), sb) {
				t.Errorf("error %q does not name %s", err, sb)
			}
			ts, _ := w.Targets()
			if len(ts) != 0 {
				t.Fatalf("targets staged after a refused SBOM: %+v", ts)
			}
			if _, err := os.Stat(filepath.Join(w.Dir, "targets", "hw1")); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("files left in the workspace: %v", err)
			}
		})
	}
}
