// Package depcheck holds the dependency rules of DESIGN.md in tests, in the
// style of go-containerregistry's internal/depcheck: it loads the import
// closure of every package of the module with `go list`, once per build
// configuration that ships, and asserts allow-lists (a package may depend
// only on these of ours, a binary only on these modules) and deny-lists (a
// package never depends on these). A new import is then a decision recorded
// in a rule, not an accident. It is test-only: nothing in the products
// imports it, and it never builds anything.
package depcheck

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// Config is one build configuration: the environment `go list` runs with.
type Config struct {
	GOOS, GOARCH string
	CGO          bool
}

func (c Config) String() string {
	cgo := "nocgo"
	if c.CGO {
		cgo = "cgo"
	}
	return c.GOOS + "-" + c.GOARCH + "-" + cgo
}

func (c Config) env() []string {
	cgo := "0"
	if c.CGO {
		cgo = "1"
	}
	return append(os.Environ(), "GOOS="+c.GOOS, "GOARCH="+c.GOARCH, "CGO_ENABLED="+cgo, "GOFLAGS=")
}

// Shipped are the configurations fwctl builds for: the four device
// architectures of DESIGN.md, with and without cgo (fwagent ships without,
// fwctl with, for PKCS#11 and libzstd).
func Shipped() []Config {
	var cs []Config
	for _, arch := range []string{"amd64", "arm64", "arm", "riscv64"} {
		for _, cgo := range []bool{false, true} {
			cs = append(cs, Config{GOOS: "linux", GOARCH: arch, CGO: cgo})
		}
	}
	return cs
}

// Package is one package's closure in one configuration.
type Package struct {
	ImportPath string
	// Deps is every package it depends on, directly or not (standard
	// library included), as `go list` reports it.
	Deps []string
	// Modules maps each non-standard dependency to its module path.
	Modules map[string]string
}

// Graph is the closure of every package matched by a pattern in one
// configuration.
type Graph struct {
	Config Config
	// Module is the main module's path.
	Module   string
	Packages map[string]*Package
	// module of every package seen, ours or not ("" for the standard library).
	moduleOf map[string]string
}

type listed struct {
	ImportPath string
	Deps       []string
	Standard   bool
	DepOnly    bool
	Module     *struct{ Path string }
	Error      *struct{ Err string }
}

// Load runs `go list -deps` in dir for patterns under c.
func Load(dir string, c Config, patterns ...string) (*Graph, error) {
	args := append([]string{"list", "-e", "-deps", "-json=ImportPath,Deps,Standard,DepOnly,Module,Error"}, patterns...)
	cmd := exec.Command("go", args...)
	cmd.Dir, cmd.Env = dir, c.env()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go list (%s): %w\n%s", c, err, stderr.Bytes())
	}
	if err := touchSources(dir); err != nil {
		return nil, err
	}
	g := &Graph{Config: c, Packages: map[string]*Package{}, moduleOf: map[string]string{}}
	mcmd := exec.Command("go", "list", "-m")
	mcmd.Dir = dir
	mod, err := mcmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go list -m: %w", err)
	}
	g.Module = strings.TrimSpace(string(mod))
	dec := json.NewDecoder(bytes.NewReader(out))
	var roots []listed
	var errs []string
	for {
		var p listed
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return nil, fmt.Errorf("go list (%s) output: %w", c, err)
		}
		if p.Error != nil {
			errs = append(errs, p.ImportPath+": "+p.Error.Err)
		}
		if p.Module != nil && !p.Standard {
			g.moduleOf[p.ImportPath] = p.Module.Path
		}
		if !p.DepOnly {
			roots = append(roots, p)
		}
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("go list (%s) cannot load every package; fix the build first:\n%s", c, strings.Join(errs, "\n"))
	}
	for _, p := range roots {
		pkg := &Package{ImportPath: p.ImportPath, Deps: p.Deps, Modules: map[string]string{}}
		for _, d := range p.Deps {
			if m, ok := g.moduleOf[d]; ok {
				pkg.Modules[d] = m
			}
		}
		g.Packages[p.ImportPath] = pkg
	}
	return g, nil
}

// touchSources opens every directory and Go file of the module under dir.
// `go list` reads them in a child process, which go test's result cache
// cannot see; opening them here makes it see them, so that a changed import
// or a new package re-runs the test instead of replaying a cached pass.
func touchSources(dir string) error {
	return filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			if path != dir && (strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") || name == "testdata" || name == "node_modules") {
				return filepath.SkipDir
			}
			_, err := os.ReadDir(path)
			return err
		}
		if strings.HasSuffix(name, ".go") || name == "go.mod" || name == "go.sum" {
			f, err := os.Open(path)
			if err != nil {
				return err
			}
			return f.Close()
		}
		return nil
	})
}

// Ours lists the packages of the main module in p's closure.
func (g *Graph) Ours(p *Package) []string {
	var out []string
	for _, d := range p.Deps {
		if g.moduleOf[d] == g.Module {
			out = append(out, d)
		}
	}
	return out
}

// Match reports whether importPath is one of patterns: an import path, or
// "path/..." for the path and everything under it. Patterns without a dot
// in their first element are relative to the main module.
func (g *Graph) Match(importPath string, patterns []string) bool {
	for _, pat := range patterns {
		pat = g.abs(pat)
		if base, ok := strings.CutSuffix(pat, "/..."); ok {
			if importPath == base || strings.HasPrefix(importPath, base+"/") {
				return true
			}
		} else if importPath == pat {
			return true
		}
	}
	return false
}

// abs makes a module-relative pattern ("repo/online") absolute.
func (g *Graph) abs(pat string) string {
	first, _, _ := strings.Cut(pat, "/")
	if strings.Contains(first, ".") {
		return pat
	}
	return g.Module + "/" + pat
}

// Select returns the packages of the graph that match patterns, sorted.
func (g *Graph) Select(patterns ...string) []*Package {
	var ps []*Package
	for path, p := range g.Packages {
		if g.Match(path, patterns) {
			ps = append(ps, p)
		}
	}
	slices.SortFunc(ps, func(a, b *Package) int { return strings.Compare(a.ImportPath, b.ImportPath) })
	return ps
}

// Rel shortens an import path of ours for messages.
func (g *Graph) Rel(path string) string {
	if r, ok := strings.CutPrefix(path, g.Module+"/"); ok {
		return r
	}
	return path
}

// AssertOnlyDependencies fails t for every package of ours in the closure
// of a package matching from that is not itself matched by allowed (the
// package's own tree is always allowed). It fails too if from matches no
// package, so that a rule cannot hold vacuously.
func AssertOnlyDependencies(t testing.TB, g *Graph, from []string, allowed []string) {
	t.Helper()
	ps := g.Select(from...)
	if len(ps) == 0 {
		t.Errorf("%s: no package matches %v: the rule holds nothing", g.Config, from)
	}
	for _, p := range ps {
		for _, d := range g.Ours(p) {
			if !g.Match(d, allowed) && !g.Match(d, from) {
				t.Errorf("%s: %s depends on %s, which its rule does not allow (allowed: %v)", g.Config, g.Rel(p.ImportPath), g.Rel(d), allowed)
			}
		}
	}
}

// AssertNoDependency fails t for every package in the closure of a package
// matching from that matches forbidden (import paths or "path/..."
// prefixes, ours or third-party). It fails too if from matches nothing.
func AssertNoDependency(t testing.TB, g *Graph, from []string, forbidden []string) {
	t.Helper()
	ps := g.Select(from...)
	if len(ps) == 0 {
		t.Errorf("%s: no package matches %v: the rule holds nothing", g.Config, from)
	}
	for _, p := range ps {
		for _, d := range p.Deps {
			for _, f := range forbidden {
				if g.Match(d, []string{f}) {
					t.Errorf("%s: %s depends on %s (forbidden by %s)", g.Config, g.Rel(p.ImportPath), g.Rel(d), g.Rel(f))
					break
				}
			}
		}
	}
}

// AssertOnlyModules fails t for every third-party module in the closure of
// the package from that allowed does not list (exact module paths).
func AssertOnlyModules(t testing.TB, g *Graph, from string, allowed []string) {
	t.Helper()
	p := g.Packages[g.abs(from)]
	if p == nil {
		t.Errorf("%s: package %s not loaded", g.Config, from)
		return
	}
	seen := map[string]string{}
	for d, m := range p.Modules {
		if m != g.Module && !slices.Contains(allowed, m) {
			seen[m] = d
		}
	}
	for _, m := range slices.Sorted(maps.Keys(seen)) {
		t.Errorf("%s: %s links module %s (via %s), which its allow-list does not hold", g.Config, g.Rel(p.ImportPath), m, seen[m])
	}
}
