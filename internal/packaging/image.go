package packaging

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// ImageUID is the unprivileged user fwrepo runs as in its image.
const ImageUID = 65532

// ImageResult names what Image wrote.
type ImageResult struct {
	// Layout is an OCI image layout directory (skopeo: oci:DIR:TAG).
	Layout string `json:"layout"`
	// Archive is a docker-archive tarball (docker load, podman load,
	// skopeo: docker-archive:FILE).
	Archive string `json:"archive"`
	// Reference is the image's name in both.
	Reference string `json:"reference"`
	Digest    string `json:"digest"`
}

// caBundle is where Debian keeps the CA certificates fwrepo needs for
// s3:// repositories over HTTPS.
const caBundle = "/etc/ssl/certs/ca-certificates.crt"

// Image builds fwrepo's OCI image from src.Bin/fwrepo, which must be a
// static binary (CGO_ENABLED=0): one layer on an empty base with fwrepo,
// the CA bundle, a passwd entry and /var/lib/fwrepo, running as an
// unprivileged user. No Docker daemon is involved.
func Image(src Sources, outDir string) (*ImageResult, error) {
	binPath := filepath.Join(src.Bin, "fwrepo")
	if err := requireStatic(binPath); err != nil {
		return nil, err
	}
	layerTar, err := imageLayer(src, binPath)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, err
	}
	// An OCI image, not empty.Image's Docker media types: OCI tools
	// (skopeo's oci: transport) look only for OCI manifests in a layout.
	base := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err := mutate.AppendLayers(base, layer)
	if err != nil {
		return nil, err
	}
	created := v1.Time{Time: src.mtime()}
	version := PackageVersion(src.Version)
	cf, err := img.ConfigFile() // keeps the layer's diff ID
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.Architecture, cf.OS, cf.Created = src.Arch, "linux", created
	cf.Config = v1.Config{
		Entrypoint:   []string{"/usr/bin/fwrepo"},
		Cmd:          []string{"serve", "--dir", "/var/lib/fwrepo/repo", "--addr", "0.0.0.0:8080"},
		User:         fmt.Sprintf("%d:%d", ImageUID, ImageUID),
		WorkingDir:   "/var/lib/fwrepo",
		ExposedPorts: map[string]struct{}{"8080/tcp": {}},
		Volumes:      map[string]struct{}{"/var/lib/fwrepo": {}},
		Env:          []string{"SSL_CERT_FILE=" + caBundle},
		Labels: map[string]string{
			"org.opencontainers.image.title":       "fwrepo",
			"org.opencontainers.image.description": "serves a signed fwctl firmware repository to devices",
			"org.opencontainers.image.version":     version,
			"org.opencontainers.image.source":      homepage,
			"org.opencontainers.image.licenses":    license,
		},
	}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return nil, err
	}
	img, err = mutate.CreatedAt(img, created)
	if err != nil {
		return nil, err
	}
	tag := regexp.MustCompile(`[^A-Za-z0-9_.-]`).ReplaceAllString(version, "-")
	ref, err := name.NewTag("fwctl/fwrepo:" + tag)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return nil, err
	}
	res := &ImageResult{Layout: filepath.Join(outDir, "fwrepo-oci"), Archive: filepath.Join(outDir, "fwrepo-image.tar"), Reference: ref.String()}
	if err := os.RemoveAll(res.Layout); err != nil {
		return nil, err
	}
	p, err := layout.Write(res.Layout, empty.Index)
	if err != nil {
		return nil, err
	}
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{
		"org.opencontainers.image.ref.name": tag, "io.containerd.image.name": ref.String()})); err != nil {
		return nil, err
	}
	if err := tarball.WriteToFile(res.Archive, ref, img); err != nil {
		return nil, err
	}
	d, err := img.Digest()
	if err != nil {
		return nil, err
	}
	res.Digest = d.String()
	return res, nil
}

func requireStatic(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("fwrepo binary for the image: %w", err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is dynamically linked; the image has no libc: build it with CGO_ENABLED=0 (make image does)", path)
		}
	}
	return nil
}

// imageLayer is the one layer's tar.
func imageLayer(src Sources, binPath string) ([]byte, error) {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	mt := src.mtime()
	dir := func(name string, uid int, mode int64) error {
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: mode, Uid: uid, Gid: uid, ModTime: mt})
	}
	file := func(name string, data []byte, mode int64) error {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(data)), ModTime: mt}); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	bin, err := os.ReadFile(binPath)
	if err != nil {
		return nil, err
	}
	ca, err := os.ReadFile(caBundle)
	if err != nil {
		return nil, fmt.Errorf("CA bundle for the image (apt-get install ca-certificates): %w", err)
	}
	passwd := fmt.Sprintf("root:x:0:0:root:/root:/sbin/nologin\nfwrepo:x:%d:%d:fwrepo:/var/lib/fwrepo:/sbin/nologin\n", ImageUID, ImageUID)
	group := fmt.Sprintf("root:x:0:\nfwrepo:x:%d:\n", ImageUID)
	steps := []func() error{
		func() error { return dir("etc", 0, 0o755) },
		func() error { return file("etc/passwd", []byte(passwd), 0o644) },
		func() error { return file("etc/group", []byte(group), 0o644) },
		func() error { return dir("etc/ssl", 0, 0o755) },
		func() error { return dir("etc/ssl/certs", 0, 0o755) },
		func() error { return file("etc/ssl/certs/ca-certificates.crt", ca, 0o644) },
		func() error { return dir("tmp", 0, 0o1777) },
		func() error { return dir("usr", 0, 0o755) },
		func() error { return dir("usr/bin", 0, 0o755) },
		func() error { return file("usr/bin/fwrepo", bin, 0o755) },
		func() error { return dir("var", 0, 0o755) },
		func() error { return dir("var/lib", 0, 0o755) },
		func() error { return dir("var/lib/fwrepo", ImageUID, 0o750) },
		func() error { return dir("var/lib/fwrepo/repo", ImageUID, 0o750) },
	}
	for _, s := range steps {
		if err := s(); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
