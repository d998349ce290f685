package test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fwctl/fwctl/agent"
	"github.com/fwctl/fwctl/repo/inventory"
	"github.com/fwctl/fwctl/test/harness"
)

// TestFileIdentityReport: a device without a TPM gets an identity key in a
// file (0600) at provisioning; its PEM (labelled "Identity: file")
// registers with fwrepo's inventory, and its signed report is accepted.
// A key file others may read is refused.
func TestFileIdentityReport(t *testing.T) {
	r := newRelease(t)
	v1 := r.add("1.0.0", 1, 10_000)
	r.publish()
	db := r.deviceAPI(t, nil)
	cfg := harness.DeviceConfig(r.serve())
	cfg["bootloader"] = map[string]any{"type": "file", "path": "bootenv", "tries": 3}
	cfg["identity"] = map[string]any{"key_file": "state/identity.key"}
	hd, err := harness.WriteDevice(t.TempDir(), cfg, []byte("factory image"))
	if err != nil {
		t.Fatal(err)
	}
	d := &device{t: t, dir: hd.Dir}
	d.reload()
	p, err := d.ag.Provision(context.Background(), r.rootJSON())
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(hd.Dir, "state", "identity.key")
	fi, err := os.Stat(keyFile)
	if err != nil || fi.Mode().Perm() != 0o600 || p.FileIdentityKeyID == "" {
		t.Fatalf("identity key %s: %v, %v, key ID %q; want mode 0600", keyFile, fi.Mode(), err, p.FileIdentityKeyID)
	}
	d.mustInstall(v1)
	key, kind, err := d.ag.IdentityKey(context.Background())
	if err != nil || kind != agent.IdentityFile || key.KeyID() != p.FileIdentityKeyID {
		t.Fatalf("IdentityKey = %v, %q, %v", key, kind, err)
	}
	pemBytes, err := agent.IdentityPEM(key, kind)
	if err != nil || !strings.Contains(string(pemBytes), "Identity: file") {
		t.Fatalf("PEM %s, %v: want an Identity: file header", pemBytes, err)
	}
	if _, _, err := db.AddDevice(context.Background(), key.KeyID(), pemBytes, inventory.AddOptions{}); err != nil {
		t.Fatalf("fwrepo refused the file identity's PEM: %v", err)
	}
	res, err := d.ag.Report(context.Background(), key, agent.ReportOptions{})
	if err != nil || !res.Accepted {
		t.Fatalf("report signed by the file identity: %+v, %v", res, err)
	}
	st, err := d.ag.Status(context.Background())
	if err != nil || st.Identity != agent.IdentityFile {
		t.Fatalf("status identity = %q, %v", st.Identity, err)
	}

	if err := os.Chmod(keyFile, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := d.ag.IdentityKey(context.Background()); !errors.Is(err, agent.ErrIdentityPermissions) || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("a world-readable identity key = %v, want ErrIdentityPermissions", err)
	}
}
