package repo

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/fwctl/fwctl/internal/atomicfile"
	"github.com/fwctl/fwctl/manifests"
	"github.com/fwctl/fwctl/repo/layout"
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
	// SBOM, when set, is a CycloneDX or SPDX JSON file staged as a target
	// of its own and bound in custom.fw.sbom (see releasesbom.go);
	// SBOMSHA256, when set, is the hash it must have.
	SBOM, SBOMSHA256 string
	// SupportUntil, when set, is the last day of security support (YYYY-MM-DD).
	SupportUntil string
}

// Target describes one firmware target (the description verify reports).
type Target = verify.Target

// ErrCounterJump means a new target's security counter is more than
// MaxCounterJump above every release for its hardware: most likely a typo,
// and one devices cannot undo, since a counter never goes down again.
var ErrCounterJump = errors.New("security counter jumps too far")

// MaxCounterJump is how far above the highest release for a hardware ID
// (or above 0, for its first) a counter may go without Force.
const MaxCounterJump = 1000

// checkCounterJump refuses a counter more than MaxCounterJump above every
// staged release (top-level and delegated) for any of hardware.
func (ws *Workspace) checkCounterJump(staged *metadata.Metadata[metadata.TargetsType], hardware []string, counter uint64) error {
	all := []map[string]*metadata.TargetFiles{staged.Signed.Targets}
	for _, role := range verify.DelegatedNames(staged) {
		if d, err := metadata.Targets().FromFile(ws.stagedRolePath(role)); err == nil {
			all = append(all, d.Signed.Targets)
		}
	}
	for _, hw := range hardware {
		var highest uint64
		for _, m := range all {
			for _, tf := range m {
				if fw, err := verify.TargetFirmware(tf); err == nil && fw.ForHardware(hw) && fw.Counter > highest {
					highest = fw.Counter
				}
			}
		}
		if counter > highest && counter-highest > MaxCounterJump {
			return fmt.Errorf("%w: counter %d is %d above the highest release for hardware %s (%d); devices that install it refuse every image below %d for good. Check the number, or pass --force if the jump is meant",
				ErrCounterJump, counter, counter-highest, hw, highest, counter)
		}
	}
	return nil
}

// fileKind names what a non-regular file is.
func fileKind(m os.FileMode) string {
	switch {
	case m&os.ModeNamedPipe != 0:
		return "named pipe (FIFO)"
	case m&os.ModeSocket != 0:
		return "socket"
	case m&os.ModeDevice != 0:
		return "device"
	case m.IsDir():
		return "directory"
	}
	return "special file"
}

// AddTarget hashes image (streaming, while copying it into the workspace)
// and stages it as a target. Nothing is published until Publish.
func (ws *Workspace) AddTarget(image string, opt AddOptions) (*Target, error) {
	fw := &manifests.Firmware{Schema: manifests.SchemaBase, Hardware: opt.Hardware, Version: opt.Version,
		Counter: opt.Counter, Kind: manifests.KindFull, SupportUntil: opt.SupportUntil}
	fw.Schema = fw.NeededSchema()
	if err := fw.Validate(); err != nil {
		return nil, err
	}
	// The SBOM is read and validated before anything is written, so a bad
	// one leaves nothing half-added.
	sb, err := readSBOM(opt)
	if err != nil {
		return nil, err
	}
	name := opt.Name
	if name == "" {
		name = filepath.Base(image)
	}
	if strings.Contains(name, "/") {
		return nil, fmt.Errorf("%w %q: the target name is a file name, without '/' (the path is HARDWARE/VERSION/NAME); choose one with --name", layout.ErrInvalidName, name)
	}
	tpath := opt.Hardware[0] + "/" + opt.Version + "/" + name
	if err := layout.CheckTargetPath(tpath); err != nil {
		return nil, fmt.Errorf("%w; choose another with --name", err)
	}

	staged, err := ws.stagedTargets()
	if err != nil {
		return nil, err
	}
	if _, exists := staged.Signed.Targets[tpath]; exists {
		return nil, fmt.Errorf("target %s already exists: release a new version instead of replacing one devices may have verified", tpath)
	}
	if err := sb.bind(fw, tpath, staged); err != nil {
		return nil, err
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
		if err := ws.checkCounterJump(staged, opt.Hardware, opt.Counter); err != nil {
			return nil, err
		}
	}

	in, err := openNonBlocking(image)
	if err != nil {
		return nil, fmt.Errorf("open image: %w", err)
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("image %s is a %s, not a regular file: write the image to a file first", image, fileKind(fi.Mode()))
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
		os.Remove(dst)
		return nil, err
	}
	if err := sb.stage(ws, staged); err != nil {
		os.Remove(dst)
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
