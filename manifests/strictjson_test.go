package manifests

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
)

func TestRejectDuplicateKeys(t *testing.T) {
	tests := []struct {
		in   string
		dup  bool
		fail bool
	}{
		{`{"manifest":{},"signature":"x","keyid":"y"}`, false, false},
		{`{"manifest":{"a":1},"signature":"x","manifest":{"a":2}}`, true, true},
		{`{"manifest":1,"\u006danifest":2}`, true, true},
		{`{"a":{"b":1,"b":2}}`, true, true},
		{`[{"a":1},{"a":1}]`, false, false}, // one per object
		{`{"a":[{"b":1}],"b":{"a":1}}`, false, false},
		{`{"A":1,"a":2}`, false, false}, // distinct names in JSON
		{`{"a":{"x":1},"a":[]}`, true, true},
		{`{"a":"a","b":"a"}`, false, false}, // values are not names
		{`{}`, false, false},
		{`"s"`, false, false},
		{`{"a":1} {"a":1}`, false, true},
		{`{"a":1`, false, true},
		{``, false, true},
		{`{"a":}`, false, true},
	}
	for _, tt := range tests {
		err := RejectDuplicateKeys([]byte(tt.in))
		if (err != nil) != tt.fail || errors.Is(err, ErrDuplicateKey) != tt.dup {
			t.Errorf("RejectDuplicateKeys(%s) = %v; want failure %v, duplicate %v", tt.in, err, tt.fail, tt.dup)
		}
	}
}

// TestRejectDuplicateKeysDepth: nesting is bounded, as in Canonicalize.
func TestRejectDuplicateKeysDepth(t *testing.T) {
	deep := make([]byte, 0, 300)
	for range 100 {
		deep = append(deep, '[')
	}
	for range 100 {
		deep = append(deep, ']')
	}
	if err := RejectDuplicateKeys(deep); err == nil {
		t.Fatal("100 levels of nesting accepted")
	}
}

// FuzzRejectDuplicateKeys: never panics; refuses whatever encoding/json
// refuses; what it accepts decodes, and decodes to a value whose own
// encoding it accepts too (no member lost to a duplicate).
func FuzzRejectDuplicateKeys(f *testing.F) {
	for _, s := range []string{`{"manifest":{"a":1},"manifest":{"a":2}}`, `{"a":[1,{"b":null}]}`, `[]`, `{"a":1,"\u0061":2}`, `1 2`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		err := RejectDuplicateKeys(b)
		if !json.Valid(b) {
			if err == nil {
				t.Fatalf("accepted invalid JSON %q", b)
			}
			return
		}
		if err != nil {
			if !errors.Is(err, ErrDuplicateKey) {
				// Valid JSON refused only for a duplicate or nesting.
				var v any
				if json.Unmarshal(b, &v) == nil && depth(v) < maxStrictDepth {
					t.Fatalf("refused valid JSON %q: %v", b, err)
				}
			}
			return
		}
		var v any
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.UseNumber()
		if err := dec.Decode(&v); err != nil {
			t.Fatalf("accepted %q, which does not decode: %v", b, err)
		}
		again, _ := json.Marshal(v)
		if err := RejectDuplicateKeys(again); err != nil {
			t.Fatalf("re-encoding %q refused: %v", again, err)
		}
	})
}

func depth(v any) int {
	d := 0
	switch x := v.(type) {
	case map[string]any:
		for _, e := range x {
			d = max(d, depth(e))
		}
		return d + 1
	case []any:
		for _, e := range x {
			d = max(d, depth(e))
		}
		return d + 1
	}
	return 0
}
