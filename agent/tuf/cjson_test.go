package tuf

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/secure-systems-lab/go-securesystemslib/cjson"
)

// The spec's rules (OLPC canonical JSON as securesystemslib writes it).
func TestCanonicalRules(t *testing.T) {
	tests := []struct{ in, want string }{
		{`{"b":1,"a":2}`, `{"a":2,"b":1}`},
		{` { "a" : [ 1 , 2 ] } `, `{"a":[1,2]}`},
		{`{"B":1,"a":2,"_":3}`, `{"B":1,"_":3,"a":2}`}, // byte order
		{`"quote\" backslash\\ slash\/"`, `"quote\" backslash\\ slash/"`},
		{`"tab\t nl\n ctl\u0001"`, "\"tab\t nl\n ctl\x01\""}, // control characters as raw bytes
		{`"caf\u00e9 \u2603"`, "\"café ☃\""},
		{`[true,false,null]`, `[true,false,null]`},
		{`123456789012345678901234567890`, `123456789012345678901234567890`}, // exact, beyond int64
		{`-0`, `0`},
		{`-17`, `-17`},
		{`{}`, `{}`},
		{`{"a":{"c":[],"b":{}}}`, `{"a":{"b":{},"c":[]}}`},
	}
	for _, tt := range tests {
		got, err := Canonical([]byte(tt.in))
		if err != nil || string(got) != tt.want {
			t.Errorf("Canonical(%s) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{`1.5`, `1e3`, `{"a":2.0}`, `{"a":1} x`, `[`, strings.Repeat("[", 600) + strings.Repeat("]", 600)} {
		if got, err := Canonical([]byte(bad)); err == nil {
			t.Errorf("Canonical(%.40s) = %q, want an error", bad, got)
		}
	}
}

// TestCanonicalMatchesSecuresystemslib compares with go-securesystemslib's
// cjson (the encoder go-tuf signs with) on metadata-like documents.
func TestCanonicalMatchesSecuresystemslib(t *testing.T) {
	docs := []string{
		`{"signed":{"_type":"root","version":3,"keys":{"k":{"keyval":{"public":"-----BEGIN PUBLIC KEY-----\nMFk=\n-----END PUBLIC KEY-----\n"}}}}}`,
		`{"z":"<&>","y":"\u2028\u2029","x":[1,-2,{"q":"\"\\"}],"w":null,"v":true}`,
		`{"custom":{"fw":{"schema":1,"hardware":["acme-gw-v2"],"counter":9007199254740993}}}`,
		`{"emoji":"😀","nul":"a\u0000b","del":"\u007f"}`,
	}
	for _, d := range docs {
		checkAgainstReference(t, []byte(d))
	}
}

func checkAgainstReference(t *testing.T, b []byte) {
	t.Helper()
	v, err := decodeValue(b)
	if err != nil {
		return
	}
	ref, rerr := cjson.EncodeCanonical(v)
	got, err := encodeCanonical(v)
	if rerr != nil {
		return // floats, "-0" and integers beyond int64 differ by design
	}
	if err != nil {
		t.Fatalf("%s: reference encodes %q, we fail: %v", b, ref, err)
	}
	if !bytes.Equal(got, ref) {
		t.Fatalf("%s:\n got %q\nwant %q", b, got, ref)
	}
}

func FuzzCanonical(f *testing.F) {
	f.Add([]byte(`{"b":1,"a":[true,null,"x\"\\\n"]}`))
	f.Add([]byte(`{"signed":{"_type":"targets","version":1}}`))
	f.Add([]byte(`-0`))
	f.Fuzz(func(t *testing.T, b []byte) {
		if bytes.Contains(b, []byte("-0")) {
			return // securesystemslib keeps "-0"; we write 0 as python does
		}
		checkAgainstReference(t, b)
		c, err := Canonical(b)
		if err != nil || !json.Valid(c) {
			return
		}
		c2, err := Canonical(c)
		if err != nil || !bytes.Equal(c, c2) {
			t.Fatalf("not idempotent: %q -> %q (%v)", c, c2, err)
		}
	})
}
