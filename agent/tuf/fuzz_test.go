package tuf

import (
	"testing"
	"time"
)

const seedRoot = `{"signed":{"_type":"root","spec_version":"1.0.31","version":1,"expires":"2030-01-01T00:00:00Z","consistent_snapshot":true,
"keys":{"k":{"keytype":"ed25519","scheme":"ed25519","keyval":{"public":"8f1c1f7c1d7b7a4e0f5d2b3c4a5968778695a4b3c2d1e0f00112233445566778"}}},
"roles":{"root":{"keyids":["k"],"threshold":1},"timestamp":{"keyids":["k"],"threshold":1},"snapshot":{"keyids":["k"],"threshold":1},"targets":{"keyids":["k"],"threshold":1}}},
"signatures":[{"keyid":"k","sig":"00"}]}`

const seedTargets = `{"signed":{"_type":"targets","spec_version":"1.0","version":2,"expires":"2030-01-01T00:00:00Z",
"targets":{"a/b":{"length":3,"hashes":{"sha256":"00ff"},"custom":{"fw":{"schema":1}}}},
"delegations":{"keys":{},"roles":[{"name":"r","keyids":[],"threshold":1,"terminating":true,"paths":["a/*"]}]}},"signatures":[]}`

// The parsers of untrusted metadata bytes must never panic, and what
// parses must be usable by the verifier.
func FuzzParseRoot(f *testing.F) {
	f.Add([]byte(seedRoot))
	f.Fuzz(func(t *testing.T, b []byte) {
		if r, err := ParseRoot(b); err == nil {
			_ = RoleKeysChanged(r, r, RoleTimestamp)
		}
		if tr, err := NewTrusted(b, time.Unix(0, 0)); err == nil {
			_ = tr.UpdateRoot(b)
			_ = tr.CheckRoot()
		}
	})
}

func FuzzParseTimestamp(f *testing.F) {
	f.Add([]byte(`{"signed":{"_type":"timestamp","spec_version":"1.0","version":1,"expires":"2030-01-01T00:00:00Z","meta":{"snapshot.json":{"version":1,"length":10,"hashes":{"sha256":"00"}}}},"signatures":[]}`))
	f.Fuzz(func(t *testing.T, b []byte) { _, _ = ParseTimestamp(b) })
}

func FuzzParseSnapshot(f *testing.F) {
	f.Add([]byte(`{"signed":{"_type":"snapshot","spec_version":"1.0","version":1,"expires":"2030-01-01T00:00:00Z","meta":{"targets.json":{"version":1}}},"signatures":[]}`))
	f.Fuzz(func(t *testing.T, b []byte) { _, _ = ParseSnapshot(b) })
}

func FuzzParseTargets(f *testing.F) {
	f.Add([]byte(seedTargets))
	f.Fuzz(func(t *testing.T, b []byte) {
		tg, err := ParseTargets(b)
		if err != nil || tg.Delegations == nil {
			return
		}
		for p := range tg.Targets {
			_ = tg.Delegations.delegatesTo(p)
		}
	})
}

func FuzzPathMatch(f *testing.F) {
	f.Add("a/*/[!x-z]?.img", "a/b/c1.img")
	f.Add("[", "[")
	f.Fuzz(func(t *testing.T, pattern, target string) { _ = PathMatch(pattern, target) })
}
