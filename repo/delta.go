package repo

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/fwctl/fwctl/delta"
	"github.com/fwctl/fwctl/delta/zstdref"
	"github.com/fwctl/fwctl/internal/atomicfile"
	"github.com/fwctl/fwctl/manifests"
	"github.com/fwctl/fwctl/repo/layout"
	"github.com/fwctl/fwctl/repo/verify"
)

// DeltaSuffix ends the target path of a delta: HW/V/NAME.from-BASEVERSION.delta.
const DeltaSuffix = ".delta"

// DefaultMaxDeltaRatio is the largest delta, as a fraction of the full
// image, that is worth staging: above it a device saves too little to be
// worth the delta's decode (and an unrelated base gives a delta larger
// than the image).
const DefaultMaxDeltaRatio = 0.9

// DeltaOptions control StageDeltas.
type DeltaOptions struct {
	// From is how many of the last full releases of the same hardware (by
	// counter) to take as bases; releases with identical bytes count once.
	From int
	// MaxRatio is the largest delta staged, as a fraction of the full
	// image (DefaultMaxDeltaRatio when zero).
	MaxRatio float64
	// Progress, when set, is told how each encoding advances.
	Progress func(base string, done, total int64)
}

// SkippedDelta is a base StageDeltas encoded a delta from and did not stage.
type SkippedDelta struct {
	Base    string `json:"base"`    // the base target's path
	Version string `json:"version"` // the base's version
	Length  int64  `json:"length"`  // the delta's length
	Reason  string `json:"reason"`
}

// DeltaResult is what StageDeltas staged and skipped.
type DeltaResult struct {
	Added   []Target       `json:"added"`
	Skipped []SkippedDelta `json:"skipped,omitempty"`
}

// AddDeltas stages delta targets that rebuild the full target newPath from
// each of the last n full releases for the same hardware, with the default
// options of StageDeltas, and returns those it staged.
func (ws *Workspace) AddDeltas(ctx context.Context, newPath string, n int, progress func(base string, done, total int64)) ([]Target, error) {
	res, err := ws.StageDeltas(ctx, newPath, DeltaOptions{From: n, Progress: progress})
	if res == nil {
		return nil, err
	}
	return res.Added, err
}

// StageDeltas stages delta targets that rebuild the full target newPath
// from each of the last opt.From full releases for the same hardware (by
// counter). A device whose running image is one of those bases downloads
// the delta instead of the full image. Bases with the same bytes give one
// delta (from the newest of them), and a delta above opt.MaxRatio of the
// full image is not staged: it is reported in Skipped, with the reason.
func (ws *Workspace) StageDeltas(ctx context.Context, newPath string, opt DeltaOptions) (*DeltaResult, error) {
	maxRatio := opt.MaxRatio
	if maxRatio <= 0 {
		maxRatio = DefaultMaxDeltaRatio
	}
	staged, err := ws.stagedTargets()
	if err != nil {
		return nil, err
	}
	newTF, ok := staged.Signed.Targets[newPath]
	if !ok {
		return nil, fmt.Errorf("target %s is not staged", newPath)
	}
	newFW, err := verify.TargetFirmware(newTF)
	if err != nil || newFW.Kind != manifests.KindFull {
		return nil, fmt.Errorf("target %s is not a full firmware image", newPath)
	}
	type cand struct {
		path string
		tf   *metadata.TargetFiles
		fw   *manifests.Firmware
	}
	var bases []cand
	for p, tf := range staged.Signed.Targets {
		fw, err := verify.TargetFirmware(tf)
		if err != nil || p == newPath || fw.Kind != manifests.KindFull || !sharesHardware(fw, newFW) {
			continue
		}
		if hex.EncodeToString(tf.Hashes["sha256"]) == hex.EncodeToString(newTF.Hashes["sha256"]) {
			continue
		}
		bases = append(bases, cand{p, tf, fw})
	}
	sort.Slice(bases, func(i, j int) bool {
		if bases[i].fw.Counter != bases[j].fw.Counter {
			return bases[i].fw.Counter > bases[j].fw.Counter
		}
		return bases[i].path > bases[j].path
	})
	// One delta per base image: the same bytes under several releases
	// (a re-tagged build) would give identical deltas.
	seen := map[string]bool{}
	unique := bases[:0]
	for _, b := range bases {
		sum := hex.EncodeToString(b.tf.Hashes["sha256"])
		if !seen[sum] {
			seen[sum] = true
			unique = append(unique, b)
		}
	}
	bases = unique
	if len(bases) > opt.From {
		bases = bases[:opt.From]
	}
	res := &DeltaResult{}
	for _, b := range bases {
		t, err := ws.addDelta(ctx, staged, b.path, b.tf, b.fw, newPath, newTF, newFW, opt.Progress)
		if err != nil {
			return res, fmt.Errorf("delta from %s: %w", b.path, err)
		}
		if limit := int64(maxRatio * float64(newTF.Length)); t.Length > limit {
			delete(staged.Signed.Targets, t.Path)
			if err := os.Remove(filepath.Join(ws.Dir, "targets", filepath.FromSlash(t.Path))); err != nil && !os.IsNotExist(err) {
				return res, err
			}
			res.Skipped = append(res.Skipped, SkippedDelta{Base: b.path, Version: b.fw.Version, Length: t.Length,
				Reason: fmt.Sprintf("the delta is %d bytes, %.0f%% of the %d-byte image (more than %.0f%%): devices download the full image",
					t.Length, 100*float64(t.Length)/float64(max(newTF.Length, 1)), newTF.Length, 100*maxRatio)})
			continue
		}
		res.Added = append(res.Added, *t)
	}
	return res, writeMetadata(ws.stagedTargetsPath(), staged)
}

func sharesHardware(a, b *manifests.Firmware) bool {
	for _, h := range b.Hardware {
		if a.ForHardware(h) {
			return true
		}
	}
	return false
}

func (ws *Workspace) addDelta(ctx context.Context, staged *metadata.Metadata[metadata.TargetsType],
	basePath string, baseTF *metadata.TargetFiles, baseFW *manifests.Firmware,
	newPath string, newTF *metadata.TargetFiles, newFW *manifests.Firmware,
	progress func(base string, done, total int64)) (*Target, error) {
	dpath := newPath + ".from-" + baseFW.Version + DeltaSuffix
	if err := layout.CheckTargetPath(dpath); err != nil {
		return nil, fmt.Errorf("delta from %s: %w (a shorter image name leaves room for the delta's suffix)", baseFW.Version, err)
	}
	var prog func(done, total int64)
	if progress != nil {
		prog = func(done, total int64) { progress(path.Base(basePath)+" "+baseFW.Version, done, total) }
	}
	local := func(p string) string { return filepath.Join(ws.Dir, "targets", filepath.FromSlash(p)) }
	n, sum, err := WriteDelta(ctx, local(basePath), local(newPath), local(dpath), prog)
	if err != nil {
		return nil, err
	}
	fw := &manifests.Firmware{Schema: manifests.SchemaBase, Hardware: newFW.Hardware, Version: newFW.Version,
		Counter: newFW.Counter, Kind: manifests.KindDelta,
		Base:  &manifests.Blob{SHA256: hex.EncodeToString(baseTF.Hashes["sha256"]), Length: baseTF.Length},
		Image: &manifests.Blob{SHA256: hex.EncodeToString(newTF.Hashes["sha256"]), Length: newTF.Length}}
	custom, err := manifests.MarshalCustom(fw)
	if err != nil {
		return nil, err
	}
	raw := json.RawMessage(custom)
	staged.Signed.Targets[dpath] = &metadata.TargetFiles{Length: n, Hashes: metadata.Hashes{"sha256": sum}, Custom: &raw, Path: dpath}
	return &Target{Path: dpath, Length: n, SHA256: hex.EncodeToString(sum), Firmware: fw}, nil
}

// WriteDelta encodes a delta that rebuilds the file target from the file
// base and writes it atomically to out. It returns the delta's length and
// SHA-256.
func WriteDelta(ctx context.Context, base, target, out string, progress func(done, total int64)) (int64, []byte, error) {
	open := func(p string) (*os.File, int64, error) {
		f, err := os.Open(p)
		if err != nil {
			return nil, 0, err
		}
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			return nil, 0, err
		}
		return f, fi.Size(), nil
	}
	b, bLen, err := open(base)
	if err != nil {
		return 0, nil, err
	}
	defer b.Close()
	t, tLen, err := open(target)
	if err != nil {
		return 0, nil, err
	}
	defer t.Close()
	h := sha256.New()
	var n int64
	err = atomicfile.WriteFrom(out, func(w io.Writer) error {
		cw := &countWriter{w: io.MultiWriter(w, h)}
		err := delta.Encode(ctx, b, bLen, t, tLen, cw, &delta.EncodeOptions{Progress: progress, Compressor: zstdref.Compressor()})
		n = cw.n
		return err
	}, 0o644)
	return n, h.Sum(nil), err
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
