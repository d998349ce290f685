package repo

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/fwctl/fwctl/internal/atomicfile"
	"github.com/fwctl/fwctl/manifests"
	"github.com/fwctl/fwctl/repo/verify"
)

// ErrCounterRegression means a new target's security counter is lower than
// one already released for the same hardware.
var ErrCounterRegression = errors.New("security counter lower than an existing release")

// AddOptions describe a firmware image to add.
type AddOptions struct {
	Hardware []string
	Version  string
	Counter  uint64
	// Name is the file name in the target path; defaults to the image's.
	Name string
	// Force allows a counter below an existing one for the same hardware.
	Force bool
	// Progress, when set, is called with bytes hashed so far.
	Progress func(done, total int64)
}

// Target describes one firmware target (the description verify reports).
type Target = verify.Target

// AddTarget hashes image (streaming, while copying it into the workspace)
// and stages it as a target. Nothing is published until Publish.
func (ws *Workspace) AddTarget(image string, opt AddOptions) (*Target, error) {
	fw := &manifests.Firmware{Schema: manifests.Schema, Hardware: opt.Hardware, Version: opt.Version,
		Counter: opt.Counter, Kind: manifests.KindFull}
	if err := fw.Validate(); err != nil {
		return nil, err
	}
	name := opt.Name
	if name == "" {
		name = filepath.Base(image)
	}
	if name == "." || name == "/" || path.Base(name) != name || name[0] == '.' {
		return nil, fmt.Errorf("target name %q must be a plain file name", name)
	}
	tpath := path.Join(opt.Hardware[0], opt.Version, name)

	staged, err := ws.stagedTargets()
	if err != nil {
		return nil, err
	}
	if _, exists := staged.Signed.Targets[tpath]; exists {
		return nil, fmt.Errorf("target %s already exists: release a new version instead of replacing one devices may have verified", tpath)
	}
	if !opt.Force {
		for p, tf := range staged.Signed.Targets {
			old, err := verify.TargetFirmware(tf)
			if err != nil {
				continue
			}
			for _, hw := range opt.Hardware {
				if old.ForHardware(hw) && old.Counter > opt.Counter {
					return nil, fmt.Errorf("%w: %s has counter %d for hardware %s, new counter %d; devices that installed it would refuse this image. Use a counter >= %d, or --force to add it anyway",
						ErrCounterRegression, p, old.Counter, hw, opt.Counter, old.Counter)
				}
			}
		}
	}

	in, err := os.Open(image)
	if err != nil {
		return nil, fmt.Errorf("open image: %w", err)
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("image %s is not a regular file", image)
	}
	dst := filepath.Join(ws.Dir, "targets", filepath.FromSlash(tpath))
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return nil, err
	}
	h := sha256.New()
	var n int64
	err = atomicfile.WriteFrom(dst, func(w io.Writer) error {
		var src io.Reader = in
		if opt.Progress != nil {
			src = &progressReader{r: in, total: fi.Size(), fn: opt.Progress}
		}
		var err error
		n, err = io.Copy(io.MultiWriter(w, h), src)
		return err
	}, 0o644)
	if err != nil {
		return nil, fmt.Errorf("copy image into workspace: %w", err)
	}
	custom, err := manifests.MarshalCustom(fw)
	if err != nil {
		return nil, err
	}
	raw := json.RawMessage(custom)
	staged.Signed.Targets[tpath] = &metadata.TargetFiles{
		Length: n,
		Hashes: metadata.Hashes{"sha256": h.Sum(nil)},
		Custom: &raw,
		Path:   tpath,
	}
	if err := writeMetadata(ws.stagedTargetsPath(), staged); err != nil {
		return nil, err
	}
	return &Target{Path: tpath, Length: n, SHA256: hex.EncodeToString(h.Sum(nil)), Firmware: fw}, nil
}

// Targets lists the staged targets, sorted by hardware, then counter.
func (ws *Workspace) Targets() ([]Target, error) {
	staged, err := ws.stagedTargets()
	if err != nil {
		return nil, err
	}
	return verify.ListTargets(staged.Signed.Targets), nil
}

type progressReader struct {
	r     io.Reader
	done  int64
	total int64
	fn    func(done, total int64)
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.done += int64(n)
	p.fn(p.done, p.total)
	return n, err
}
