package bundle

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/fwctl/fwctl/manifests"
	"github.com/fwctl/fwctl/repo/layout"
	"github.com/fwctl/fwctl/repo/verify"
)

// ErrNotAssigned means a device named for a bundle has no director
// assignment, or one to a release the bundle does not carry.
var ErrNotAssigned = errors.New("no director assignment to a bundled release")

// directorSource presents one device's director metadata in src (fwrepo's
// store layout, or its /director/ URLs) as a repository: metadata/ maps to
// the director root chain and the device's metadata, targets/ to the
// image repository's images, which the director's targets name.
type directorSource struct {
	src    verify.Source
	device string
}

func (d directorSource) name(n string) string {
	file, ok := strings.CutPrefix(n, layout.MetadataDir+"/")
	switch {
	case !ok:
		return n // targets/…
	case strings.HasSuffix(file, ".root.json"):
		return manifests.DirectorRoot + "/" + file
	}
	return manifests.DirectorDevice(d.device) + "/" + file
}

func (d directorSource) Open(ctx context.Context, n string) (io.ReadCloser, error) {
	return d.src.Open(ctx, d.name(n))
}

func (d directorSource) String() string {
	return d.src.String() + " (director, device " + d.device + ")"
}

// prepareDirector verifies each device's director metadata in src as the
// device would (from the director root trusted, by default the store's
// first), checks that it assigns one of the bundled releases with the
// image repository's hashes and length, and lists its files: the director
// root chain once, then each device's timestamp, snapshot and targets.
func prepareDirector(ctx context.Context, src verify.Source, opt Options, images map[string]verify.Target, now time.Time) ([]File, error) {
	if len(opt.Devices) == 0 {
		return nil, nil
	}
	root := opt.DirectorRoot
	if root == nil {
		b, err := verify.ReadLimited(ctx, src, manifests.DirectorRoot+"/1.root.json", layout.MaxRootLength, false)
		if err != nil {
			return nil, fmt.Errorf("director root: %w (is this fwrepo's repository, with 'fwrepo director init'?)", err)
		}
		root = b
	}
	var files []File
	var rootVersion int64
	for _, id := range opt.Devices {
		if !manifests.ValidDeviceID(id) {
			return nil, fmt.Errorf("device %q: not a valid device ID", id)
		}
		ds := directorSource{src, id}
		res, err := verify.Verify(ctx, ds, root, now)
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("device %s: %w: the director has no metadata for it (fwrepo director assign %s --target PATH)", id, ErrNotAssigned, id)
		}
		if err != nil {
			return nil, fmt.Errorf("verify the director metadata of device %s: %w", id, err)
		}
		as, err := res.DirectorAssigned(id)
		if err != nil {
			return nil, fmt.Errorf("device %s: %w: its director metadata would be refused by the device: %w", id, ErrNotAssigned, err)
		}
		if as == nil {
			return nil, fmt.Errorf("device %s: %w: the director assigns it nothing (fwrepo director assign %s --target PATH)", id, ErrNotAssigned, id)
		}
		img, ok := images[as.Path]
		if !ok {
			return nil, fmt.Errorf("device %s: %w: the director assigns %s, not a release of this bundle (add --release %s)", id, ErrNotAssigned, as.Path, as.Path)
		}
		if img.SHA256 != as.SHA256 || img.Length != as.Length {
			return nil, fmt.Errorf("device %s: %w: the director's %s (sha256 %s, %d bytes) is not the image repository's (sha256 %s, %d bytes)",
				id, ErrNotAssigned, as.Path, as.SHA256, as.Length, img.SHA256, img.Length)
		}
		if v := res.Versions[metadata.ROOT]; v > rootVersion {
			for n := rootVersion + 1; n <= v; n++ {
				files = append(files, File{fmt.Sprintf("%s/%d.root.json", manifests.DirectorRoot, n), -1})
			}
			rootVersion = v
		}
		dev := manifests.DirectorDevice(id)
		files = append(files, File{dev + "/timestamp.json", -1},
			File{dev + "/" + layout.Versioned(res.Versions[metadata.SNAPSHOT], metadata.SNAPSHOT), -1},
			File{dev + "/" + layout.Versioned(res.Versions[metadata.TARGETS], metadata.TARGETS), -1})
	}
	return files, nil
}
