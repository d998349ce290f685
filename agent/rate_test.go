package agent

import (
	"testing"
	"time"

	"github.com/fwctl/fwctl/agent/tufclient"
)

// The slow-retrieval bound reaches the TUF client from the config.
func TestDownloadRateConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want tufclient.Rate
	}{
		{"defaults", Config{}, tufclient.DefaultRate},
		{"set", Config{MinDownloadRate: 256, RateWindow: Duration(time.Minute), RateGrace: Duration(time.Second)},
			tufclient.Rate{MinRate: 256, Window: time.Minute, Grace: time.Second}},
		{"off", Config{MinDownloadRate: -1}, tufclient.Rate{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			cfg.Bootloader = BootloaderConfig{Type: "file", Path: t.TempDir() + "/env"}
			a, err := New(&cfg, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			if a.client.Rate != tt.want {
				t.Fatalf("rate %+v, want %+v", a.client.Rate, tt.want)
			}
		})
	}
}
