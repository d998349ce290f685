package manifests

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"os"
	"strings"
	"testing"
	"time"
)

func TestCanonicalize(t *testing.T) {
	tests := []struct {
		name, in, want string
		bad            bool
	}{
		{name: "sorted and compact", in: ` { "b" : 1, "a" : [ true, false, null ], "c": {"y": "x", "x": -2} } `, want: `{"a":[true,false,null],"b":1,"c":{"x":-2,"y":"x"}}`},
		{name: "strings unescaped where possible", in: `"\u0041<&>\u00e9\n\u2028"`, want: `"A<&>é\n\u2028"`},
		{name: "big integer kept", in: `18446744073709551616`, want: `18446744073709551616`},
		{name: "byte order of names", in: `{"é":1,"z":2,"Z":3}`, want: `{"Z":3,"z":2,"é":1}`},
		{name: "empty containers", in: `{"a":{},"b":[]}`, want: `{"a":{},"b":[]}`},
		{name: "duplicate name", in: `{"a":1,"a":2}`, bad: true},
		{name: "float", in: `{"a":1.5}`, bad: true},
		{name: "exponent", in: `1e3`, bad: true},
		{name: "minus zero", in: `-0`, bad: true},
		{name: "trailing data", in: `{} {}`, bad: true},
		{name: "truncated", in: `{"a":`, bad: true},
		{name: "empty", in: ``, bad: true},
		{name: "invalid utf-8", in: "\"\xff\"", bad: true},
		{name: "too deep", in: strings.Repeat("[", 40) + strings.Repeat("]", 40), bad: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Canonicalize([]byte(tt.in))
			if tt.bad {
				if err == nil {
					t.Fatalf("Canonicalize(%q) = %s, want an error", tt.in, got)
				}
				return
			}
			if err != nil || string(got) != tt.want {
				t.Fatalf("Canonicalize(%q) = %s, %v; want %s", tt.in, got, err, tt.want)
			}
			again, err := Canonicalize(got)
			if err != nil || !bytes.Equal(again, got) {
				t.Fatalf("not idempotent: %s -> %s, %v", got, again, err)
			}
		})
	}
}

func testManifest() *DeviceManifest {
	at := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	return &DeviceManifest{Schema: 1, DeviceID: "gw-0001", Hardware: "acme-gw-v2", RunningSlot: "A", NextBoot: "A", Counter: 3,
		Slots: map[string]SlotReport{
			"A": {Status: SlotGood, Image: Image{Target: "acme-gw-v2/1.0.0/fw.img", Version: "1.0.0", Counter: 3, SHA256: strings.Repeat("ab", 32), Length: 10}},
			"B": {Status: SlotUnknown},
		},
		LastResult: &InstallResult{At: at, Outcome: OutcomeConfirmed, Version: "1.0.0"},
		Time:       at, Nonce: strings.Repeat("n", 32)}
}

func TestDeviceManifestValidate(t *testing.T) {
	tests := []struct {
		name string
		edit func(m *DeviceManifest)
		want error
		msg  string
	}{
		{"ok", func(*DeviceManifest) {}, nil, ""},
		{"no last result", func(m *DeviceManifest) { m.LastResult = nil; m.NextBoot = "" }, nil, ""},
		{"newer schema", func(m *DeviceManifest) { m.Schema = 2 }, ErrUnsupportedSchema, "upgrade fwrepo"},
		{"schema zero", func(m *DeviceManifest) { m.Schema = 0 }, ErrInvalidDeviceManifest, "schema 0"},
		{"bad device id", func(m *DeviceManifest) { m.DeviceID = "../x" }, ErrInvalidDeviceManifest, "device_id"},
		{"bad hardware", func(m *DeviceManifest) { m.Hardware = "" }, ErrInvalidDeviceManifest, "hardware"},
		{"running slot unknown", func(m *DeviceManifest) { m.RunningSlot = "C" }, ErrInvalidDeviceManifest, "running_slot"},
		{"next boot unknown", func(m *DeviceManifest) { m.NextBoot = "C" }, ErrInvalidDeviceManifest, "next_boot"},
		{"no slots", func(m *DeviceManifest) { m.Slots = nil }, ErrInvalidDeviceManifest, "slots: 0"},
		{"bad slot status", func(m *DeviceManifest) { m.Slots["B"] = SlotReport{Status: "flaky"} }, ErrInvalidDeviceManifest, "slots.B: status"},
		{"bad slot hash", func(m *DeviceManifest) { m.Slots["B"] = SlotReport{Status: SlotGood, Image: Image{SHA256: "abc"}} }, ErrInvalidDeviceManifest, "sha256"},
		{"uppercase hash", func(m *DeviceManifest) {
			m.Slots["B"] = SlotReport{Status: SlotGood, Image: Image{SHA256: strings.Repeat("AB", 32)}}
		}, ErrInvalidDeviceManifest, "lowercase"},
		{"bad slot name", func(m *DeviceManifest) { m.Slots["a b"] = SlotReport{Status: SlotGood} }, ErrInvalidDeviceManifest, "name"},
		{"control char in target", func(m *DeviceManifest) { m.Slots["B"] = SlotReport{Status: SlotGood, Image: Image{Target: "x\x00"}} }, ErrInvalidDeviceManifest, "target"},
		{"bad outcome", func(m *DeviceManifest) { m.LastResult.Outcome = "meh" }, ErrInvalidDeviceManifest, "outcome"},
		{"no time", func(m *DeviceManifest) { m.Time = time.Time{} }, ErrInvalidDeviceManifest, "time"},
		{"short nonce", func(m *DeviceManifest) { m.Nonce = "abc" }, ErrInvalidDeviceManifest, "nonce"},
		{"offline: no nonce, a seq", func(m *DeviceManifest) { m.Nonce, m.Seq = "", 7 }, nil, ""},
		{"no nonce and no seq", func(m *DeviceManifest) { m.Nonce = "" }, ErrInvalidDeviceManifest, "or none and a seq"},
		{"short nonce with a seq", func(m *DeviceManifest) { m.Nonce, m.Seq = "abc", 7 }, ErrInvalidDeviceManifest, "nonce"},
		{"several errors", func(m *DeviceManifest) { m.Nonce, m.Hardware = "", "" }, ErrInvalidDeviceManifest, "hardware"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := testManifest()
			tt.edit(m)
			err := m.Validate()
			if !errors.Is(err, tt.want) || (err != nil && !strings.Contains(err.Error(), tt.msg)) {
				t.Fatalf("Validate = %v, want %v containing %q", err, tt.want, tt.msg)
			}
		})
	}
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// reencode rewrites the manifest inside a signed envelope.
func reencode(t *testing.T, env []byte, edit func(m map[string]any)) []byte {
	t.Helper()
	var e map[string]any
	if err := json.Unmarshal(env, &e); err != nil {
		t.Fatal(err)
	}
	edit(e["manifest"].(map[string]any))
	b, err := json.MarshalIndent(e, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSignVerify(t *testing.T) {
	k, other := newKey(t), newKey(t)
	env, err := SignDeviceManifest(testManifest(), k)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		env       []byte
		key       *ecdsa.PublicKey
		parseErr  error
		verifyErr error
	}{
		{name: "ok", env: env, key: &k.PublicKey},
		{name: "reformatted but same content", env: reencode(t, env, func(map[string]any) {}), key: &k.PublicKey},
		{name: "other key", env: env, key: &other.PublicKey, verifyErr: ErrBadSignature},
		{name: "modified body", env: reencode(t, env, func(m map[string]any) { m["counter"] = 4 }), key: &k.PublicKey, verifyErr: ErrBadSignature},
		{name: "unknown member added", env: reencode(t, env, func(m map[string]any) { m["extra"] = "x" }), key: &k.PublicKey, verifyErr: ErrBadSignature},
		{name: "case-folded member", env: reencode(t, env, func(m map[string]any) { m["Counter"] = 9 }), parseErr: ErrInvalidDeviceManifest},
		{name: "invalid after edit", env: reencode(t, env, func(m map[string]any) { m["running_slot"] = "Z" }), parseErr: ErrInvalidDeviceManifest},
		{name: "not json", env: []byte("{"), parseErr: ErrInvalidDeviceManifest},
		{name: "no manifest", env: []byte(`{"signature":"AAAA","keyid":"` + strings.Repeat("0", 64) + `"}`), parseErr: ErrInvalidDeviceManifest},
		{name: "too large", env: bytes.Repeat([]byte(" "), MaxDeviceManifestSize+1), parseErr: ErrInvalidDeviceManifest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := ParseDeviceManifest(tt.env)
			if !errors.Is(err, tt.parseErr) {
				t.Fatalf("Parse = %v, want %v", err, tt.parseErr)
			}
			if err != nil {
				return
			}
			if err := s.Verify(tt.key); !errors.Is(err, tt.verifyErr) {
				t.Fatalf("Verify = %v, want %v", err, tt.verifyErr)
			}
		})
	}
}

func TestKeyIDMatchesPEM(t *testing.T) {
	k := newKey(t)
	der, _ := x509.MarshalPKIXPublicKey(&k.PublicKey)
	pub, err := ParsePublicKeyPEM(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	if err != nil || !pub.Equal(&k.PublicKey) {
		t.Fatalf("ParsePublicKeyPEM = %v", err)
	}
	if _, err := ParsePublicKeyPEM([]byte("not pem")); err == nil {
		t.Fatal("ParsePublicKeyPEM accepted garbage")
	}
}

// TestDeviceGolden pins the device manifest wire format: the signed vector
// (made with testdata/device-key.priv.pem, test-only) parses, its canonical
// bytes are the ones in device-canonical.json, and it verifies under
// device-key.pem, also when the manifest is re-indented.
func TestDeviceGolden(t *testing.T) {
	pub, err := ParsePublicKeyPEM(mustReadFile(t, "testdata/device-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"testdata/device-signed.json", "testdata/device-signed-indented.json"} {
		t.Run(name, func(t *testing.T) {
			s, err := ParseDeviceManifest(mustReadFile(t, name))
			if err != nil {
				t.Fatal(err)
			}
			if want := mustReadFile(t, "testdata/device-canonical.json"); !bytes.Equal(s.Signed, want) {
				t.Fatalf("canonical bytes differ from the golden vector:\n got %s\nwant %s", s.Signed, want)
			}
			if err := s.Verify(pub); err != nil {
				t.Fatal(err)
			}
			id, _ := KeyID(pub)
			if s.KeyID != id || s.Manifest.DeviceID != id || s.Manifest.Running().Version != "2.4.1" {
				t.Fatalf("unexpected content: keyid %s, device %s, running %+v", s.KeyID, s.Manifest.DeviceID, s.Manifest.Running())
			}
		})
	}
}

func mustReadFile(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func FuzzParseDeviceManifest(f *testing.F) {
	for _, name := range []string{"testdata/device-signed.json", "testdata/device-signed-indented.json"} {
		if b, err := os.ReadFile(name); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte(`{"manifest":{"a":[1,{"b":null}]},"signature":"AAAA","keyid":"00"}`))
	f.Add([]byte(`{"manifest":{"schema":1,"Schema":2},"signature":"AAAA","keyid":"` + strings.Repeat("0", 64) + `"}`))
	pub := &newKey(f).PublicKey
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseDeviceManifest(b)
		if err != nil {
			return
		}
		if err := s.Manifest.Validate(); err != nil {
			t.Fatalf("parsed manifest does not validate: %v", err)
		}
		c, err := Canonicalize(s.Signed)
		if err != nil || !bytes.Equal(c, s.Signed) {
			t.Fatalf("signed bytes are not canonical: %v", err)
		}
		_ = s.Verify(pub) // must not panic
	})
}
