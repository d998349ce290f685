package fleetui

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fwctl/fwctl/internal/testenv"
	"github.com/fwctl/fwctl/manifests"
	"github.com/fwctl/fwctl/repo/exposure"
	"github.com/fwctl/fwctl/repo/inventory"
	"github.com/fwctl/fwctl/repo/inventory/rollout"
	"github.com/fwctl/fwctl/repo/sbom"
	"github.com/fwctl/fwctl/repo/server/operator"
)

// TestServiceFleet: FromService on a real inventory (SQLite and
// PostgreSQL) with real signed reports, repo/sbom's test SBOMs of two
// releases and the OSV records of repo/exposure's tests: a device's page
// has its identity, every reported attempt, its rollout and the
// advisories affecting the release it runs (curl's and git's on 1.0.0,
// fixed by 1.1.0, past support); the fleet's exposure counts them; an
// unknown device is ErrNoDevice.
func TestServiceFleet(t *testing.T) {
	backends := map[string]func(t *testing.T) string{
		"sqlite": func(t *testing.T) string { return filepath.Join(t.TempDir(), "fleet.db") },
		"postgres": func(t *testing.T) string {
			pg, err := testenv.StartPostgres()
			if errors.Is(err, testenv.ErrNoPostgres) {
				testenv.Missing(t, "PostgreSQL", err.Error())
			}
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = pg.Stop() })
			return pg.DSN
		},
	}
	for name, dsn := range backends {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			db, err := inventory.Open(dsn(t))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			storeRelease(t, db, "rootfs-v1.cdx.json", "acme-gw-v2/1.0.0/rootfs.img", "1.0.0", 1, "2025-06-30")
			storeRelease(t, db, "rootfs-v2.cdx.json", "acme-gw-v2/1.1.0/rootfs.img", "1.1.0", 2, "2030-12-31")
			at := time.Now().UTC().Add(-time.Hour).Truncate(time.Second)
			report(t, db, "gw-1", "acme-gw-v2/1.0.0/rootfs.img", "1.0.0", []manifests.InstallResult{
				{At: at, Target: "acme-gw-v2/1.1.0/rootfs.img", Version: "1.1.0", Outcome: manifests.OutcomeInstalled},
				{At: at.Add(time.Minute), Target: "acme-gw-v2/1.1.0/rootfs.img", Version: "1.1.0", Outcome: manifests.OutcomeFellBack, Error: "app-up <b>exited</b> 1"},
			})
			report(t, db, "gw-2", "acme-gw-v2/1.1.0/rootfs.img", "1.1.0", nil)
			d, err := exposure.Load(filepath.Join("..", "..", "exposure", "testdata", "osv"))
			if err != nil {
				t.Fatal(err)
			}
			if err := exposure.Import(ctx, db, d); err != nil {
				t.Fatal(err)
			}
			svc := &operator.Service{DB: db}
			if _, err := svc.Create(ctx, "r1", rollout.Spec{Target: "acme-gw-v2/1.1.0/rootfs.img", Filter: map[string]string{"site": "berlin"}, SuccessThreshold: 1}, "alice"); err != nil {
				t.Fatal(err)
			}
			f := FromService(func() *operator.Service { return svc })

			dev, err := f.Device(ctx, "gw-1", 10)
			if err != nil {
				t.Fatal(err)
			}
			if dev.Identity != inventory.IdentityFile || dev.Version != "1.0.0" || dev.Target != "acme-gw-v2/1.0.0/rootfs.img" || dev.Tags != "site=berlin" || dev.KeyID == "" {
				t.Errorf("gw-1: %+v", dev.Device)
			}
			if len(dev.Events) != 2 || dev.Events[0].Outcome != manifests.OutcomeFellBack || dev.Events[0].Error != "app-up <b>exited</b> 1" ||
				dev.Events[1].Outcome != manifests.OutcomeInstalled || dev.More {
				t.Errorf("gw-1 history (newest first): %+v more=%v", dev.Events, dev.More)
			}
			if dev.Rollout == nil || dev.Rollout.ID != "r1" || dev.Rollout.Status != string(rollout.Created) || dev.Rollout.Phase != string(rollout.Pending) {
				t.Errorf("gw-1 rollout: %+v", dev.Rollout)
			}
			// The history of its rollouts: r1 assigned it (before its
			// fell-back report) and was aborted; r2 includes it now.
			r1, err := db.Rollout(ctx, "r1")
			if err != nil {
				t.Fatal(err)
			}
			if err := db.SetDeviceStates(ctx, r1, []string{"gw-1"}, "assigned", at.Add(-time.Hour)); err != nil {
				t.Fatal(err)
			}
			if _, err := svc.Act(ctx, "r1", rollout.Abort, "alice"); err != nil {
				t.Fatal(err)
			}
			if _, err := svc.Create(ctx, "r2", rollout.Spec{Target: "acme-gw-v2/1.1.0/rootfs.img", Filter: map[string]string{"site": "berlin"}, SuccessThreshold: 1}, "alice"); err != nil {
				t.Fatal(err)
			}
			if dev, err = f.Device(ctx, "gw-1", 10); err != nil {
				t.Fatal(err)
			}
			if dev.Rollout == nil || dev.Rollout.ID != "r2" || len(dev.Rollouts) != 2 {
				t.Fatalf("gw-1 rollouts: active %+v, all %+v", dev.Rollout, dev.Rollouts)
			}
			if r := dev.Rollouts[0]; r.ID != "r2" || r.Phase != string(rollout.Pending) || r.Status != string(rollout.Created) || r.Wave != 0 {
				t.Errorf("gw-1's newest rollout: %+v", r)
			}
			if r := dev.Rollouts[1]; r.ID != "r1" || r.Status != string(rollout.Aborted) || r.Phase != string(rollout.Failed) ||
				r.Error != "fell-back: app-up <b>exited</b> 1" || r.Target != "acme-gw-v2/1.1.0/rootfs.img" || r.LastAt == nil || !r.LastAt.Equal(at.Add(time.Minute)) {
				t.Errorf("gw-1's aborted rollout: %+v", r)
			}
			if dev2, err := f.Device(ctx, "gw-2", 10); err != nil || len(dev2.Rollouts) != 2 || dev2.Rollouts[1].Phase != string(rollout.Pending) {
				t.Errorf("gw-2 (never assigned) rollouts: %+v, %v", dev2, err)
			}
			if one, _ := f.Device(ctx, "gw-1", 1); len(one.Events) != 1 || !one.More {
				t.Errorf("gw-1 with at most 1 event: %d events, more=%v", len(one.Events), one.More)
			}
			if _, err := f.Device(ctx, "nope", 10); !errors.Is(err, ErrNoDevice) {
				t.Errorf("unknown device: %v, want ErrNoDevice", err)
			}

			e, err := f.Exposure(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, a := range e.ByDevice["gw-1"] {
				ids = append(ids, a.ID)
				if !slices.Equal(a.FixedBy, []string{"acme-gw-v2/1.1.0/rootfs.img"}) || len(a.Components) == 0 {
					t.Errorf("gw-1 %s: components %v, fixed by %v", a.ID, a.Components, a.FixedBy)
				}
			}
			slices.Sort(ids)
			if !slices.Equal(ids, []string{"CVE-2024-7264", "CVE-2025-48384"}) || len(e.ByDevice["gw-2"]) != 0 || len(e.Advisories) != 2 ||
				e.Advisories[0].Devices != 1 || e.PastSupport["gw-1"] != "2025-06-30" {
				t.Errorf("exposure: gw-1 %v, gw-2 %v, advisories %+v, past support %v", ids, e.ByDevice["gw-2"], e.Advisories, e.PastSupport)
			}
			devs, err := f.Devices(ctx)
			if err != nil || len(devs) != 2 || devs[0].ID != "gw-1" || devs[0].LastOutcome != manifests.OutcomeFellBack {
				t.Errorf("devices: %+v %v", devs, err)
			}
		})
	}
}

// storeRelease stores the components of one of repo/sbom's test SBOMs.
func storeRelease(t *testing.T, db *inventory.DB, file, target, version string, counter uint64, support string) {
	t.Helper()
	f, err := os.Open(filepath.Join("..", "..", "sbom", "testdata", file))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	doc, err := sbom.Parse(file, f, sbom.DefaultMaxBytes)
	if err != nil {
		t.Fatal(err)
	}
	rel := inventory.SBOMRelease{Target: target, Version: version, Hardware: "acme-gw-v2", Counter: counter, SupportUntil: support, SBOMSHA256: strings.Repeat("0", 64)}
	if err := db.StoreSBOMRelease(context.Background(), rel, exposure.Components(doc)); err != nil {
		t.Fatal(err)
	}
}

// report registers device id (a file identity, tagged site=berlin) and
// has it report running target with attempts, signed, through the
// inventory's real Accept path.
func report(t *testing.T, db *inventory.DB, id, target, version string, attempts []manifests.InstallResult) {
	t.Helper()
	ctx := context.Background()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	p := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Headers: map[string]string{"Identity": "file"}, Bytes: der})
	if _, _, err := db.AddDevice(ctx, id, p, inventory.AddOptions{}); err != nil {
		t.Fatal(err)
	}
	nonce, _, err := db.Nonce(ctx)
	if err != nil {
		t.Fatal(err)
	}
	m := &manifests.DeviceManifest{Schema: 1, DeviceID: id, Hardware: "acme-gw-v2", RunningSlot: "A", Counter: 1,
		Slots: map[string]manifests.SlotReport{"A": {Status: manifests.SlotGood, Image: manifests.Image{Target: target, Version: version, Counter: 1}},
			"B": {Status: manifests.SlotUnknown}},
		Attempts: attempts, Time: time.Now().UTC(), Nonce: nonce}
	env, err := manifests.SignDeviceManifest(m, key)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Accept(ctx, env); err != nil {
		t.Fatal(err)
	}
	if err := db.SetTags(ctx, id, map[string]string{"site": "berlin"}); err != nil {
		t.Fatal(err)
	}
}
