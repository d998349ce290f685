package agent

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

const goodConfig = `{
  "repository": "http://127.0.0.1:8080",
  "hardware": "acme-gw",
  "state_dir": "state",
  "slots": {"A": "a.img", "B": "b.img"},
  "bootloader": {"type": "file", "path": "env"},
  "poll_interval": "1h",
  "health_checks": [{"name": "app", "command": ["true"], "timeout": "5s"}],
  "hooks": {"timeout": "1m"}
}
`

// TestConfigErrorsNameFieldAndLine: every config error says which member
// on which line is wrong.
func TestConfigErrorsNameFieldAndLine(t *testing.T) {
	for _, tt := range []struct {
		name, old, new, want string
	}{
		{"duration", `"poll_interval": "1h"`, `"poll_interval": "1 hour"`, `line 7: poll_interval: invalid duration "1 hour"`},
		{"nested duration", `"timeout": "5s"`, `"timeout": "5 secs"`, `line 8: health_checks[0].timeout: invalid duration "5 secs"`},
		{"duration in an object", `"hooks": {"timeout": "1m"}`, `"hooks": {"timeout": "soon"}`, `line 9: hooks.timeout: invalid duration "soon"`},
		{"unknown member", `"poll_interval"`, `"poll_intervall"`, `line 7: poll_intervall: unknown setting`},
		{"wrong type", `"hardware": "acme-gw"`, `"hardware": 7`, `line 3: hardware: want a string, got a JSON number`},
		{"syntax", `"state_dir": "state",`, `"state_dir": "state",,`, `line 4: invalid character ','`},
		{"invalid value", `"type": "file"`, `"type": "lilo"`, `line 6: bootloader.type: "lilo"`},
		{"empty slot path", `"A": "a.img"`, `"A": ""`, `line 5: slots.A: empty path`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "config.json")
			if !strings.Contains(goodConfig, tt.old) {
				t.Fatalf("%q not in the config", tt.old)
			}
			os.WriteFile(p, []byte(strings.Replace(goodConfig, tt.old, tt.new, 1)), 0o644)
			_, err := LoadConfig(p)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("LoadConfig: %v, want %q", err, tt.want)
			}
		})
	}
	p := filepath.Join(t.TempDir(), "config.json")
	os.WriteFile(p, []byte(goodConfig), 0o644)
	if _, err := LoadConfig(p); err != nil {
		t.Fatalf("the good config: %v", err)
	}
}

// TestDurationKeys holds durationKeys to the Duration members of Config.
func TestDurationKeys(t *testing.T) {
	found := map[string]bool{}
	var walk func(reflect.Type)
	walk = func(ty reflect.Type) {
		for ty.Kind() == reflect.Pointer || ty.Kind() == reflect.Slice {
			ty = ty.Elem()
		}
		if ty.Kind() != reflect.Struct {
			return
		}
		for i := range ty.NumField() {
			f := ty.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if f.Type == reflect.TypeFor[Duration]() {
				found[name] = true
			}
			walk(f.Type)
		}
	}
	walk(reflect.TypeFor[Config]())
	if !reflect.DeepEqual(found, durationKeys) {
		t.Fatalf("Duration members of Config %v, durationKeys %v", found, durationKeys)
	}
}
