package test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/fwctl/fwctl/repo"
)

// TestDeviceInstallsDelegatedRelease: a release signed by a vendor role
// that is delegated this hardware's paths is found and installed by a
// device's ordinary update, with no --target.
func TestDeviceInstallsDelegatedRelease(t *testing.T) {
	r := newRelease(t)
	r.ws.Passphrase = pw
	v1 := r.add("1.0.0", 1, 20_000)
	r.publish()
	vendorKey := newFileKey(t, t.TempDir(), "vendor.json")
	if err := r.ws.AddDelegation("acme", repo.DelegationOptions{Paths: []string{hw + "/*/*"}, Keys: []string{vendorKey}}); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(t.TempDir(), "firmware.img")
	v2 := make([]byte, 20_000)
	copy(v2, "vendor build 2.0.0")
	os.WriteFile(img, v2, 0o644)
	if _, err := r.ws.AddDelegatedTarget("acme", img, repo.AddOptions{Hardware: []string{hw}, Version: "2.0.0", Counter: 2}); err != nil {
		t.Fatal(err)
	}
	r.publish()

	d := newDevice(t, r.serve(), hw)
	d.provision(r.rootJSON())
	res, err := d.update()
	if err != nil || !res.Installed || res.Available.Version != "2.0.0" {
		t.Fatalf("update: %+v %v; want the delegated 2.0.0", res, err)
	}
	d.boot()
	if _, err := d.ag.Confirm(context.Background()); err != nil {
		t.Fatal(err)
	}
	d.assertRunning(v2)
	_ = v1
}
