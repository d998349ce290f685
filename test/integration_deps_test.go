package test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestAgentLinksNoDayOneTooling holds the device binary free of what the
// packaging, docs and metrics work brought into the module: the Prometheus
// client (fwagent writes its textfile by hand), nfpm, go-containerregistry's
// image packages,
// actionlint, cobra and its man page renderer.
func TestAgentLinksNoDayOneTooling(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "github.com/fwctl/fwctl/cmd/fwagent").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	forbidden := []string{
		"github.com/prometheus/", "github.com/goreleaser/", "github.com/google/go-containerregistry/pkg/v1", // pkg/name comes with sigstore
		"github.com/rhysd/actionlint", "github.com/spf13/cobra", "github.com/cpuguy83/go-md2man",
		"github.com/fwctl/fwctl/internal/cobracli", "github.com/fwctl/fwctl/internal/packaging",
	}
	for _, pkg := range strings.Fields(string(out)) {
		for _, f := range forbidden {
			if strings.HasPrefix(pkg, f) {
				t.Errorf("fwagent depends on %s (forbidden: %s)", pkg, f)
			}
		}
	}
}
