package test

import (
	"bytes"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"

	"github.com/fwctl/fwctl/internal/testenv"
)

// quickStart returns the ```sh blocks of README.md's "Quick start by hand".
func quickStart(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i := strings.Index(s, "\n## Quick start by hand\n")
	if i < 0 {
		t.Fatal(`README.md has no "## Quick start by hand" section`)
	}
	s = s[i+1:]
	if j := strings.Index(s[3:], "\n## "); j >= 0 {
		s = s[:j+3]
	}
	var blocks []string
	for {
		i := strings.Index(s, "```sh\n")
		if i < 0 {
			break
		}
		s = s[i+6:]
		j := strings.Index(s, "```\n")
		if j < 0 {
			t.Fatal("README quick start: unterminated ```sh block")
		}
		blocks = append(blocks, s[:j])
		s = s[j+4:]
	}
	return blocks
}

// TestReadmeQuickStart runs the README's quick start as written: the first
// block (the build) in the checkout, the others in one shell in a scratch
// directory, as an unprivileged user when the test runs as root. The only
// change is the port: 127.0.0.1:8080 becomes a free one. The device config
// it writes must be examples/config/simulator.json.
func TestReadmeQuickStart(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the whole quick start; skipped with -short")
	}
	for _, tool := range []string{"make", "curl", "setpriv"} {
		testenv.LookPath(t, tool, "apt-get install -y "+tool)
	}
	blocks := quickStart(t)
	if len(blocks) != 3 || strings.TrimSpace(blocks[0]) != "make build && export PATH=$PWD/bin:$PATH" {
		t.Fatalf("README quick start: want 3 sh blocks, the first `make build && export PATH=$PWD/bin:$PATH`; got %d:\n%q", len(blocks), blocks)
	}
	build := exec.Command("bash", "-euo", "pipefail", "-c", blocks[0]+"\necho \"$PATH\"")
	build.Dir = ".."
	out, err := build.Output()
	if err != nil {
		t.Fatalf("README block 1: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	path := lines[len(lines)-1]

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	script := strings.ReplaceAll(blocks[1]+blocks[2], "127.0.0.1:8080", addr)

	// A scratch area the unprivileged user owns ($TMPDIR for mktemp -d).
	scratch, err := os.MkdirTemp("", "fwctl-readme-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(scratch) })
	os.Chmod(scratch, 0o755)
	home := filepath.Join(scratch, "home")
	os.Mkdir(home, 0o755)
	uid := os.Getuid()
	cmd := exec.Command("bash", "-euo", "pipefail", "-c", "trap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n"+script+"\npwd >"+filepath.Join(home, "workdir"))
	if uid == 0 {
		os.Chown(home, 65534, 65534)
		cmd = exec.Command("setpriv", append([]string{"--reuid=65534", "--regid=65534", "--clear-groups", "--"}, cmd.Args...)...)
	}
	cmd.Dir = home
	cmd.Env = []string{"PATH=" + path, "HOME=" + home, "TMPDIR=" + home, "CI=1", "LANG=C.UTF-8"}
	var both bytes.Buffer
	cmd.Stdout, cmd.Stderr = &both, &both
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	err = cmd.Run()
	if cmd.Process != nil {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // fwrepo, should the script not have stopped it
	}
	if err != nil {
		t.Fatalf("README quick start (as uid %d) failed: %v\n%s", map[bool]int{true: 65534, false: uid}[uid == 0], err, both.String())
	}
	wd, _ := os.ReadFile(filepath.Join(home, "workdir"))
	var st struct {
		Counter    uint64 `json:"counter"`
		BootedSlot string `json:"booted_slot"`
	}
	status := exec.Command(filepath.Join(strings.Split(path, ":")[0], "fwagent"), "--json", "status")
	status.Dir = strings.TrimSpace(string(wd))
	status.Env = []string{"FWAGENT_CONFIG=device/config.json"}
	if sb, err := status.Output(); err != nil || json.Unmarshal(sb, &st) != nil || st.Counter != 17 || st.BootedSlot != "B" {
		t.Errorf("after the quick start: fwagent status %v %s: want slot B running, counter 17", err, sb)
	}

	// The config the README writes is examples/config/simulator.json.
	i := strings.Index(blocks[2], "<<'JSON'\n")
	j := strings.Index(blocks[2], "\nJSON\n")
	var inREADME, example any
	if i < 0 || j < 0 || json.Unmarshal([]byte(blocks[2][i+9:j]), &inREADME) != nil {
		t.Fatalf("README quick start: no JSON heredoc config in the device block")
	}
	b, err := os.ReadFile(filepath.Join("..", "examples", "config", "simulator.json"))
	if err != nil || json.Unmarshal(b, &example) != nil || !reflect.DeepEqual(inREADME, example) {
		t.Errorf("the README's device config differs from examples/config/simulator.json (%v): keep them the same", err)
	}
}
