package tuf

import "testing"

// PathMatch follows python's fnmatch per path segment, as the spec and
// python-tuf do.
func TestPathMatch(t *testing.T) {
	tests := []struct {
		pattern, target string
		want            bool
	}{
		{"*", "a", true},
		{"*", "a/b", false}, // '*' does not cross '/'
		{"a/*", "a/b", true},
		{"a/*", "a/b/c", false},
		{"*/*", "a/b", true},
		{"a/*.img", "a/fw.img", true},
		{"a/*.img", "a/fw.bin", false},
		{"fw-?", "fw-1", true},
		{"fw-?", "fw-10", false},
		{"fw-[0-9]", "fw-7", true},
		{"fw-[!0-9]", "fw-7", false},
		{"fw-[!0-9]", "fw-x", true},
		{"fw-[^0-9]", "fw-^", true}, // '^' is a plain member in fnmatch
		{"[", "[", true},            // an unclosed '[' is literal
		{"[]]", "]", true},
		{"a\\*", "a\\b", true}, // no backslash escapes in fnmatch
		{"", "", true},
		{"**", "anything", true},
		{"é*", "été", true},
	}
	for _, tt := range tests {
		if got := PathMatch(tt.pattern, tt.target); got != tt.want {
			t.Errorf("PathMatch(%q, %q) = %v, want %v", tt.pattern, tt.target, got, tt.want)
		}
	}
}

// The hashed-bin name for a path follows TAP 15 (python-tuf's
// SuccinctRoles.get_role_for_target).
func TestSuccinctBin(t *testing.T) {
	s := SuccinctRoles{BitLength: 4, NamePrefix: "bins"}
	// sha256("x") = 2d71...: the first 4 bits are 2
	if got := s.roleFor("x"); got != "bins-2" {
		t.Fatalf("roleFor(x) = %s, want bins-2", got)
	}
	s.BitLength = 10 // 3 hex digits; first 10 bits of 0x2d71 = 0b0010110101 = 0xb5
	if got := s.roleFor("x"); got != "bins-0b5" {
		t.Fatalf("roleFor(x) = %s, want bins-0b5", got)
	}
}

func TestRoleKeysChanged(t *testing.T) {
	k := func() *Key { return &Key{KeyType: "ed25519", Scheme: "ed25519"} }
	root := func(th int, ids ...string) *Root {
		r := &Root{Keys: map[string]*Key{}, Roles: map[string]*RoleKeys{RoleTimestamp: {KeyIDs: ids, Threshold: th}}}
		for _, id := range ids {
			r.Keys[id] = k()
			r.Keys[id].KeyVal.Public = id
		}
		return r
	}
	tests := []struct {
		a, b *Root
		want bool
	}{
		{root(1, "a"), root(1, "a"), false},
		{root(1, "a", "b"), root(1, "b", "a"), false}, // order does not matter
		{root(1, "a"), root(1, "b"), true},
		{root(1, "a", "b"), root(2, "a", "b"), true},
		{root(1, "a"), root(1, "a", "b"), true},
	}
	for i, tt := range tests {
		if got := RoleKeysChanged(tt.a, tt.b, RoleTimestamp); got != tt.want {
			t.Errorf("case %d: %v, want %v", i, got, tt.want)
		}
	}
	changed := root(1, "a")
	changed.Keys["a"].KeyVal.Public = "other key material"
	if !RoleKeysChanged(root(1, "a"), changed, RoleTimestamp) {
		t.Error("new key material under the same key ID is a rotation")
	}
}
