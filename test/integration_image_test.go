package test

import (
	"archive/tar"
	"compress/gzip"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/fwctl/fwctl/internal/testenv"
)

// TestImage builds fwrepo's OCI image with `make image` (go-containerregistry,
// no Docker), inspects both outputs with skopeo, copies the image out of the
// OCI layout with skopeo, and runs the fwrepo binary found in its layer.
func TestImage(t *testing.T) {
	skopeo := testenv.LookPath(t, "skopeo", "apt-get install -y skopeo (scripts/deps.sh)")
	dist := makeDist(t, "image")
	layoutRef := "oci:" + filepath.Join(dist, "fwrepo-oci") + ":0.0.0-itest"
	for _, ref := range []string{layoutRef, "docker-archive:" + filepath.Join(dist, "fwrepo-image.tar")} {
		out, err := exec.Command(skopeo, "inspect", "--config", ref).CombinedOutput()
		if err != nil {
			t.Fatalf("skopeo inspect --config %s: %v\n%s", ref, err, out)
		}
		var cfg struct {
			Architecture, OS string
			Config           struct {
				Entrypoint, Cmd []string
				User            string
				Labels          map[string]string
			}
		}
		if err := json.Unmarshal(out, &cfg); err != nil {
			t.Fatalf("skopeo inspect %s: %v\n%s", ref, err, out)
		}
		if cfg.Architecture != runtime.GOARCH || cfg.OS != "linux" || strings.Join(cfg.Config.Entrypoint, " ") != "/usr/bin/fwrepo" ||
			cfg.Config.User != "65532:65532" || cfg.Config.Labels["org.opencontainers.image.version"] != "0.0.0-itest" {
			t.Errorf("%s: config %+v, want linux/%s, entrypoint /usr/bin/fwrepo, user 65532, version label 0.0.0-itest", ref, cfg, runtime.GOARCH)
		}
	}

	// Copy it out as skopeo's dir: format and run the binary of its layer.
	dir := filepath.Join(t.TempDir(), "img")
	if out, err := exec.Command(skopeo, "copy", layoutRef, "dir:"+dir).CombinedOutput(); err != nil {
		t.Fatalf("skopeo copy: %v\n%s", err, out)
	}
	var m struct{ Layers []struct{ Digest string } }
	b, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err == nil {
		err = json.Unmarshal(b, &m)
	}
	if err != nil || len(m.Layers) != 1 {
		t.Fatalf("manifest: %v, %d layers, want 1\n%s", err, len(m.Layers), b)
	}
	bin := extractFromLayer(t, filepath.Join(dir, strings.TrimPrefix(m.Layers[0].Digest, "sha256:")), "usr/bin/fwrepo")
	out, err := exec.Command(bin, "version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "fwrepo v0.0.0-itest ") {
		t.Fatalf("fwrepo from the image's layer: %v: %q", err, out)
	}
}

// extractFromLayer writes the file name of a gzipped layer tar to a temp
// file and returns its path.
func extractFromLayer(t *testing.T, layer, name string) string {
	t.Helper()
	f, err := os.Open(layer)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if err != nil {
			t.Fatalf("%s not in the layer: %v", name, err)
		}
		if h.Name != name {
			continue
		}
		out := filepath.Join(t.TempDir(), filepath.Base(name))
		w, err := os.OpenFile(out, os.O_CREATE|os.O_WRONLY, 0o755)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(w, tr); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		return out
	}
}
