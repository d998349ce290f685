package repo

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fwctl/fwctl/signer"
)

var updateCeremony = flag.Bool("update-ceremony", false, "write the ceremony golden files in testdata/ceremony if they are missing (never overwrites)")

// The golden ceremony files in testdata/ceremony: a signing request written
// by ExportRequest under RequestFormat 1 (root v2, which makes root and
// targets 2 of 2 with a key that lives elsewhere, and targets v1 with one
// image), the plaintext test key
// that root key is, and the signature file SignRequest made with it under
// SignaturesFormat 1. They are written as 'fwctl ceremony export' and
// 'fwctl ceremony sign' write them (indented JSON and a newline) and are
// never rewritten: a request or signature file written by any past fwctl
// must keep parsing, and an air-gapped fwctl must keep signing it the same.
const ceremonyDir = "testdata/ceremony"

func ceremonyFile(name string) string { return filepath.Join(ceremonyDir, name) }

// writeCeremonyGolden creates the golden files (only with -update-ceremony).
func writeCeremonyGolden(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(ceremonyFile("v1-request.json")); err == nil {
		return
	}
	os.MkdirAll(ceremonyDir, 0o755)
	key, err := signer.Generate(signer.Ed25519)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := signer.Save(ceremonyFile("root-key.json"), "root", key, nil); err != nil {
		t.Fatal(err)
	}
	pub := filepath.Join(t.TempDir(), "root.pub")
	kf, _ := signer.ReadKeyFile(ceremonyFile("root-key.json"))
	os.WriteFile(pub, []byte(kf.Public), 0o644)
	now := func() time.Time { return time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC) }
	dir := filepath.Join(t.TempDir(), "ws")
	if _, err := Init(dir, InitOptions{InsecurePlaintext: true, Now: now}); err != nil {
		t.Fatal(err)
	}
	ws, err := Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	ws.Now = now
	// Root becomes 2 of 2, the second key on the air-gapped machine.
	if _, err := ws.Rotate("root", RotateOptions{Add: []string{"pub:" + pub}, Threshold: 2}); err != nil {
		t.Fatal(err)
	}
	if _, err := ws.Rotate("targets", RotateOptions{Add: []string{"pub:" + pub}, Threshold: 2}); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(t.TempDir(), "fw.img")
	os.WriteFile(img, bytes.Repeat([]byte("golden firmware "), 64), 0o644)
	if _, err := ws.AddTarget(img, AddOptions{Hardware: []string{"acme-gw-v2"}, Version: "1.0.0", Counter: 1}); err != nil {
		t.Fatal(err)
	}
	req, err := ws.ExportRequest()
	if err != nil {
		t.Fatal(err)
	}
	sf, err := SignRequest(req, key)
	if err != nil {
		t.Fatal(err)
	}
	for name, v := range map[string]any{"v1-request.json": req, "v1-signatures.json": sf} {
		b, _ := json.MarshalIndent(v, "", "  ")
		if err := os.WriteFile(ceremonyFile(name), append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s", ceremonyFile(name))
	}
}

func readCeremony(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(ceremonyFile(name))
	if err != nil {
		t.Fatalf("%v (go test -run Ceremony -update-ceremony writes missing golden files)", err)
	}
	return b
}

// strictDecode decodes b into v refusing unknown fields, so that a field the
// current types renamed or dropped shows up.
func strictDecode(t *testing.T, b []byte, v any) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("golden file no longer decodes into the current types: %v", err)
	}
}

// TestGoldenCeremonyRequest: the golden request parses (digests, canonical
// bytes, versions), reviews without an unreadable role, and encodes back to
// the same bytes.
func TestGoldenCeremonyRequest(t *testing.T) {
	if *updateCeremony {
		writeCeremonyGolden(t)
	}
	b := readCeremony(t, "v1-request.json")
	req, err := ParseRequest(b)
	if err != nil {
		t.Fatalf("ParseRequest(golden): %v", err)
	}
	var strict Request
	strictDecode(t, b, &strict)
	if req.Format != 1 {
		t.Fatalf("golden request format %d, want 1", req.Format)
	}
	var roles []string
	for _, rr := range req.Roles {
		roles = append(roles, rr.Role)
		for _, line := range rr.Summary(true) {
			if strings.HasPrefix(line, "UNREADABLE") {
				t.Errorf("%s: %s", rr.Role, line)
			}
		}
	}
	if got := strings.Join(roles, ","); got != "root,targets" {
		t.Fatalf("golden request roles %s, want root,targets", got)
	}
	again, _ := json.MarshalIndent(req, "", "  ")
	if !bytes.Equal(append(again, '\n'), b) {
		t.Fatal("the golden request does not encode back to the same bytes: a field changed name, type or order")
	}
}

// TestGoldenCeremonySignatures: the golden signature file decodes into the
// current types, and signing the golden request with the golden key today
// gives byte-for-byte the same file (Ed25519 signatures are deterministic).
// Each signature verifies over the request's bytes with the request's key.
func TestGoldenCeremonySignatures(t *testing.T) {
	if *updateCeremony {
		writeCeremonyGolden(t)
	}
	golden := readCeremony(t, "v1-signatures.json")
	var sf SignatureFile
	strictDecode(t, golden, &sf)
	if sf.Format != 1 || len(sf.Signatures) == 0 {
		t.Fatalf("golden signature file: format %d with %d signatures", sf.Format, len(sf.Signatures))
	}
	req, err := ParseRequest(readCeremony(t, "v1-request.json"))
	if err != nil {
		t.Fatal(err)
	}
	key, _, err := signer.Load(ceremonyFile("root-key.json"), nil)
	if err != nil {
		t.Fatal(err)
	}
	now, err := SignRequest(req, key)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.MarshalIndent(now, "", "  ")
	if !bytes.Equal(append(b, '\n'), golden) {
		t.Fatalf("signing the golden request today gives a different signature file:\n%s\nwant\n%s", b, golden)
	}
	for _, rs := range sf.Signatures {
		var rr *RequestRole
		for i := range req.Roles {
			if req.Roles[i].Role == rs.Role {
				rr = &req.Roles[i]
			}
		}
		if rr == nil || rr.SHA256 != rs.SHA256 || rr.Version != rs.Version {
			t.Fatalf("signature for %s v%d matches no role of the request", rs.Role, rs.Version)
		}
		k, ok := rr.Keys[rs.KeyID]
		if !ok {
			t.Fatalf("signature for %s by %s: not a key of the request", rs.Role, rs.KeyID)
		}
		v, err := k.ToPublicKey()
		if err != nil {
			t.Fatal(err)
		}
		if err := verifyWith(v, rr.Signed, rs.Sig); err != nil {
			t.Fatalf("signature for %s does not verify: %v", rs.Role, err)
		}
	}
}

// verifyWith checks an Ed25519 signature (the golden key's algorithm).
func verifyWith(pub crypto.PublicKey, msg, sig []byte) error {
	k, ok := pub.(ed25519.PublicKey)
	if !ok {
		return errors.New("the golden key is not Ed25519")
	}
	if !ed25519.Verify(k, msg, sig) {
		return errors.New("bad signature")
	}
	return nil
}
