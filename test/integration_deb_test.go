package test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fwctl/fwctl/internal/testenv"
)

// makeDist runs `make TARGET DIST=tmp` as a user would and returns DIST.
func makeDist(t *testing.T, target string) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds release binaries and packages; skipped with -short")
	}
	mk := testenv.LookPath(t, "make", "apt-get install -y make")
	dist := t.TempDir()
	cmd := exec.Command(mk, "--no-print-directory", target, "DIST="+dist, "VERSION=v0.0.0-itest")
	cmd.Dir = ".."
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make %s: %v\n%s", target, err, out)
	}
	return dist
}

// TestDebianPackages builds the three packages with `make deb` (nfpm),
// installs them into this machine with dpkg -i, and runs the installed
// programs: version from /usr/bin, the man pages through man, and
// systemd-analyze verify on the installed units (man pages included).
// It purges the packages at the end.
func TestDebianPackages(t *testing.T) {
	dpkg := testenv.LookPath(t, "dpkg", "a Debian machine")
	if os.Geteuid() != 0 {
		testenv.Missing(t, "root (dpkg -i installs into this machine)", "run as root, as CI does")
	}
	dist := makeDist(t, "deb")
	debs, err := filepath.Glob(filepath.Join(dist, "*.deb"))
	if err != nil || len(debs) != 3 {
		t.Fatalf("make deb wrote %v (%v), want fwctl, fwrepo and fwagent .deb files", debs, err)
	}
	for _, d := range debs {
		out, err := exec.Command("dpkg-deb", "--info", d).CombinedOutput()
		if err != nil {
			t.Fatalf("dpkg-deb --info %s: %v\n%s", d, err, out)
		}
		if !strings.Contains(string(out), "Version: 0.0.0-itest") {
			t.Errorf("%s: control has no Version: 0.0.0-itest:\n%s", filepath.Base(d), out)
		}
	}
	t.Cleanup(func() {
		if out, err := exec.Command(dpkg, "--purge", "fwctl", "fwrepo", "fwagent").CombinedOutput(); err != nil {
			t.Errorf("dpkg --purge: %v\n%s", err, out)
		}
	})
	if out, err := exec.Command(dpkg, append([]string{"-i"}, debs...)...).CombinedOutput(); err != nil {
		t.Fatalf("dpkg -i: %v\n%s", err, out)
	}

	for _, p := range []string{"fwctl", "fwrepo", "fwagent"} {
		out, err := exec.Command("/usr/bin/"+p, "version").CombinedOutput()
		if err != nil || !strings.HasPrefix(string(out), p+" v0.0.0-itest ") {
			t.Errorf("/usr/bin/%s version: %v: %q, want %q", p, err, out, p+" v0.0.0-itest …")
		}
	}
	for _, f := range []string{
		"/lib/systemd/system/fwagent.service", "/lib/systemd/system/fwagent-confirm.service",
		"/lib/systemd/system/fwagent-confirm.timer", "/lib/systemd/system/fwrepo.service",
		"/usr/share/doc/fwagent/examples/config/simulator.json", "/usr/share/doc/fwctl/examples/ci/release.sh",
		"/usr/share/man/man1/fwctl.1.gz", "/usr/share/man/man1/fwctl-publish.1.gz",
		"/usr/share/man/man1/fwrepo-serve.1.gz", "/usr/share/man/man1/fwagent.1.gz",
	} {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("installed packages lack %s: %v", f, err)
		}
	}
	if fi, err := os.Stat("/etc/fwrepo/fwrepo.env"); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("/etc/fwrepo/fwrepo.env: %v, mode %v; want a root-only conffile (0600)", err, fi.Mode())
	}
	if out, err := exec.Command("getent", "passwd", "fwrepo").CombinedOutput(); err != nil {
		t.Errorf("the fwrepo postinst did not create the fwrepo user: %v %s", err, out)
	}
	if man, err := exec.LookPath("man"); err == nil {
		out, err := exec.Command(man, "-P", "cat", "fwagent").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "simulate-boot") {
			t.Errorf("man fwagent: %v\n%.500s", err, out)
		}
	}
	// The installed units, Documentation=man:… included.
	if analyze, err := exec.LookPath("systemd-analyze"); err == nil {
		out, err := exec.Command(analyze, "verify", "/lib/systemd/system/fwagent.service", "/lib/systemd/system/fwagent-confirm.service",
			"/lib/systemd/system/fwagent-confirm.timer", "/lib/systemd/system/fwrepo.service").CombinedOutput()
		if err != nil || len(out) > 0 {
			t.Errorf("systemd-analyze verify of the installed units: %v\n%s", err, out)
		}
	}
}
