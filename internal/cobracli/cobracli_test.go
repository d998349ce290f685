package cobracli_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/fwctl/fwctl/internal/cobracli"
	"github.com/fwctl/fwctl/internal/fwctlcli"
)

func TestMarkdownOnePage(t *testing.T) {
	var b bytes.Buffer
	if err := cobracli.WriteMarkdown(fwctlcli.Command(), &b); err != nil {
		t.Fatal(err)
	}
	s := b.String()
	for _, want := range []string{"# fwctl\n", "## fwctl publish\n", "### Examples", "(#fwctl-target-add)"} {
		if !strings.Contains(s, want) {
			t.Errorf("markdown lacks %q", want)
		}
	}
	if strings.Contains(s, "__docs") || strings.Contains(s, "](fwctl_") {
		t.Error("markdown documents the hidden __docs command or links to other files")
	}
}
