package signer_test

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"testing"
	"time"

	"github.com/fwctl/fwctl/signer"
	"github.com/fwctl/fwctl/tpm"
	"github.com/fwctl/fwctl/tpm/tpmtest"
)

// The TPM joins the shared conformance suite (TestConformance).
func init() {
	backends = append(backends, backend{"tpm", signer.ECDSAP256, newTPMKey})
}

// newTPMKey creates a key in a private swtpm and returns its URI.
func newTPMKey(t *testing.T, alg string) string {
	t.Helper()
	sim := tpmtest.Start(t)
	ref, err := signer.ParseRef("tpm:" + sim.Addr() + "?handle=0x81000101")
	if err != nil {
		t.Fatal(err)
	}
	s, created, err := signer.GenerateTPM(ref, alg)
	if err != nil || !created {
		t.Fatalf("GenerateTPM: created %v, %v", created, err)
	}
	signer.Close(s)
	return ref.String()
}

func TestParseTPMRef(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    signer.Ref
		wantErr bool
	}{
		{"tpm:tcp://127.0.0.1:2321?handle=0x81000101", signer.Ref{Scheme: "tpm", Device: "tcp://127.0.0.1:2321", Handle: 0x81000101}, false},
		{"tpm:/dev/tpmrm0?handle=0x81000101", signer.Ref{Scheme: "tpm", Device: "/dev/tpmrm0", Handle: 0x81000101}, false},
		{"tpm:?handle=2164261121", signer.Ref{Scheme: "tpm", Device: "/dev/tpmrm0", Handle: 0x81000101}, false},
		{"tpm:/dev/tpmrm0", signer.Ref{}, true},                         // no handle
		{"tpm:/dev/tpmrm0?handle=0x81024650", signer.Ref{}, true},       // the device key
		{"tpm:/dev/tpmrm0?handle=0x01000000", signer.Ref{}, true},       // an NV index
		{"tpm:/dev/tpmrm0?handle=0x81000101&pin=1", signer.Ref{}, true}, // unknown attribute
		{"tpm:/dev/tpmrm0?handle=0x81000101&handle=0x81000102", signer.Ref{}, true},
		{"tpm:localhost:2321?handle=0x81000101", signer.Ref{}, true}, // neither a path nor tcp://
	} {
		got, err := signer.ParseRef(tc.in)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("ParseRef(%q) = %+v, %v; want %+v, error %v", tc.in, got, err, tc.want, tc.wantErr)
		}
		if err == nil {
			if again, err := signer.ParseRef(got.String()); err != nil || again != got {
				t.Errorf("ParseRef(%q.String()) = %+v, %v", tc.in, again, err)
			}
			if got.Abs() != got {
				t.Errorf("Abs changed %+v", got)
			}
		}
	}
}

// TestTPMSigner: generating is idempotent, a missing key is ErrKeyNotFound,
// keys of several roles share the one swtpm connection, and Close frees
// swtpm for the next client.
func TestTPMSigner(t *testing.T) {
	sim := tpmtest.Start(t)
	uri := "tpm:" + sim.Addr() + "?handle=0x81000101"
	other := "tpm:" + sim.Addr() + "?handle=0x81000102"
	ref, _ := signer.ParseRef(uri)

	if _, err := signer.Open(uri, signer.Options{}); !errors.Is(err, signer.ErrKeyNotFound) {
		t.Fatalf("Open before generate = %v, want ErrKeyNotFound", err)
	}
	if _, _, err := signer.GenerateTPM(ref, signer.Ed25519); err == nil {
		t.Fatal("GenerateTPM accepted ed25519")
	}
	s1, created, err := signer.GenerateTPM(ref, signer.ECDSAP256)
	if err != nil || !created {
		t.Fatalf("generate: created %v, %v", created, err)
	}
	// While s1 holds swtpm: generate again (idempotent), open a second key,
	// read the public key.
	s2, created, err := signer.GenerateTPM(ref, "")
	if err != nil || created || !s2.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(s1.Public()) {
		t.Fatalf("generate again: created %v, %v; want the existing key", created, err)
	}
	signer.Close(s2)
	ref2, _ := signer.ParseRef(other)
	s3, _, err := signer.GenerateTPM(ref2, signer.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ref.Public(signer.Options{}); err != nil {
		t.Fatal(err)
	}
	d := sha256.Sum256([]byte("msg"))
	for _, s := range []crypto.Signer{s1, s3} {
		sig, err := s.Sign(rand.Reader, d[:], crypto.SHA256)
		if err != nil {
			t.Fatal(err)
		}
		if err := signer.Verify(s.Public(), []byte("msg"), sig); err != nil {
			t.Fatal(err)
		}
	}
	signer.Close(s1)
	if _, err := s1.Sign(rand.Reader, d[:], crypto.SHA256); err == nil {
		t.Fatal("a closed signer signed")
	}
	signer.Close(s1) // twice is harmless
	signer.Close(s3)

	// All signers closed: swtpm takes another client at once.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	tp, err := tpm.Open(ctx, sim.Addr())
	if err != nil {
		t.Fatalf("swtpm still held after Close: %v", err)
	}
	tp.Close()
}
