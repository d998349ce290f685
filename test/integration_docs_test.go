package test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fwctl/fwctl/internal/fwagentcli"
)

// TestCLIDocs: docs/cli/PROGRAM.md is what the programs generate from
// their own command trees (the source of --help and the man pages), every
// runnable command there has an Examples section, and the man pages
// render.
func TestCLIDocs(t *testing.T) {
	bin := buildPrograms(t)
	dir := t.TempDir()
	for _, p := range []string{"fwctl", "fwrepo"} {
		out, err := exec.Command(filepath.Join(bin, p), "__docs", "--markdown", filepath.Join(dir, p+".md"), "--man", filepath.Join(dir, "man")).CombinedOutput()
		if err != nil {
			t.Fatalf("%s __docs: %v\n%s", p, err, out)
		}
	}
	var b bytes.Buffer
	if err := fwagentcli.WriteMarkdown(&b); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "fwagent.md"), b.Bytes(), 0o644)
	b.Reset()
	if err := fwagentcli.WriteMan(&b, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "man", "fwagent.1"), b.Bytes(), 0o644)

	for _, p := range []string{"fwctl", "fwrepo", "fwagent"} {
		got, _ := os.ReadFile(filepath.Join(dir, p+".md"))
		want, err := os.ReadFile(filepath.Join("..", "docs", "cli", p+".md"))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("docs/cli/%s.md is not what %s generates (%v): run 'make docs' and commit it", p, p, err)
		}
		// Sections: "## PROG CMD"; a runnable one shows its usage line.
		for _, sec := range strings.Split(string(got), "\n## ")[1:] {
			name, _, _ := strings.Cut(sec, "\n")
			if name == p || strings.Contains(name, "completion") || name == "fwagent tuf-conformance" {
				continue
			}
			if strings.Contains(sec, "```\n"+name) && !strings.Contains(sec, "### Examples") {
				t.Errorf("%s has no Examples section", name)
			}
		}
	}
	if man, err := exec.LookPath("man"); err == nil {
		for _, page := range []string{"fwctl.1", "fwctl-publish.1", "fwrepo-serve.1", "fwagent.1"} {
			cmd := exec.Command(man, "-l", "-P", "cat", filepath.Join(dir, "man", page))
			cmd.Env = append(os.Environ(), "MANWIDTH=100")
			out, err := cmd.CombinedOutput()
			if err != nil || !strings.Contains(string(out), "SYNOPSIS") || strings.Contains(string(out), "warning") {
				t.Errorf("man -l %s: %v\n%.400s", page, err, out)
			}
		}
	}
}
