package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/fwctl/fwctl/internal/testenv"
	"github.com/fwctl/fwctl/repo/layout"
)

var torture = flag.Bool("torture", false, "also kill fwctl publish at every openat, write and fsync (make torture)")

// buildFwctl builds this command into dir: the kill test stops a real
// fwctl process, not the test binary.
func buildFwctl(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "fwctl")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// fwctl runs bin in dir and fails t unless it exits 0.
func fwctl(t *testing.T, bin, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("fwctl %s (in %s): %v\n%s%s", strings.Join(args, " "), dir, err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

// killTemplate is a workspace "ws" that published release 1.0 to "out",
// with release 2.0 and a new root (a second targets key) staged: the next
// publish writes a target, a root, targets, snapshot and timestamp.
func killTemplate(t *testing.T, bin string) string {
	t.Helper()
	dir := t.TempDir()
	fwctl(t, bin, dir, "init", "ws", "--insecure-plaintext-keys")
	os.WriteFile(filepath.Join(dir, "fw1.img"), bytes.Repeat([]byte("release 1.0 "), 1000), 0o644)
	os.WriteFile(filepath.Join(dir, "fw2.img"), bytes.Repeat([]byte("release 2.0 "), 1000), 0o644)
	fwctl(t, bin, dir, "-w", "ws", "target", "add", "fw1.img", "--hardware", "hw1", "--version", "1.0", "--counter", "1")
	fwctl(t, bin, dir, "-w", "ws", "publish", "--out", "out")
	fwctl(t, bin, dir, "-w", "ws", "target", "add", "fw2.img", "--hardware", "hw1", "--version", "2.0", "--counter", "2")
	fwctl(t, bin, dir, "key", "generate", "file:targets2.json", "--insecure-plaintext-keys")
	fwctl(t, bin, dir, "-w", "ws", "key", "add", "targets", "file:targets2.json")
	return dir
}

// copyTree copies the template into a new directory.
func copyTree(t *testing.T, src string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "run")
	if err := os.CopyFS(dst, os.DirFS(src)); err != nil {
		t.Fatal(err)
	}
	return dst
}

// immutable reads every file of the repository in out that must never
// change once written: versioned metadata and targets.
func immutable(t *testing.T, out string) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	filepath.WalkDir(out, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		name, _ := filepath.Rel(out, p)
		name = filepath.ToSlash(name)
		if strings.HasPrefix(filepath.Base(name), ".") || !layout.Immutable(name) {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		files[name] = b
		return nil
	})
	return files
}

var renameRE = regexp.MustCompile(`rename(?:at2?)?\((?:AT_FDCWD, )?"[^"]*", (?:AT_FDCWD, )?"([^"]+)"`)

// renames lists the destinations fwctl publish renames files to, in order,
// from a complete run under strace.
func renames(t *testing.T, strace, bin, template string) []string {
	t.Helper()
	dir := copyTree(t, template)
	log := filepath.Join(t.TempDir(), "strace.log")
	cmd := exec.Command(strace, "-f", "-qq", "-o", log, "-e", "trace=rename,renameat,renameat2", "-e", "signal=none",
		bin, "-w", "ws", "publish", "--out", "out")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("publish under strace: %v\n%s", err, out)
	}
	b, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range renameRE.FindAllStringSubmatch(string(b), -1) {
		out = append(out, m[1])
	}
	if len(out) < 8 {
		t.Fatalf("publish renamed only %d files:\n%s", len(out), b)
	}
	return out
}

// killedPublish runs fwctl publish in dir under strace with the injection
// args; it reports whether the process was killed (false: it completed).
func killedPublish(t *testing.T, strace, bin, dir string, args ...string) bool {
	t.Helper()
	args = append(append([]string{"-f", "-qq", "-o", "/dev/null"}, args...), bin, "-w", "ws", "publish", "--out", "out")
	cmd := exec.Command(strace, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return false
	case errors.As(err, &ee) && (ee.ExitCode() == 128+9 || strings.Contains(ee.String(), "killed")):
		return true
	default:
		t.Fatalf("publish under strace %v: %v\n%s", args, err, out)
		return false
	}
}

// checkRecovers asserts what must hold after a publish was killed at any
// point: running it again succeeds, the repository verifies from the first
// root and holds release 2.0, and no immutable file written before the
// kill changed.
func checkRecovers(t *testing.T, bin, dir, point string) {
	t.Helper()
	before := immutable(t, filepath.Join(dir, "out"))
	fwctl(t, bin, dir, "-w", "ws", "publish", "--out", "out")
	var res struct {
		Targets []struct {
			Path string `json:"path"`
		} `json:"targets"`
	}
	v := fwctl(t, bin, dir, "--json", "verify", "--root", "ws/metadata/1.root.json", "--repo", "out")
	if err := json.Unmarshal([]byte(v), &res); err != nil {
		t.Fatalf("%s: verify --json: %v\n%s", point, err, v)
	}
	if len(res.Targets) != 2 {
		t.Errorf("%s: the repository holds %d targets after the rerun, want both releases: %s", point, len(res.Targets), v)
	}
	after := immutable(t, filepath.Join(dir, "out"))
	for name, b := range before {
		if !bytes.Equal(after[name], b) {
			t.Errorf("%s: the rerun rewrote %s, which was already published (%d bytes, now %d): a CDN keeps the old bytes forever", point, name, len(b), len(after[name]))
		}
	}
	// And once more: a publish after the repair is an ordinary one.
	fwctl(t, bin, dir, "-w", "ws", "publish", "--out", "out")
	fwctl(t, bin, dir, "verify", "--root", "ws/metadata/1.root.json", "--repo", "out")
}

// TestPublishKilled kills a real fwctl publish (strace injects SIGKILL) at
// every rename it makes, in the workspace and in the output, then runs it
// again: the rerun must succeed, the repository must verify, and no
// versioned metadata file or target written before the kill may change.
// With -torture it also kills at every openat, write and fsync (strace
// counts those per thread, so which point the Nth one is depends on the Go
// scheduler; every point reached must recover all the same).
func TestPublishKilled(t *testing.T) {
	strace := testenv.LookPath(t, "strace", "apt-get install strace (scripts/deps.sh)")
	bin := buildFwctl(t)
	template := killTemplate(t, bin)
	seen := map[string]int{}
	for i, dst := range renames(t, strace, bin, template) {
		seen[dst]++
		point := fmt.Sprintf("rename %d (%s)", i+1, dst)
		t.Run(fmt.Sprintf("rename-%02d", i+1), func(t *testing.T) {
			dir := copyTree(t, template)
			// -P selects renames onto dst; when=k its k-th one.
			if !killedPublish(t, strace, bin, dir, "-P", dst, "-e", "trace=rename,renameat,renameat2",
				"-e", fmt.Sprintf("inject=rename,renameat,renameat2:signal=SIGKILL:when=%d", seen[dst])) {
				t.Fatalf("%s: publish was not killed there", point)
			}
			checkRecovers(t, bin, dir, point)
		})
	}
	if !*torture {
		return
	}
	for _, set := range []string{"openat", "write", "fsync,fdatasync"} {
		for n := 1; ; n++ {
			dir := copyTree(t, template)
			if !killedPublish(t, strace, bin, dir, "-e", "trace="+set, "-e", fmt.Sprintf("inject=%s:signal=SIGKILL:when=%d", set, n)) {
				t.Logf("%s: publish completed at n=%d", set, n)
				break
			}
			checkRecovers(t, bin, dir, fmt.Sprintf("%s %d", set, n))
			if t.Failed() {
				return
			}
		}
	}
}
