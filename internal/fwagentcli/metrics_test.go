package fwagentcli

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/fwctl/fwctl/agent"
	"github.com/fwctl/fwctl/manifests"
)

// TestTextfileGolden holds fwagent metrics' output to
// testdata/metrics.prom (regenerate: FWAGENT_UPDATE_GOLDEN=1 go test -run
// TestTextfileGolden ./internal/fwagentcli).
func TestTextfileGolden(t *testing.T) {
	at := time.Date(2026, 12, 2, 18, 0, 0, 0, time.UTC)
	st := &agent.StatusReport{
		Hardware: "acme-gw-v2", BootedSlot: "B", NextBoot: "A", Counter: 17, TrustStore: "tpm", RootVer: 2,
		Slots: map[string]*agent.SlotState{
			"A": {Status: "installed", Image: manifests.Image{Version: "2.5.0"}},
			"B": {Status: "good", Image: manifests.Image{Version: "2.4.1"}},
		},
		Pending:   &agent.Install{Slot: "A", Image: manifests.Image{Version: "2.5.0"}},
		BootsLeft: 3,
		Last:      &agent.Result{At: at, Outcome: "installed", Version: "2.5.0"},
		History: []agent.Result{{Outcome: "confirmed"}, {Outcome: "fell-back", Error: `health "app" failed`},
			{Outcome: "confirmed"}, {Outcome: "installed"}},
	}
	var b bytes.Buffer
	writeTextfile(&b, st, at.Add(time.Minute))
	golden := filepath.Join("testdata", "metrics.prom")
	if os.Getenv("FWAGENT_UPDATE_GOLDEN") == "1" {
		os.MkdirAll("testdata", 0o755)
		if err := os.WriteFile(golden, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	// What Prometheus itself parses (node_exporter uses this parser).
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(b.Bytes()))
	if err != nil {
		t.Fatalf("the Prometheus text parser refuses the textfile: %v\n%s", err, b.String())
	}
	if f := fams["fwagent_security_counter"]; f == nil || f.GetMetric()[0].GetGauge().GetValue() != 17 {
		t.Errorf("fwagent_security_counter = %v, want 17", f)
	}
	if !bytes.Equal(b.Bytes(), want) {
		t.Errorf("textfile differs from %s:\n%s", golden, b.String())
	}
}

func TestLabelsEscape(t *testing.T) {
	got := labels("version", "2.0 \"rc\"\\\nx", "slot", "A")
	want := `{version="2.0 \"rc\"\\\nx",slot="A"}`
	if got != want {
		t.Errorf("labels = %s, want %s", got, want)
	}
}
