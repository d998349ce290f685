package inventory

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/fwctl/fwctl/manifests"
)

// offline is an offline report of d: no nonce, sequence seq.
func (d *testDevice) offline(t *testing.T, seq uint64, version string) []byte {
	t.Helper()
	m := d.manifest("", version)
	m.Seq = seq
	return d.sign(t, m)
}

// TestImport: offline reports are ordered by their sequence, online and
// offline alike; every refusal leaves the stored report as it was. Two
// imports of one report at once store it once (the row lock on
// PostgreSQL, the single writer on SQLite).
func TestImport(t *testing.T) {
	forEachBackend(t, func(t *testing.T, _ backend, openDB func() *DB) {
		ctx := context.Background()
		db := openDB()
		dev, other, stranger := newTestDevice(t, "gw-1"), newTestDevice(t, "gw-1"), newTestDevice(t, "gw-9")
		if _, _, err := db.AddDevice(ctx, dev.id, dev.pem, AddOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := db.Import(ctx, dev.offline(t, 10, "1.0.0")); err != nil {
			t.Fatal(err)
		}
		online := dev.manifest(nonce(t, db), "2.0.0")
		online.Seq = 20
		if _, err := db.Accept(ctx, dev.sign(t, online)); err != nil {
			t.Fatal(err)
		}
		// The format refuses a report with neither (signing would too).
		noSeq := bytes.Replace(bytes.Replace(dev.offline(t, 5, "3.0.0"), []byte(`,"seq":5`), nil, 1), []byte(`"seq":5,`), nil, 1)
		for _, tc := range []struct {
			name string
			env  []byte
			want error
		}{
			{"same sequence as the online report", dev.offline(t, 20, "3.0.0"), ErrReplay},
			{"older than the online report", dev.offline(t, 15, "3.0.0"), ErrReplay},
			{"wrong key", other.offline(t, 30, "3.0.0"), manifests.ErrBadSignature},
			{"modified", bytes.Replace(dev.offline(t, 30, "3.0.0"), []byte(`"seq":30`), []byte(`"seq":31`), 1), manifests.ErrBadSignature},
			{"unregistered device", stranger.offline(t, 30, "3.0.0"), ErrUnknownDevice},
			{"no sequence and no nonce", noSeq, manifests.ErrInvalidDeviceManifest},
		} {
			t.Run(tc.name, func(t *testing.T) {
				if _, err := db.Import(ctx, tc.env); !errors.Is(err, tc.want) {
					t.Fatalf("Import = %v, want %v", err, tc.want)
				}
				got, _ := db.Device(ctx, dev.id)
				if got.Manifest.Seq != 20 || got.Manifest.Running().Version != "2.0.0" {
					t.Fatalf("a refused import changed the stored report: %+v", got.Manifest)
				}
			})
		}

		env := dev.offline(t, 30, "3.0.0")
		var wg sync.WaitGroup
		errs := make([]error, 4)
		for i := range errs {
			wg.Add(1)
			go func() { defer wg.Done(); _, errs[i] = db.Import(ctx, env) }()
		}
		wg.Wait()
		ok := 0
		for _, err := range errs {
			switch {
			case err == nil:
				ok++
			case !errors.Is(err, ErrReplay):
				t.Fatal(err)
			}
		}
		if ok != 1 {
			t.Fatalf("%d of 4 concurrent imports of one report were stored, want 1", ok)
		}
	})
}
