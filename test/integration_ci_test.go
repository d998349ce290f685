package test

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/rhysd/actionlint"

	"github.com/fwctl/fwctl/internal/testenv"
)

// ciRelease is a signing workspace as a CI job sees it: the private keys of
// targets, snapshot and timestamp live outside it (as CI secrets do), and
// release.sh puts them back for the run.
type ciRelease struct {
	dir, ws, secrets, bin string
	env                   []string
}

func newCIRelease(t *testing.T) *ciRelease {
	t.Helper()
	testenv.LookPath(t, "jq", "apt-get install -y jq")
	r := &ciRelease{bin: buildPrograms(t), dir: t.TempDir()}
	r.ws, r.secrets = filepath.Join(r.dir, "release"), filepath.Join(r.dir, "secrets")
	r.env = append(os.Environ(), "PATH="+r.bin+string(os.PathListSeparator)+os.Getenv("PATH"),
		"FWCTL_PASSPHRASE=ci secret", "CI=true")
	r.fwctl(t, "init", r.ws)
	if err := os.Mkdir(r.secrets, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, role := range []string{"targets", "snapshot", "timestamp"} {
		keys, _ := filepath.Glob(filepath.Join(r.ws, "keys", role+"-*.json"))
		for _, k := range keys {
			if err := os.Rename(k, filepath.Join(r.secrets, role+".json")); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := os.WriteFile(filepath.Join(r.dir, "fw.img"), bytes.Repeat([]byte("firmware "), 20000), 0o644); err != nil {
		t.Fatal(err)
	}
	return r
}

func (r *ciRelease) fwctl(t *testing.T, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(filepath.Join(r.bin, "fwctl"), args...)
	cmd.Env, cmd.Dir = r.env, r.dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("fwctl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// release runs examples/ci/release.sh as both CI templates do and returns
// its exit code and output.
func (r *ciRelease) release(t *testing.T, env ...string) (int, string) {
	t.Helper()
	script, err := filepath.Abs(filepath.Join("..", "examples", "ci", "release.sh"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("bash", script)
	cmd.Dir = r.dir
	cmd.Env = append(append([]string{}, r.env...), "FWCTL_WORKSPACE=release", "FW_IMAGE=fw.img", "FW_HARDWARE=acme-gw-v2",
		"FW_OUT="+filepath.Join(r.dir, "out"),
		"FW_KEY_FILES="+strings.Join([]string{"secrets/targets.json", "secrets/snapshot.json", "secrets/timestamp.json"}, " "))
	cmd.Env = append(cmd.Env, env...)
	out, _ := cmd.CombinedOutput()
	return cmd.ProcessState.ExitCode(), string(out)
}

// TestCIReleaseScript runs the one script both CI templates call against a
// local directory output: a release is published and verifies from the
// first root, the key files from "secrets" do not stay in the workspace,
// and every failure exits non-zero with fwctl's exit code.
func TestCIReleaseScript(t *testing.T) {
	r := newCIRelease(t)
	code, out := r.release(t, "FW_VERSION=1.0.0", "FW_COUNTER=5")
	if code != 0 {
		t.Fatalf("release.sh exited %d\n%s", code, out)
	}
	var sum struct {
		Target, SHA256 string
		Counter        int
		Versions       map[string]int
	}
	b, err := os.ReadFile(filepath.Join(r.dir, "release.json"))
	if err == nil {
		err = json.Unmarshal(b, &sum)
	}
	if err != nil || sum.Target != "acme-gw-v2/1.0.0/fw.img" || sum.Counter != 5 || sum.Versions["targets"] != 1 || len(sum.SHA256) != 64 {
		t.Fatalf("release.json: %v %+v\n%s", err, sum, b)
	}
	r.fwctl(t, "verify", "--root", filepath.Join(r.ws, "metadata", "1.root.json"), "--repo", filepath.Join(r.dir, "out"))
	if left, _ := filepath.Glob(filepath.Join(r.ws, "keys", "*.json")); len(left) != 1 { // the root key only
		t.Errorf("key files left in the workspace after release.sh: %v, want only the root key", left)
	}

	tests := []struct {
		name string
		env  []string
		code int
		msg  string
	}{
		{"wrong passphrase", []string{"FW_VERSION=1.1.0", "FW_COUNTER=6", "FWCTL_PASSPHRASE=wrong"}, 1, "fwctl publish failed"},
		{"counter regression", []string{"FW_VERSION=0.9.0", "FW_COUNTER=1"}, 2, "fwctl target failed"},
		{"missing input", []string{"FW_VERSION=1.2.0"}, 2, "$FW_COUNTER is required"},
		{"not a key file", []string{"FW_VERSION=1.2.0", "FW_COUNTER=7", "FW_KEY_FILES=fw.img"}, 2, "not an fwctl key file"},
		{"unreachable store", []string{"FW_VERSION=1.3.0", "FW_COUNTER=8", "FW_OUT=s3://bucket/fw", "FW_S3_ENDPOINT=http://127.0.0.1:1",
			"AWS_ACCESS_KEY_ID=x", "AWS_SECRET_ACCESS_KEY=y", "AWS_REGION=us-east-1"}, -1, "failed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out := r.release(t, tt.env...)
			if code == 0 || (tt.code > 0 && code != tt.code) || !strings.Contains(out, tt.msg) {
				t.Errorf("release.sh exited %d, want %d (non-zero) with %q\n%s", code, tt.code, tt.msg, out)
			}
		})
	}
	// The failed runs published nothing: the repository still verifies at
	// targets v1.
	out2 := r.fwctl(t, "--json", "verify", "--root", filepath.Join(r.ws, "metadata", "1.root.json"), "--repo", filepath.Join(r.dir, "out"))
	if !strings.Contains(string(out2), `"targets": 1`) {
		t.Errorf("after the failed runs the repository changed:\n%s", out2)
	}
}

// TestCITemplates lints the GitHub workflow with actionlint (shellcheck on
// its run: blocks where shellcheck is installed), shellchecks release.sh,
// and checks that both templates call release.sh and set only inputs it
// documents.
func TestCITemplates(t *testing.T) {
	dir := filepath.Join("..", "examples", "ci")
	opts := &actionlint.LinterOptions{}
	sc := testenv.LookPath(t, "shellcheck", "apt-get install -y shellcheck (scripts/deps.sh)")
	opts.Shellcheck = sc
	var lintOut bytes.Buffer
	l, err := actionlint.NewLinter(&lintOut, opts)
	if err != nil {
		t.Fatal(err)
	}
	errs, err := l.LintFile(filepath.Join(dir, "github-workflow.yml"), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range errs {
		t.Errorf("actionlint: %s:%d:%d: %s [%s]", e.Filepath, e.Line, e.Column, e.Message, e.Kind)
	}
	if out, err := exec.Command(sc, filepath.Join(dir, "release.sh")).CombinedOutput(); err != nil {
		t.Errorf("shellcheck release.sh: %v\n%s", err, out)
	}

	script, err := os.ReadFile(filepath.Join(dir, "release.sh"))
	if err != nil {
		t.Fatal(err)
	}
	header := string(script[:bytes.Index(script, []byte("set -euo pipefail"))])
	for _, f := range []string{"github-workflow.yml", "gitlab-ci.yml"} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(b, []byte("examples/ci/release.sh")) {
			t.Errorf("%s does not call examples/ci/release.sh", f)
		}
		vars := map[string]bool{}
		for _, m := range regexp.MustCompile(`\b(FW_[A-Z0-9_]+|FWCTL_[A-Z0-9_]+)\b`).FindAllString(string(b), -1) {
			vars[m] = true
		}
		var undocumented []string
		for v := range vars {
			switch v {
			case "FW_TARGETS_KEY", "FW_SNAPSHOT_KEY", "FW_TIMESTAMP_KEY", "FW_BUCKET", "FW_PKCS11": // the templates' own secrets and switches
				continue
			}
			if !strings.Contains(header, v) {
				undocumented = append(undocumented, v)
			}
		}
		sort.Strings(undocumented)
		if len(undocumented) > 0 {
			t.Errorf("%s sets %v, which release.sh's header does not document", f, undocumented)
		}
	}
}
