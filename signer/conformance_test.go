package signer_test

import (
	"bytes"
	"crypto"
	"path/filepath"
	"testing"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/fwctl/fwctl/signer"
	"github.com/fwctl/fwctl/signer/softhsmtest"
)

// backend opens a fresh key of one algorithm in one signer backend and
// returns its URI.
type backend struct {
	name string
	alg  string
	new  func(t *testing.T, alg string) string
}

var backends = []backend{
	{"file", signer.Ed25519, newFileKey},
	{"file", signer.ECDSAP256, newFileKey},
	{"pkcs11", signer.Ed25519, newTokenKey},
	{"pkcs11", signer.ECDSAP256, newTokenKey},
}

func newFileKey(t *testing.T, alg string) string {
	k, err := signer.Generate(alg)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "k.json")
	if _, err := signer.Save(p, "targets", k, []byte("pw")); err != nil {
		t.Fatal(err)
	}
	return "file:" + p
}

func newTokenKey(t *testing.T, alg string) string {
	tok := softhsmtest.Token(t, "conf-"+alg)
	ref, err := signer.ParseRef(tok + ";object=key-" + alg)
	if err != nil {
		t.Fatal(err)
	}
	s, err := signer.GeneratePKCS11(ref, alg, signer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	signer.Close(s)
	return ref.String()
}

var opts = signer.Options{Passphrase: func() ([]byte, error) { return []byte("pw"), nil }}

// TestConformance is the shared suite every signer backend passes: it signs
// TUF metadata through the go-tuf adapter and go-tuf verifies it.
func TestConformance(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name+"/"+b.alg, func(t *testing.T) {
			uri := b.new(t, b.alg)
			s, err := signer.Open(uri, opts)
			if err != nil {
				t.Fatal(err)
			}
			defer signer.Close(s)
			if got := signer.Algorithm(s.Public()); got != b.alg {
				t.Fatalf("algorithm %s, want %s", got, b.alg)
			}
			ref, _ := signer.ParseRef(uri)
			pub, err := ref.Public(opts)
			if err != nil {
				t.Fatal(err)
			}
			if !pub.(interface{ Equal(crypto.PublicKey) bool }).Equal(s.Public()) {
				t.Fatal("Ref.Public differs from the signer's public key")
			}
			key, id, err := signer.TUFKey(s.Public())
			if err != nil {
				t.Fatal(err)
			}
			root := metadata.Root()
			root.Signed.AddKey(key, metadata.TARGETS)
			for i := range 3 { // repeated signatures through one session
				md := metadata.Targets()
				md.Signed.Version = int64(i + 1)
				sig, err := md.Sign(signer.TUF(s))
				if err != nil {
					t.Fatal(err)
				}
				if sig.KeyID != id {
					t.Fatalf("signature key ID %s, want %s", sig.KeyID, id)
				}
				if err := root.VerifyDelegate(metadata.TARGETS, md); err != nil {
					t.Fatalf("go-tuf does not verify the signature: %v", err)
				}
				md.Signed.Version++
				if err := root.VerifyDelegate(metadata.TARGETS, md); err == nil {
					t.Fatal("signature verifies over changed metadata")
				}
			}
			msg := []byte("canonical bytes")
			sig, err := signer.TUF(s).SignMessage(bytesReader(msg))
			if err != nil {
				t.Fatal(err)
			}
			if err := signer.Verify(s.Public(), msg, sig); err != nil {
				t.Fatal(err)
			}
			if err := signer.Verify(s.Public(), []byte("other bytes"), sig); err == nil {
				t.Fatal("Verify accepted a signature over other bytes")
			}
		})
	}
}

func TestParseRef(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    signer.Ref
		wantErr bool
	}{
		{"file:/k/root.json", signer.Ref{Scheme: "file", Path: "/k/root.json"}, false},
		{"keys/root.json", signer.Ref{Scheme: "file", Path: "keys/root.json"}, false},
		{"pkcs11:token=rel;object=root-1", signer.Ref{Scheme: "pkcs11", Token: "rel", Object: "root-1"}, false},
		{"pkcs11:token=my%20tok;object=a;module-path=/m.so", signer.Ref{Scheme: "pkcs11", Token: "my tok", Object: "a", Module: "/m.so"}, false},
		{"pkcs11:token=t;object=a?module-path=/m.so", signer.Ref{Scheme: "pkcs11", Token: "t", Object: "a", Module: "/m.so"}, false},
		{"pkcs11:token=t;object=a?pin-value=1234", signer.Ref{}, true},
		{"pkcs11:token=t", signer.Ref{}, true},
		{"pkcs11:token=t;object=a;color=red", signer.Ref{}, true},
		{"file:", signer.Ref{}, true},
	} {
		got, err := signer.ParseRef(tc.in)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("ParseRef(%q) = %+v, %v; want %+v, error %v", tc.in, got, err, tc.want, tc.wantErr)
		}
		if err == nil {
			again, err := signer.ParseRef(got.String())
			if err != nil || again != got {
				t.Errorf("ParseRef(%q.String()) = %+v, %v", tc.in, again, err)
			}
		}
	}
}

func bytesReader(b []byte) *bytes.Reader { return bytes.NewReader(b) }
