package bundle

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/fwctl/fwctl/internal/atomicfile"
	"github.com/fwctl/fwctl/manifests"
	wire "github.com/fwctl/fwctl/manifests/bundle"
	"github.com/fwctl/fwctl/repo/layout"
	"github.com/fwctl/fwctl/repo/verify"
)

// Options say what goes into a bundle.
type Options struct {
	// Releases are the target paths of the firmware images to carry.
	Releases []string
	// FromRootVersion is the oldest root version a device may trust and
	// still update from the bundle (default 1): the chain from it on is
	// carried, and the repository is verified from it.
	FromRootVersion int64
	// TrustedRoot, when set, is verified from instead of the repository's
	// own FromRootVersion root.
	TrustedRoot []byte
	// DeltaFrom are target paths of base images: deltas from them to a
	// release are carried too.
	DeltaFrom []string
	// Devices are director devices whose metadata (their signed
	// assignment, as fwrepo's director publishes it in the same
	// repository) is carried too, so that a device configured for a
	// director can install from the bundle. Each must be assigned one of
	// Releases.
	Devices []string
	// DirectorRoot, when set, is the director root verified from instead
	// of the repository's director/metadata/1.root.json.
	DirectorRoot []byte
	// Now is the expiry reference (time.Now if zero).
	Now time.Time
}

// Plan is what a bundle holds: repository files in write order.
type Plan struct {
	Manifest wire.Manifest
	Files    []File
}

// File is one repository file of a bundle. Length is the signed length of
// a target, -1 for metadata (read whole, bounded by layout's caps).
type File struct {
	Name   string `json:"name"`
	Length int64  `json:"length"`
}

// ErrUnknownRelease means a named release or base is not a target of the
// verified repository.
var ErrUnknownRelease = errors.New("not a target of the repository")

// Prepare verifies src (exactly as a device would, from the chosen root)
// and lists the files a device needs for opt.Releases: the root chain,
// timestamp, snapshot, targets and every delegated role, each release's
// image, its transparency proof and SBOM, and deltas from opt.DeltaFrom.
func Prepare(ctx context.Context, src verify.Source, opt Options) (*Plan, error) {
	if len(opt.Releases) == 0 {
		return nil, errors.New("no release named: give at least one target path")
	}
	from := max(opt.FromRootVersion, 1)
	root := opt.TrustedRoot
	if root == nil {
		b, err := verify.ReadLimited(ctx, src, layout.Metadata(layout.Versioned(from, "root")), layout.MaxRootLength, false)
		if err != nil {
			return nil, fmt.Errorf("root version %d: %w", from, err)
		}
		root = b
	}
	now := opt.Now
	if now.IsZero() {
		now = time.Now()
	}
	res, err := verify.Verify(ctx, src, root, now)
	if err != nil {
		return nil, fmt.Errorf("verify %s before bundling it: %w", src, err)
	}
	var files []File
	for v := from; v <= res.Versions[metadata.ROOT]; v++ {
		files = append(files, File{layout.Metadata(layout.Versioned(v, "root")), -1})
	}
	files = append(files, File{layout.Timestamp, -1})
	exists := func(name string) bool {
		rc, err := src.Open(ctx, name)
		if err == nil {
			rc.Close()
		}
		return err == nil
	}
	// A consistent-snapshot repository names metadata by version; a
	// legacy one does not. Carry what exists.
	meta := func(role string, v int64) {
		for _, n := range []string{layout.Versioned(v, role), role + ".json"} {
			if exists(layout.Metadata(n)) {
				files = append(files, File{layout.Metadata(n), -1})
				return
			}
		}
	}
	meta(metadata.SNAPSHOT, res.Versions[metadata.SNAPSHOT])
	meta(metadata.TARGETS, res.Versions[metadata.TARGETS])
	for _, d := range res.Delegated {
		meta(d.Role, d.Version)
	}
	target := func(p string) (File, error) {
		tf, ok := res.File(p)
		if !ok {
			return File{}, fmt.Errorf("%s: %w %s (fwctl status lists them)", p, ErrUnknownRelease, src)
		}
		for _, n := range []string{layout.HashedTarget(p, tf.Hashes["sha256"]), p} {
			if exists(layout.TargetsDir + "/" + n) {
				return File{layout.TargetsDir + "/" + n, tf.Length}, nil
			}
		}
		return File{}, fmt.Errorf("%s: %w", p, fs.ErrNotExist)
	}
	byPath := map[string]verify.Target{}
	for _, t := range res.Targets {
		byPath[t.Path] = t
	}
	seen := map[string]bool{}
	add := func(p string) error {
		n, err := target(p)
		if err != nil {
			return err
		}
		if !seen[n.Name] {
			seen[n.Name] = true
			files = append(files, n)
		}
		return nil
	}
	bases := map[string]bool{}
	for _, b := range opt.DeltaFrom {
		t, ok := byPath[b]
		if !ok {
			return nil, fmt.Errorf("delta base %s: %w %s", b, ErrUnknownRelease, src)
		}
		bases[t.SHA256] = true
	}
	for _, r := range opt.Releases {
		t, ok := byPath[r]
		if !ok {
			return nil, fmt.Errorf("release %s: %w %s (fwctl status lists them)", r, ErrUnknownRelease, src)
		}
		if err := add(r); err != nil {
			return nil, err
		}
		if fw := t.Firmware; fw != nil {
			for _, extra := range []string{fw.Tlog, sbomPath(fw.SBOM)} {
				if _, ok := byPath[extra]; ok {
					if err := add(extra); err != nil {
						return nil, err
					}
				}
			}
		}
		for _, d := range res.Targets {
			fw := d.Firmware
			if fw == nil || fw.Kind != "delta" || fw.Image == nil || fw.Base == nil {
				continue
			}
			if fw.Image.SHA256 == t.SHA256 && bases[fw.Base.SHA256] {
				if err := add(d.Path); err != nil {
					return nil, err
				}
			}
		}
	}
	bundled := map[string]verify.Target{}
	for _, r := range opt.Releases {
		bundled[r] = byPath[r]
	}
	dfiles, err := prepareDirector(ctx, src, opt, bundled, now)
	if err != nil {
		return nil, err
	}
	files = append(files, dfiles...)
	sort.Strings(opt.Releases)
	devices := slices.Sorted(slices.Values(opt.Devices))
	return &Plan{Files: files, Manifest: wire.Manifest{Created: now.UTC().Truncate(time.Second), Releases: opt.Releases, RootFrom: from, Devices: devices}}, nil
}

func sbomPath(s *manifests.SBOMRef) string {
	if s == nil {
		return ""
	}
	return s.Path
}

// WriteFile writes the planned bundle to out as one bundle file
// (atomically: it appears whole or not at all).
func (p *Plan) WriteFile(ctx context.Context, src verify.Source, out string) error {
	return atomicfile.WriteFrom(out, func(w io.Writer) error {
		bw, err := wire.NewWriter(w, p.Manifest)
		if err != nil {
			return err
		}
		for _, f := range p.Files {
			if err := copyEntry(ctx, src, f, func(size int64, r io.Reader) error { return bw.Add(f.Name, size, r) }); err != nil {
				return err
			}
		}
		return bw.Close()
	}, 0o644)
}

// WriteDir writes the planned bundle as a directory; fwbundle.json comes
// last, so a half-written directory is not a bundle.
func (p *Plan) WriteDir(ctx context.Context, src verify.Source, dir string) error {
	for _, f := range p.Files {
		dst := filepath.Join(dir, filepath.FromSlash(f.Name))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		err := copyEntry(ctx, src, f, func(size int64, r io.Reader) error {
			return atomicfile.WriteFrom(dst, func(w io.Writer) error {
				n, err := io.Copy(w, r)
				if err == nil && n != size {
					err = fmt.Errorf("bundle %s: %d bytes, %d expected", f.Name, n, size)
				}
				return err
			}, 0o644)
		})
		if err != nil {
			return err
		}
	}
	raw, err := p.Manifest.Marshal()
	if err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(dir, wire.ManifestName), raw, 0o644)
}

// copyEntry streams f from src: a target exactly its signed length (a
// longer or shorter file is an error), metadata read whole within the
// device's cap.
func copyEntry(ctx context.Context, src verify.Source, f File, put func(size int64, r io.Reader) error) error {
	if f.Length < 0 {
		b, err := verify.ReadLimited(ctx, src, f.Name, layout.MaxSnapshotLength+layout.MaxTargetsLength, false)
		if err != nil {
			return fmt.Errorf("bundle %s: %w", f.Name, err)
		}
		return put(int64(len(b)), bytes.NewReader(b))
	}
	rc, err := src.Open(ctx, f.Name)
	if err != nil {
		return fmt.Errorf("bundle %s: %w", f.Name, err)
	}
	defer rc.Close()
	if err := put(f.Length, io.LimitReader(rc, f.Length)); err != nil {
		return err
	}
	if n, _ := rc.Read(make([]byte, 1)); n > 0 {
		return fmt.Errorf("bundle %s: longer than its signed %d bytes", f.Name, f.Length)
	}
	return nil
}
