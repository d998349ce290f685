package repo

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/fwctl/fwctl/manifests"
	"github.com/fwctl/fwctl/repo/layout"
	"github.com/fwctl/fwctl/repo/sbom"
	"github.com/fwctl/fwctl/repo/verify"
)

// ErrSBOMMismatch means an SBOM's bytes do not have the SHA-256 that was
// expected of them (--sbom-sha256, or the custom.fw.sbom binding).
var ErrSBOMMismatch = errors.New("sbom hash does not match")

// SBOMSuffix returns the suffix the SBOM target of an image carries:
// IMAGE.cdx.json or IMAGE.spdx.json.
func SBOMSuffix(format string) string {
	if format == sbom.FormatSPDX {
		return ".spdx.json"
	}
	return ".cdx.json"
}

// stagedSBOM is an SBOM read and validated for AddTarget, not yet written.
type stagedSBOM struct {
	data []byte
	doc  *sbom.Document
	path string // target path, set by bind
}

// readSBOM reads and validates opt.SBOM; nil without one.
func readSBOM(opt AddOptions) (*stagedSBOM, error) {
	if opt.SBOM == "" {
		if opt.SBOMSHA256 != "" {
			return nil, fmt.Errorf("%w: --sbom-sha256 without --sbom", manifests.ErrInvalidTarget)
		}
		return nil, nil
	}
	f, err := openNonBlocking(opt.SBOM)
	if err != nil {
		return nil, fmt.Errorf("open sbom: %w", err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil {
		return nil, err
	} else if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("sbom %s is a %s, not a regular file", opt.SBOM, fileKind(fi.Mode()))
	}
	var buf bytes.Buffer
	doc, err := sbom.Parse(opt.SBOM, io.TeeReader(f, &buf), sbom.DefaultMaxBytes)
	if err != nil {
		return nil, err
	}
	data := buf.Bytes()
	sum := sha256.Sum256(data)
	if want := strings.ToLower(opt.SBOMSHA256); want != "" && want != hex.EncodeToString(sum[:]) {
		return nil, &sbom.Error{File: opt.SBOM, Field: "sha256", Err: fmt.Errorf("%w: file has %x, --sbom-sha256 says %s: pass the SBOM built with this image", ErrSBOMMismatch, sum, want)}
	}
	return &stagedSBOM{data: data, doc: doc}, nil
}

// bind names the SBOM target beside the image at tpath and records it in
// fw (schema 2). It checks the path is free; nothing is written.
func (s *stagedSBOM) bind(fw *manifests.Firmware, tpath string, staged *metadata.Metadata[metadata.TargetsType]) error {
	if s == nil {
		return nil
	}
	s.path = tpath + SBOMSuffix(s.doc.Format)
	if err := layout.CheckTargetPath(s.path); err != nil {
		return fmt.Errorf("sbom target: %w; choose another image name with --name", err)
	}
	if _, exists := staged.Signed.Targets[s.path]; exists {
		return fmt.Errorf("sbom target %s already exists: release a new version instead", s.path)
	}
	sum := sha256.Sum256(s.data)
	fw.SBOM = &manifests.SBOMRef{Path: s.path, Format: s.doc.Format, SHA256: hex.EncodeToString(sum[:])}
	fw.Schema = fw.NeededSchema()
	return fw.Validate()
}

// stage writes the SBOM into the workspace as a target (no custom metadata:
// the image's custom.fw.sbom is what binds it).
func (s *stagedSBOM) stage(ws *Workspace, staged *metadata.Metadata[metadata.TargetsType]) error {
	if s == nil {
		return nil
	}
	return ws.putFile(staged, s.path, s.data)
}

// CheckSBOM checks that data is the SBOM that fw binds: its SHA-256 is
// custom.fw.sbom.sha256 and it parses in the bound format. file names it in
// errors.
func CheckSBOM(file string, fw *manifests.Firmware, data []byte) (*sbom.Document, error) {
	if fw.SBOM == nil || fw.SBOM.Legacy != "" {
		return nil, fmt.Errorf("release %s has no SBOM bound (fwctl target add --sbom)", fw.Version)
	}
	sum := sha256.Sum256(data)
	if got := hex.EncodeToString(sum[:]); got != fw.SBOM.SHA256 {
		return nil, &sbom.Error{File: file, Field: "custom.fw.sbom.sha256", Err: fmt.Errorf("%w: file has %s, signed metadata says %s: the SBOM was altered or replaced", ErrSBOMMismatch, got, fw.SBOM.SHA256)}
	}
	doc, err := sbom.Parse(file, bytes.NewReader(data), sbom.DefaultMaxBytes)
	if err != nil {
		return nil, err
	}
	if doc.Format != fw.SBOM.Format {
		return nil, &sbom.Error{File: file, Field: "custom.fw.sbom.format", Err: fmt.Errorf("%w: file is %s, signed metadata says %s", sbom.ErrMalformed, doc.Format, fw.SBOM.Format)}
	}
	return doc, nil
}

// ReleaseSBOM finds the staged full-image release of version (for hardware,
// when not empty) and returns its SBOM, checked against the binding.
func (ws *Workspace) ReleaseSBOM(version, hardware string) (*Target, *sbom.Document, error) {
	staged, err := ws.stagedTargets()
	if err != nil {
		return nil, nil, err
	}
	var found []Target
	for _, t := range verify.ListTargets(staged.Signed.Targets) {
		if t.Firmware == nil || t.Firmware.Kind != manifests.KindFull || t.Firmware.Version != version {
			continue
		}
		if hardware != "" && !t.Firmware.ForHardware(hardware) {
			continue
		}
		found = append(found, t)
	}
	switch {
	case len(found) == 0:
		return nil, nil, fmt.Errorf("no release %s in %s: 'fwctl target list' shows the releases", version, ws.Dir)
	case len(found) > 1:
		var hw []string
		for _, t := range found {
			hw = append(hw, strings.Join(t.Firmware.Hardware, ","))
		}
		return nil, nil, fmt.Errorf("release %s exists for several hardware IDs (%s): choose one with --hardware", version, strings.Join(hw, "; "))
	}
	t := found[0]
	if t.Firmware.SBOM == nil || t.Firmware.SBOM.Legacy != "" {
		return &t, nil, fmt.Errorf("release %s (%s) has no SBOM bound: add it with 'fwctl target add --sbom FILE'", version, t.Path)
	}
	file := filepath.Join(ws.Dir, "targets", filepath.FromSlash(t.Firmware.SBOM.Path))
	data, err := os.ReadFile(file)
	if err != nil {
		return &t, nil, fmt.Errorf("sbom of release %s: %w", version, err)
	}
	doc, err := CheckSBOM(file, t.Firmware, data)
	return &t, doc, err
}
