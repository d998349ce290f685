package cli

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
)

// version, commit and date may be set at link time by packagers whose
// builds carry no VCS stamp (a source tarball):
//
//	-ldflags "-X github.com/fwctl/fwctl/internal/cli.version=v1.2.3"
//
// Otherwise they come from the build info the go command records.
var version, commit, date string

// VersionInfo describes the running binary.
type VersionInfo struct {
	Program   string `json:"program"`
	Version   string `json:"version"`          // module version: a tag, a pseudo-version or "(devel)"
	Commit    string `json:"commit,omitempty"` // VCS revision the binary was built from
	Date      string `json:"date,omitempty"`   // commit time (RFC 3339)
	Modified  bool   `json:"modified,omitempty"`
	GoVersion string `json:"go_version"`
	Platform  string `json:"platform"`
}

// Version returns what the build info says about this binary.
func Version(program string) VersionInfo {
	v := VersionInfo{Program: program, Version: "(devel)", GoVersion: runtime.Version(),
		Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if bi, ok := debug.ReadBuildInfo(); ok {
		v = fromBuildInfo(v, bi)
	}
	if version != "" {
		v.Version = version
	}
	if commit != "" {
		v.Commit = commit
	}
	if date != "" {
		v.Date = date
	}
	return v
}

func fromBuildInfo(v VersionInfo, bi *debug.BuildInfo) VersionInfo {
	if bi.Main.Version != "" {
		v.Version = bi.Main.Version
	}
	if bi.GoVersion != "" {
		v.GoVersion = bi.GoVersion
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			v.Commit = s.Value
		case "vcs.time":
			v.Date = s.Value
		case "vcs.modified":
			v.Modified = s.Value == "true"
		}
	}
	return v
}

// String is the one line `PROGRAM version` and `PROGRAM --version` print.
func (v VersionInfo) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s", v.Program, v.Version)
	if v.Commit != "" {
		c := v.Commit
		if len(c) > 12 {
			c = c[:12]
		}
		fmt.Fprintf(&b, " (commit %s", c)
		if v.Modified {
			b.WriteString(", modified")
		}
		if v.Date != "" {
			fmt.Fprintf(&b, ", %s", v.Date)
		}
		b.WriteString(")")
	}
	fmt.Fprintf(&b, " %s %s", v.GoVersion, v.Platform)
	return b.String()
}
