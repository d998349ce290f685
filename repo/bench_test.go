package repo

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/fwctl/fwctl/repo/verify"
	"github.com/fwctl/fwctl/signer"
)

// BenchmarkSignRelease signs a release of 10,000 and 100,000 targets, as
// one targets file and spread over 256 hashed bins. It reports the
// metadata size per role and what a device downloads: for a no-update
// poll (timestamp only) and to look up one target after a change.
//
//	go test -run '^$' -bench SignRelease -benchtime 1x ./repo/
func BenchmarkSignRelease(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		for _, bins := range []int{0, 8} {
			name := fmt.Sprintf("targets=%d/flat", n)
			if bins > 0 {
				name = fmt.Sprintf("targets=%d/bins=%d", n, 1<<bins)
			}
			b.Run(name, func(b *testing.B) { benchSign(b, n, bins) })
		}
	}
}

func benchSign(b *testing.B, n, bits int) {
	ws := initWorkspace(b, InitOptions{})
	if bits > 0 {
		info, _, err := GenerateKey("file:"+filepath.Join(b.TempDir(), "bins.json"), "bins", signer.Ed25519, nil, signer.Options{})
		if err != nil {
			b.Fatal(err)
		}
		if err := ws.AddHashedBins(BinsOptions{Bits: bits, Keys: []string{info.URI}}); err != nil {
			b.Fatal(err)
		}
	}
	staged, err := ws.stagedTargets()
	if err != nil {
		b.Fatal(err)
	}
	binned := map[string]*metadata.Metadata[metadata.TargetsType]{}
	for i := range n {
		hwid := fmt.Sprintf("hw-%03d", i%200)
		p := fmt.Sprintf("%s/%d.0.0/firmware.img", hwid, i)
		custom := json.RawMessage(fmt.Sprintf(`{"fw":{"schema":1,"hardware":[%q],"version":"%d.0.0","counter":%d,"kind":"full"}}`, hwid, i, i))
		h := make([]byte, 32)
		copy(h, fmt.Sprintf("%032d", i))
		tf := &metadata.TargetFiles{Length: int64(1<<24 + i), Hashes: metadata.Hashes{"sha256": h}, Custom: &custom, Path: p}
		if bits == 0 {
			staged.Signed.Targets[p] = tf
			continue
		}
		role := staged.Signed.Delegations.SuccinctRoles.GetRolesForTarget(p)[0].Name
		if binned[role] == nil {
			if binned[role], err = metadata.Targets().FromFile(ws.stagedRolePath(role)); err != nil {
				b.Fatal(err)
			}
		}
		binned[role].Signed.Targets[p] = tf
	}
	if err := writeMetadata(ws.stagedTargetsPath(), staged); err != nil {
		b.Fatal(err)
	}
	for role, md := range binned {
		if err := writeMetadata(ws.stagedRolePath(role), md); err != nil {
			b.Fatal(err)
		}
	}
	out := filepath.Join(b.TempDir(), "pub")
	b.ResetTimer()
	for b.Loop() {
		// A new targets expiry forces every targets role to be re-signed.
		if _, err := ws.Publish(out, PublishOptions{skipCopy: true, Expiry: map[string]time.Duration{metadata.TARGETS: 90 * 24 * time.Hour}}); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	size := func(role string) int64 {
		vs, _ := verify.VersionedFiles(filepath.Join(out, "metadata"), role)
		name := role + ".json"
		if len(vs) > 0 {
			name = vs[len(vs)-1]
		}
		fi, err := os.Stat(filepath.Join(out, "metadata", name))
		if err != nil {
			return 0
		}
		return fi.Size()
	}
	ts, snap, tg := size("timestamp"), size("snapshot"), size("targets")
	b.ReportMetric(float64(tg), "targets-bytes")
	b.ReportMetric(float64(snap), "snapshot-bytes")
	b.ReportMetric(float64(ts), "poll-bytes") // a no-update poll fetches timestamp.json only
	lookup := ts + snap + tg
	if bits > 0 {
		var largest int64
		for _, r := range staged.Signed.Delegations.SuccinctRoles.GetRoles() {
			largest = max(largest, size(r))
		}
		b.ReportMetric(float64(largest), "bin-bytes")
		lookup += largest
	}
	b.ReportMetric(float64(lookup), "update-lookup-bytes") // timestamp + snapshot + targets (+ one bin)
}
