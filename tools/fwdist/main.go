// Command fwdist assembles release artefacts from a build's binaries (see
// package packaging): the man pages and docs/cli/ pages, the Debian
// packages and fwrepo's OCI image. The Makefile's docs, deb and image
// targets run it; it is not shipped.
//
//	fwdist docs  --bin DIR [--man DIR] [--markdown DIR]
//	fwdist deb   --bin DIR --man DIR --out DIR [--version V] [--arch ARCH]
//	fwdist image --bin DIR --out DIR [--version V] [--arch ARCH]
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/fwctl/fwctl/internal/atomicfile"
	"github.com/fwctl/fwctl/internal/fwagentcli"
	"github.com/fwctl/fwctl/internal/packaging"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "error: fwdist:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("usage: fwdist docs|deb|image [flags]")
	}
	fs := flag.NewFlagSet("fwdist "+args[0], flag.ContinueOnError)
	bin := fs.String("bin", "bin", "directory with the fwctl, fwrepo and fwagent binaries")
	man := fs.String("man", "", "man page directory (docs: write; deb: read)")
	md := fs.String("markdown", "", "docs: directory for PROGRAM.md pages (docs/cli)")
	out := fs.String("out", "dist", "output directory")
	version := fs.String("version", "", "release version (default: what the fwctl binary reports)")
	arch := fs.String("arch", runtime.GOARCH, "architecture of the binaries")
	examples := fs.String("examples", "examples", "the repository's examples/ directory")
	only := fs.String("only", "", "deb: comma-separated packages to build (default: fwctl,fwrepo,fwagent)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if *version == "" {
		v, err := binVersion(*bin)
		if err != nil {
			return err
		}
		*version = v
	}
	src := packaging.Sources{Bin: *bin, Man: *man, Examples: *examples, Version: *version, Arch: *arch}
	if *only != "" {
		src.Only = strings.Split(*only, ",")
	}
	var res any
	switch args[0] {
	case "docs":
		return docs(*bin, *man, *md)
	case "deb":
		pkgs, err := packaging.Debs(src, *out)
		if err != nil {
			return err
		}
		res = pkgs
	case "image":
		img, err := packaging.Image(src, *out)
		if err != nil {
			return err
		}
		res = img
	default:
		return fmt.Errorf("unknown command %q (docs, deb, image)", args[0])
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(res)
}

// binVersion asks the built fwctl its version.
func binVersion(bin string) (string, error) {
	out, err := exec.Command(filepath.Join(bin, "fwctl"), "version", "--json").Output()
	if err != nil {
		return "", fmt.Errorf("%s version: %w", filepath.Join(bin, "fwctl"), err)
	}
	var v struct{ Version string }
	if err := json.Unmarshal(out, &v); err != nil {
		return "", err
	}
	return v.Version, nil
}

// docs writes the man pages and the one-page Markdown references: fwctl's
// and fwrepo's from their cobra trees (hidden __docs command), fwagent's
// from its command table.
func docs(bin, man, md string) error {
	for _, d := range []string{man, md} {
		if d != "" {
			if err := os.MkdirAll(d, 0o755); err != nil {
				return err
			}
		}
	}
	for _, p := range []string{"fwctl", "fwrepo"} {
		args := []string{"__docs"}
		if man != "" {
			args = append(args, "--man", man)
		}
		if md != "" {
			args = append(args, "--markdown", filepath.Join(md, p+".md"))
		}
		cmd := exec.Command(filepath.Join(bin, p), args...)
		cmd.Stderr = os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("%s __docs: %w", p, err)
		}
	}
	date := time.Date(2026, time.January, 1, 0, 0, 0, 0, time.UTC)
	if man != "" {
		var b bytes.Buffer
		if err := fwagentcli.WriteMan(&b, date); err != nil {
			return err
		}
		if err := atomicfile.Write(filepath.Join(man, "fwagent.1"), b.Bytes(), 0o644); err != nil {
			return err
		}
	}
	if md != "" {
		var b bytes.Buffer
		if err := fwagentcli.WriteMarkdown(&b); err != nil {
			return err
		}
		if err := atomicfile.Write(filepath.Join(md, "fwagent.md"), b.Bytes(), 0o644); err != nil {
			return err
		}
	}
	return nil
}
