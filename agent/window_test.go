package agent

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fwctl/fwctl/agent/trust"
	"github.com/fwctl/fwctl/manifests"
)

func TestMayReboot(t *testing.T) {
	sat := time.Date(2026, 12, 5, 3, 30, 0, 0, time.UTC) // a Saturday
	window := manifests.Maintenance{Reboot: []string{"Sat 03:00-04:00"}, Timezone: "UTC"}
	tests := []struct {
		name string
		m    *MaintenanceConfig
		at   time.Time
		want bool
		why  string
	}{
		{"no maintenance config", nil, sat, true, ""},
		{"inside the reboot window", &MaintenanceConfig{Maintenance: window}, sat, true, ""},
		{"outside the reboot window", &MaintenanceConfig{Maintenance: window}, sat.Add(time.Hour), false, "outside the reboot window"},
		{"left to the operator", &MaintenanceConfig{Maintenance: window, OperatorReboot: true}, sat, false, "operator"},
		{"may_reboot agrees", &MaintenanceConfig{Maintenance: window, MayReboot: []string{"true"}}, sat, true, ""},
		{"may_reboot says not now", &MaintenanceConfig{Maintenance: window, MayReboot: []string{"false"}}, sat, false, "not now"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := &Config{Repository: "http://127.0.0.1:1", Hardware: "gw", StateDir: dir,
				Slots:      map[string]string{"A": filepath.Join(dir, "a"), "B": filepath.Join(dir, "b")},
				Bootloader: BootloaderConfig{Type: "file", Path: filepath.Join(dir, "env")}, Maintenance: tt.m}
			a, err := New(cfg, trust.File{Dir: dir}, nil)
			if err != nil {
				t.Fatal(err)
			}
			a.Now = func() time.Time { return tt.at }
			ok, why := a.MayReboot(context.Background())
			if ok != tt.want || !strings.Contains(why, tt.why) {
				t.Fatalf("MayReboot = %v, %q; want %v, %q", ok, why, tt.want, tt.why)
			}
		})
	}
}
