package cli

import (
	"runtime/debug"
	"strings"
	"testing"
)

func TestVersionFromBuildInfo(t *testing.T) {
	rev := "63958e8d3f51aa0c1e2b3c4d5e6f708192a3b4c5"
	tests := []struct {
		name string
		bi   debug.BuildInfo
		want string
	}{
		{"tagged release", debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v1.2.3"},
			Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: rev}, {Key: "vcs.time", Value: "2026-12-02T18:32:19Z"}, {Key: "vcs.modified", Value: "false"}}},
			"fwctl v1.2.3 (commit 63958e8d3f51, 2026-12-02T18:32:19Z) go1.26.8 linux/arm64"},
		{"dirty tree", debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v0.0.0-20261202183219-63958e8d3f51+dirty"},
			Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: rev}, {Key: "vcs.modified", Value: "true"}}},
			"fwctl v0.0.0-20261202183219-63958e8d3f51+dirty (commit 63958e8d3f51, modified) go1.26.8 linux/arm64"},
		{"no VCS stamp (-buildvcs=false)", debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}},
			"fwctl (devel) go1.26.8 linux/arm64"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := fromBuildInfo(VersionInfo{Program: "fwctl", Version: "(devel)", Platform: "linux/arm64"}, &tt.bi)
			if got := v.String(); got != tt.want {
				t.Errorf("String() = %q\n want %q", got, tt.want)
			}
		})
	}
}

// TestVersionLinkerOverride: a packager's -X version wins over the build info.
func TestVersionLinkerOverride(t *testing.T) {
	defer func(v, c string) { version, commit = v, c }(version, commit)
	version, commit = "v9.9.9", "abcdef"
	v := Version("fwrepo")
	if v.Version != "v9.9.9" || v.Commit != "abcdef" || !strings.HasPrefix(v.GoVersion, "go") {
		t.Errorf("Version() = %+v, want version v9.9.9, commit abcdef and a Go version", v)
	}
}
