// Package packaging builds what an operator installs on day one from the
// binaries of a release build: Debian packages of fwctl, fwrepo and fwagent
// (with nfpm) and fwrepo's OCI image (with go-containerregistry, no Docker).
// It only assembles files that exist; it builds, signs and publishes
// nothing, and no program of fwctl's links it (tools/fwdist does).
package packaging

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// Sources says where a release build's files are.
type Sources struct {
	// Bin holds the fwctl, fwrepo and fwagent binaries for Arch.
	Bin string
	// Man holds the section 1 man pages (tools/fwdist docs).
	Man string
	// Examples is the repository's examples/ directory (systemd units,
	// device configs, CI templates).
	Examples string
	// Version is the release version: a tag (v1.2.3) or, between tags,
	// anything else, which becomes 0.0.0~git<Version>.
	Version string
	// Arch is the Go architecture of the binaries (amd64, arm64, arm, riscv64).
	Arch string
	// Only, when set, names the packages to build (fwctl, fwrepo,
	// fwagent); only their binaries need to be in Bin. The device
	// architectures get fwagent alone (make deb-agents).
	Only []string
	// MTime stamps every file, so a rebuild gives the same bytes (default:
	// $SOURCE_DATE_EPOCH, else 2026-01-01).
	MTime time.Time
}

func (s Sources) mtime() time.Time {
	if !s.MTime.IsZero() {
		return s.MTime
	}
	if e := os.Getenv("SOURCE_DATE_EPOCH"); e != "" {
		var sec int64
		if _, err := fmt.Sscan(e, &sec); err == nil {
			return time.Unix(sec, 0).UTC()
		}
	}
	return time.Date(2026, time.January, 1, 0, 0, 0, 0, time.UTC)
}

var semverTag = regexp.MustCompile(`^v?[0-9]+\.[0-9]+\.[0-9]+`)

// PackageVersion is the version a package carries for a build version:
// a tag without its v, else 0.0.0~git<build version> (sorts before any
// release, as Debian orders ~).
func PackageVersion(v string) string {
	if semverTag.MatchString(v) {
		return strings.TrimPrefix(v, "v")
	}
	clean := regexp.MustCompile(`[^A-Za-z0-9.+~]`).ReplaceAllString(v, ".")
	if clean == "" {
		clean = "unknown"
	}
	return "0.0.0~git" + clean
}

// wants reports whether the package name is to be built.
func (s Sources) wants(name string) bool {
	if len(s.Only) == 0 {
		return true
	}
	for _, o := range s.Only {
		if o == name {
			return true
		}
	}
	return false
}

func (s Sources) check() error {
	for _, o := range s.Only {
		if o != "fwctl" && o != "fwrepo" && o != "fwagent" {
			return fmt.Errorf("unknown package %q: want fwctl, fwrepo or fwagent", o)
		}
	}
	for _, p := range []string{"fwctl", "fwrepo", "fwagent"} {
		if !s.wants(p) {
			continue
		}
		if _, err := os.Stat(filepath.Join(s.Bin, p)); err != nil {
			return fmt.Errorf("binary %s missing in %s (build it first: make deb does): %w", p, s.Bin, err)
		}
	}
	if _, err := os.Stat(filepath.Join(s.Examples, "systemd", "fwagent.service")); err != nil {
		return fmt.Errorf("examples directory %s has no systemd/fwagent.service: %w", s.Examples, err)
	}
	if s.Arch == "" {
		return fmt.Errorf("no architecture given")
	}
	return nil
}
