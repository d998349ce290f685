package policy

import (
	"errors"
	"strings"
	"testing"

	"github.com/fwctl/fwctl/manifests"
)

func TestAgree(t *testing.T) {
	shaA, shaB := strings.Repeat("a", 64), strings.Repeat("b", 64)
	fw := func(counter uint64, kind string, hw ...string) *manifests.Firmware {
		return &manifests.Firmware{Schema: 1, Hardware: hw, Version: "1", Counter: counter, Kind: kind}
	}
	offers := []Offer{
		{Path: "gw/1.0/image.bin", SHA256: shaA, Length: 100, Hashes: map[string]string{"sha256": shaA, "sha512": "cc"}, FW: fw(5, "full", "gw")},
		{Path: "gw/1.1/image.bin", SHA256: shaB, Length: 200, FW: fw(6, "full", "gw")},
		{Path: "gw/1.1/delta.bin", SHA256: shaB, Length: 20, FW: fw(6, "delta", "gw")},
		{Path: "other/1.0/image.bin", SHA256: shaA, Length: 100, FW: fw(5, "full", "other")},
		{Path: "gw/sbom.json", SHA256: shaA, Length: 100},
	}
	ok := Assigned{Path: "gw/1.0/image.bin", Length: 100, Hashes: map[string]string{"sha256": shaA}, Hardware: "gw", Counter: 5}
	mod := func(f func(a *Assigned)) Assigned {
		a := ok
		a.Hashes = map[string]string{"sha256": shaA}
		f(&a)
		return a
	}
	tests := []struct {
		name string
		as   Assigned
		want error
	}{
		{"agree", ok, nil},
		{"agree, both list sha512", mod(func(a *Assigned) { a.Hashes["sha512"] = "cc" }), nil},
		{"the older release, agreed", Assigned{Path: "gw/1.1/image.bin", Length: 200, Hashes: map[string]string{"sha256": shaB}, Hardware: "gw", Counter: 6}, nil},
		{"unknown target (director key compromise)", mod(func(a *Assigned) { a.Path = "gw/evil/image.bin" }), ErrDirectorDisagrees},
		{"another hash (director key compromise)", mod(func(a *Assigned) { a.Hashes["sha256"] = shaB }), ErrDirectorDisagrees},
		{"sha512 differs", mod(func(a *Assigned) { a.Hashes["sha512"] = "dd" }), ErrDirectorDisagrees},
		{"no sha256", mod(func(a *Assigned) { a.Hashes = map[string]string{"sha512": "cc"} }), ErrDirectorDisagrees},
		{"length differs", mod(func(a *Assigned) { a.Length = 101 }), ErrDirectorDisagrees},
		{"counter differs", mod(func(a *Assigned) { a.Counter = 4 }), ErrDirectorDisagrees},
		{"assignment for other hardware", mod(func(a *Assigned) { a.Hardware = "other" }), ErrDirectorDisagrees},
		{"image signed for other hardware", mod(func(a *Assigned) { a.Path = "other/1.0/image.bin" }), ErrDirectorDisagrees},
		{"a delta", Assigned{Path: "gw/1.1/delta.bin", Length: 20, Hashes: map[string]string{"sha256": shaB}, Hardware: "gw", Counter: 6}, ErrDirectorDisagrees},
		{"not firmware", mod(func(a *Assigned) { a.Path = "gw/sbom.json" }), ErrDirectorDisagrees},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := Agree(offers, &tt.as, "gw")
			if !errors.Is(err, tt.want) {
				t.Fatalf("Agree = %v, want %v", err, tt.want)
			}
			if err == nil && o.Path != tt.as.Path {
				t.Fatalf("Agree chose %s", o.Path)
			}
		})
	}
}
