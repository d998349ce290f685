package testenv

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// S3 is a private S3-compatible object store for one test: versitygw with
// its POSIX backend on 127.0.0.1 at a free port, started by scripts/s3.sh,
// with fixed test credentials and one empty bucket.
type S3 struct {
	// Env holds AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
	// AWS_REGION and FW_S3_BUCKET.
	Env    map[string]string
	Bucket string
}

// URL returns s3://BUCKET/prefix.
func (s *S3) URL(prefix string) string { return "s3://" + s.Bucket + "/" + prefix }

// Setenv sets s.Env in the test's environment (t.Setenv: not with
// t.Parallel).
func (s *S3) Setenv(t testing.TB) {
	t.Helper()
	for k, v := range s.Env {
		t.Setenv(k, v)
	}
}

// s3Script is scripts/s3.sh in this checkout.
func s3Script() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "scripts", "s3.sh")
}

// versitygwPath is where scripts/s3.sh builds versitygw.
func versitygwPath() string {
	dir := os.Getenv("FW_TOOLS_DIR")
	if dir == "" {
		home, _ := os.UserHomeDir()
		dir = filepath.Join(home, ".cache", "fwctl-tools", "bin")
	}
	return filepath.Join(dir, "versitygw")
}

// RequireS3 starts a private S3 server for t and stops it (removing its
// objects) when t ends. Without the versitygw binary it calls Missing:
// 'make tools' builds it.
func RequireS3(t testing.TB) *S3 {
	t.Helper()
	if _, err := os.Stat(versitygwPath()); err != nil {
		Missing(t, "versitygw (S3-compatible server)", "run 'make tools' or scripts/s3.sh build to build it into "+filepath.Dir(versitygwPath())+", about 3 minutes once")
	}
	script := s3Script()
	dir := t.TempDir()
	var stderr bytes.Buffer
	cmd := exec.Command(script, "start", dir)
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		exec.Command(script, "stop", dir).Run()
		t.Fatalf("start the S3 server with %s start %s: %v\n%s", script, dir, err, stderr.String())
	}
	t.Cleanup(func() {
		if out, err := exec.Command(script, "stop", dir).CombinedOutput(); err != nil {
			t.Errorf("stop the S3 server: %v\n%s", err, out)
		}
	})
	out, err := exec.Command(script, "env", dir).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			out = ee.Stderr
		}
		t.Fatalf("%s env %s: %v\n%s", script, dir, err, out)
	}
	s := &S3{Env: map[string]string{}}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok {
			s.Env[k] = v
		}
	}
	s.Bucket = s.Env["FW_S3_BUCKET"]
	if s.Bucket == "" || s.Env["AWS_ENDPOINT_URL"] == "" {
		t.Fatalf("%s env printed no bucket or endpoint:\n%s", script, out)
	}
	return s
}
