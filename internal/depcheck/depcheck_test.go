package depcheck

import "testing"

func TestMatch(t *testing.T) {
	g := &Graph{Module: "example.com/m"}
	for _, tt := range []struct {
		path     string
		patterns []string
		want     bool
	}{
		{"example.com/m/agent", []string{"agent/..."}, true},
		{"example.com/m/agent/trust", []string{"agent/..."}, true},
		{"example.com/m/agentx", []string{"agent/..."}, false},
		{"example.com/m/agent/trust", []string{"agent"}, false},
		{"example.com/m/tpm", []string{"tpm"}, true},
		{"github.com/sigstore/rekor/pkg/client", []string{"github.com/sigstore/rekor/..."}, true},
		{"github.com/sigstore/rekorx", []string{"github.com/sigstore/rekor/..."}, false},
		{"example.com/m/repo", nil, false},
	} {
		if got := g.Match(tt.path, tt.patterns); got != tt.want {
			t.Errorf("Match(%s, %v) = %v, want %v", tt.path, tt.patterns, got, tt.want)
		}
	}
}

// TestLoad runs go list on this package itself: it is a leaf.
func TestLoad(t *testing.T) {
	g, err := Load(".", Config{GOOS: "linux", GOARCH: "arm64"}, ".")
	if err != nil {
		t.Fatal(err)
	}
	p := g.Packages[g.Module+"/internal/depcheck"]
	if p == nil || len(g.Ours(p)) != 0 {
		t.Fatalf("depcheck's closure: %+v", p)
	}
	AssertOnlyDependencies(t, g, []string{"internal/depcheck"}, nil)
}
