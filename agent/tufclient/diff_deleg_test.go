package tufclient

import (
	"testing"

	"github.com/theupdateframework/go-tuf/v2/metadata"
)

func TestDifferentialDelegations(t *testing.T) {
	fw := []byte("firmware")
	role := func(name string, terminating bool, paths ...string) metadata.DelegatedRole {
		return metadata.DelegatedRole{Name: name, Terminating: terminating, Paths: paths}
	}
	tests := []struct {
		name  string
		setup func(s *sim)
		steps []step
	}{
		{"delegated target", func(s *sim) {
			s.delegate(metadata.TARGETS, role("a", false, "a/*"))
			s.addTarget("a", "a/x", fw)
		}, []step{{ok: true, targets: []string{"a/x"}}}},
		{"target outside the delegated paths", func(s *sim) {
			s.delegate(metadata.TARGETS, role("a", false, "a/*"))
			s.addTarget("a", "b/x", fw)
		}, []step{{ok: false, targets: []string{"b/x"}}}},
		{"star does not cross a slash", func(s *sim) {
			s.delegate(metadata.TARGETS, role("a", false, "a/*"))
			s.addTarget("a", "a/b/x", fw)
		}, []step{{ok: false, targets: []string{"a/b/x"}}}},
		{"glob classes", func(s *sim) {
			s.delegate(metadata.TARGETS, role("a", false, "fw-[0-9]?/*.img"))
			s.addTarget("a", "fw-1x/os.img", fw)
		}, []step{{ok: true, targets: []string{"fw-1x/os.img"}}}},
		{"terminating role stops the search", func(s *sim) {
			s.delegate(metadata.TARGETS, role("a", true, "*"))
			s.delegate(metadata.TARGETS, role("b", false, "*"))
			s.addTarget("b", "x", fw)
		}, []step{{ok: false, targets: []string{"x"}}}},
		{"non-terminating role goes on", func(s *sim) {
			s.delegate(metadata.TARGETS, role("a", false, "*"))
			s.delegate(metadata.TARGETS, role("b", false, "*"))
			s.addTarget("b", "x", fw)
		}, []step{{ok: true, targets: []string{"x"}}}},
		{"preorder: first role wins", func(s *sim) {
			s.delegate(metadata.TARGETS, role("a", false, "*"))
			s.delegate(metadata.TARGETS, role("b", false, "*"))
			s.addTarget("a", "x", fw)
			s.addTarget("b", "x", []byte("other"))
			// b's copy is not served under a's hash: only a's entry
			// downloads
		}, []step{{ok: true, targets: []string{"x"}}}},
		{"cycle", func(s *sim) {
			s.delegate(metadata.TARGETS, role("a", false, "*"))
			s.delegate("a", role("b", false, "*"))
			s.delegate("b", role("a", false, "*"))
		}, []step{{ok: false, targets: []string{"x"}}}},
		{"diamond", func(s *sim) {
			s.delegate(metadata.TARGETS, role("a", false, "*"))
			s.delegate(metadata.TARGETS, role("b", false, "*"))
			s.delegate("a", role("c", false, "*"))
			s.delegate("b", role("c", false, "*"))
			s.addTarget("c", "x", fw)
		}, []step{{ok: true, targets: []string{"x"}}}},
		{"hash prefixes", func(s *sim) {
			// sha256("x") starts with 2d71
			s.delegate(metadata.TARGETS, metadata.DelegatedRole{Name: "bin-2", PathHashPrefixes: []string{"2d"}})
			s.delegate(metadata.TARGETS, metadata.DelegatedRole{Name: "bin-other", PathHashPrefixes: []string{"00", "ff"}})
			s.addTarget("bin-2", "x", fw)
			s.addTarget("bin-other", "y", fw)
		}, []step{{ok: true, targets: []string{"x"}, goTUF: "go-tuf matches path_hash_prefixes against the base64 of the path's SHA-256, not its hex digest as the spec says"},
			{ok: false, targets: []string{"y"}}}},
		{"nested path restriction", func(s *sim) {
			s.delegate(metadata.TARGETS, role("a", false, "a/*"))
			s.delegate("a", role("b", false, "*/*"))
			s.addTarget("b", "a/x", fw)
			s.addTarget("b", "c/x", fw)
		}, []step{{ok: true, targets: []string{"a/x"}}, {ok: false, targets: []string{"c/x"}}}},
		{"too many delegations", func(s *sim) {
			prev := metadata.TARGETS
			for i := range 40 {
				name := "r" + string(rune('A'+i))
				s.delegate(prev, role(name, false, "*"))
				prev = name
			}
			s.addTarget(prev, "x", fw)
		}, []step{{ok: false, targets: []string{"x"}}}},
		{"two delegators of one role name", func(s *sim) {
			// a and b both delegate "c", each to its own key; c.json is
			// signed by a's key only and lists a target under b's paths.
			s.delegate(metadata.TARGETS, role("a", false, "a/*"))
			s.delegate(metadata.TARGETS, role("b", false, "b/*"))
			s.delegate("a", role("c", false, "a/*"))
			s.delegate("b", role("c", false, "b/*"))
			s.addTarget("c", "a/x", fw)
			s.addTarget("c", "b/x", []byte("malicious b"))
		}, []step{
			{ok: true, targets: []string{"a/x"}},
			{ok: false, targets: []string{"b/x"}}, // fresh session: both refuse
			{ok: false, targets: []string{"a/x", "b/x"}, goTUF: "go-tuf reuses c verified through a for the lookup through b"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { differential(t, tt.setup, tt.steps...) })
	}
}

func TestDifferentialSuccinctBins(t *testing.T) {
	differential(t, func(s *sim) {
		sg, key := newSigner(t, "ed25519")
		id, _ := key.ID()
		s.targets.Signed.Delegations = &metadata.Delegations{Keys: map[string]*metadata.Key{id: key},
			SuccinctRoles: &metadata.SuccinctRoles{KeyIDs: []string{id}, Threshold: 1, BitLength: 4, NamePrefix: "bins"}}
		for _, name := range s.targets.Signed.Delegations.SuccinctRoles.GetRoles() {
			s.delegated[name] = metadata.Targets(s.now.Add(7 * day))
			s.signers[name] = append(s.signers[name], sg)
		}
		for _, p := range []string{"x", "y", "hw/1/fw.img"} {
			res := s.targets.Signed.Delegations.SuccinctRoles.GetRolesForTarget(p)
			s.addTarget(res[0].Name, p, []byte(p))
		}
		// a target in the wrong bin is not found
		s.addTarget("bins-0", "not-in-bin-0", []byte("z"))
	}, step{ok: true, targets: []string{"x", "y", "hw/1/fw.img"}}, step{ok: false, targets: []string{"not-in-bin-0"}})
}
