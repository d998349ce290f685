package tpm

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// The package encodes its commands itself (wire.go). These tests hold every
// command it sends, byte for byte, to what go-tpm sends for the same
// command, and its parsing to go-tpm's encoding; the tests against swtpm
// (tpm_test.go) then prove the whole exchange.

// goOwner is the owner authorisation of t for go-tpm commands in the tests.
func goOwner(t *TPM) tpm2.AuthHandle {
	return tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(t.ownerAuth)}
}

// recorder keeps the last command sent and answers it with TPM_RC_FAILURE.
type recorder struct{ cmd []byte }

func (r *recorder) Send(cmd []byte) ([]byte, error) {
	r.cmd = append([]byte(nil), cmd...)
	return []byte{0x80, 0x01, 0, 0, 0, 10, 0, 0, 0x01, 0x01}, nil
}

var _ transport.TPM = (*recorder)(nil)

func TestCommandsMatchGoTPM(t *testing.T) {
	const srk, loaded tpm2.TPMHandle = 0x80000000, 0x80000001
	pw := []byte("owner password")
	tp := &TPM{ownerAuth: pw}
	digest := bytes.Repeat([]byte{7}, 48)
	private, public := []byte("opaque private blob"), tpm2.New2B(goSigningKeyTemplate())
	name := tpm2.TPM2BName{Buffer: []byte("\x00\x0bname")}
	pwAuth := func(h tpm2.TPMHandle) tpm2.AuthHandle {
		return tpm2.AuthHandle{Handle: h, Name: name, Auth: tpm2.PasswordAuth(nil)}
	}
	nvPub := tpm2.New2B(goCounterTemplate())
	cases := []struct {
		name  string
		gotpm func(transport.TPM) error
		ours  func(sender) error
	}{
		{"Startup", func(rw transport.TPM) error {
			_, err := tpm2.Startup{StartupType: tpm2.TPMSUClear}.Execute(rw)
			return err
		},
			func(rw sender) error { _, _, err := run(rw, ccStartup, nil, nil, []byte{0, 0}, 0); return err }},
		{"NV_ReadPublic", func(rw transport.TPM) error {
			_, err := tpm2.NVReadPublic{NVIndex: tpm2.TPMHandle(0x01004651)}.Execute(rw)
			return err
		},
			func(rw sender) error { _, _, err := nvPublic(rw, CounterIndex); return err }},
		{"NV_DefineSpace", func(rw transport.TPM) error {
			_, err := tpm2.NVDefineSpace{AuthHandle: goOwner(tp), PublicInfo: nvPub}.Execute(rw)
			return err
		}, func(rw sender) error { return tp.define(rw, counterTemplate()) }},
		{"NV_Write", func(rw transport.TPM) error {
			_, err := tpm2.NVWrite{AuthHandle: goOwner(tp), NVIndex: tpm2.NamedHandle{Handle: 0x01004650, Name: name},
				Data: tpm2.TPM2BMaxNVBuffer{Buffer: digest[:40]}}.Execute(rw)
			return err
		}, func(rw sender) error {
			_, _, err := run(rw, ccNVWrite, []Handle{rhOwner, AnchorIndex}, [][]byte{pw}, appendU16(append2B(nil, digest[:40]), 0), 0)
			return err
		}},
		{"NV_WriteLock", func(rw transport.TPM) error {
			_, err := tpm2.NVWriteLock{AuthHandle: goOwner(tp), NVIndex: tpm2.NamedHandle{Handle: 0x01004650, Name: name}}.Execute(rw)
			return err
		}, func(rw sender) error {
			_, _, err := run(rw, ccNVWriteLock, []Handle{rhOwner, AnchorIndex}, [][]byte{pw}, nil, 0)
			return err
		}},
		{"NV_Increment", func(rw transport.TPM) error {
			_, err := tpm2.NVIncrement{AuthHandle: pwAuth(0x01004651), NVIndex: tpm2.NamedHandle{Handle: 0x01004651, Name: name}}.Execute(rw)
			return err
		}, counterIncrement},
		{"NV_Read", func(rw transport.TPM) error {
			_, err := tpm2.NVRead{AuthHandle: pwAuth(0x01004650), NVIndex: tpm2.NamedHandle{Handle: 0x01004650, Name: name}, Size: anchorSize}.Execute(rw)
			return err
		}, func(rw sender) error { _, err := nvRead(rw, AnchorIndex, anchorSize); return err }},
		{"ReadPublic", func(rw transport.TPM) error {
			_, err := tpm2.ReadPublic{ObjectHandle: tpm2.TPMHandle(0x81024650)}.Execute(rw)
			return err
		},
			func(rw sender) error { _, _, err := readKey(rw, DeviceKeyHandle); return err }},
		{"CreatePrimary", func(rw transport.TPM) error {
			_, err := tpm2.CreatePrimary{PrimaryHandle: goOwner(tp), InPublic: tpm2.New2B(tpm2.ECCSRKTemplate)}.Execute(rw)
			return err
		}, func(rw sender) error {
			_, _, err := run(rw, ccCreatePrimary, []Handle{rhOwner}, [][]byte{pw}, createParams(srkTemplate()), 1)
			return err
		}},
		{"Create", func(rw transport.TPM) error {
			_, err := tpm2.Create{ParentHandle: pwAuth(srk), InPublic: tpm2.New2B(goSigningKeyTemplate())}.Execute(rw)
			return err
		}, func(rw sender) error {
			_, _, err := run(rw, ccCreate, []Handle{Handle(srk)}, [][]byte{nil}, createParams(signingKeyTemplate()), 0)
			return err
		}},
		{"Load", func(rw transport.TPM) error {
			_, err := tpm2.Load{ParentHandle: pwAuth(srk), InPrivate: tpm2.TPM2BPrivate{Buffer: private}, InPublic: public}.Execute(rw)
			return err
		}, func(rw sender) error {
			_, _, err := run(rw, ccLoad, []Handle{Handle(srk)}, [][]byte{nil}, append2B(append2B(nil, private), public.Bytes()), 1)
			return err
		}},
		{"EvictControl", func(rw transport.TPM) error {
			_, err := tpm2.EvictControl{Auth: goOwner(tp), ObjectHandle: tpm2.NamedHandle{Handle: loaded, Name: name}, PersistentHandle: 0x81024650}.Execute(rw)
			return err
		}, func(rw sender) error {
			_, _, err := run(rw, ccEvictControl, []Handle{rhOwner, Handle(loaded)}, [][]byte{pw}, appendU32(nil, uint32(DeviceKeyHandle)), 0)
			return err
		}},
		{"FlushContext", func(rw transport.TPM) error { _, err := tpm2.FlushContext{FlushHandle: loaded}.Execute(rw); return err },
			func(rw sender) error { flush(rw, Handle(loaded)); return tpm2.TPMRCFailure }},
		{"Sign", func(rw transport.TPM) error {
			_, err := tpm2.Sign{
				KeyHandle: pwAuth(0x81024650),
				Digest:    tpm2.TPM2BDigest{Buffer: digest},
				InScheme: tpm2.TPMTSigScheme{Scheme: tpm2.TPMAlgECDSA,
					Details: tpm2.NewTPMUSigScheme(tpm2.TPMAlgECDSA, &tpm2.TPMSSchemeHash{HashAlg: tpm2.TPMAlgSHA384})},
				Validation: tpm2.TPMTTKHashCheck{Tag: tpm2.TPMSTHashCheck, Hierarchy: tpm2.TPMRHNull},
			}.Execute(rw)
			return err
		}, func(rw sender) error {
			_, err := tp.signAt(DeviceKeyHandle, name.Buffer, "key", digest, crypto.SHA384)
			return err
		}},
	}
	for _, c := range cases {
		var want, got recorder
		if err := c.gotpm(&want); !errors.Is(err, tpm2.TPMRCFailure) {
			t.Fatalf("%s: go-tpm: %v", c.name, err)
		}
		tp.rw = retrying{nopCloser{&got}} // for signAt
		if err := c.ours(&got); !errors.Is(err, rc(0x101)) && c.name != "FlushContext" {
			t.Errorf("%s: %v, want TPM_RC_FAILURE", c.name, err)
		}
		if !bytes.Equal(got.cmd, want.cmd) {
			t.Errorf("%s:\n ours   %x\n go-tpm %x", c.name, got.cmd, want.cmd)
		}
	}
}

type nopCloser struct{ sender }

func (nopCloser) Close() error { return nil }

// The templates the package used with go-tpm, kept to hold the encodings.
func goSigningKeyTemplate() tpm2.TPMTPublic {
	return tpm2.TPMTPublic{
		Type:    tpm2.TPMAlgECC,
		NameAlg: tpm2.TPMAlgSHA256,
		ObjectAttributes: tpm2.TPMAObject{
			FixedTPM: true, FixedParent: true, SensitiveDataOrigin: true,
			UserWithAuth: true, SignEncrypt: true,
		},
		Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, &tpm2.TPMSECCParms{
			Symmetric: tpm2.TPMTSymDefObject{Algorithm: tpm2.TPMAlgNull},
			Scheme:    tpm2.TPMTECCScheme{Scheme: tpm2.TPMAlgNull},
			CurveID:   tpm2.TPMECCNistP256,
			KDF:       tpm2.TPMTKDFScheme{Scheme: tpm2.TPMAlgNull},
		}),
		Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{}),
	}
}

func goAnchorTemplate() tpm2.TPMSNVPublic {
	return tpm2.TPMSNVPublic{
		NVIndex: tpm2.TPMHandle(AnchorIndex),
		NameAlg: tpm2.TPMAlgSHA256,
		Attributes: tpm2.TPMANV{NT: tpm2.TPMNTOrdinary, OwnerWrite: true, OwnerRead: true, AuthRead: true,
			WriteDefine: true, WriteAll: true, NoDA: true},
		DataSize: anchorSize,
	}
}

func goCounterTemplate() tpm2.TPMSNVPublic {
	return tpm2.TPMSNVPublic{
		NVIndex:    tpm2.TPMHandle(CounterIndex),
		NameAlg:    tpm2.TPMAlgSHA256,
		Attributes: tpm2.TPMANV{NT: tpm2.TPMNTCounter, AuthWrite: true, OwnerRead: true, AuthRead: true, NoDA: true},
		DataSize:   8,
	}
}

func TestTemplatesMatchGoTPM(t *testing.T) {
	for _, c := range []struct {
		name       string
		ours, want []byte
	}{
		{"anchor", ptr(anchorTemplate()).marshal(), tpm2.Marshal(goAnchorTemplate())},
		{"counter", ptr(counterTemplate()).marshal(), tpm2.Marshal(goCounterTemplate())},
		{"SRK", srkTemplate(), tpm2.Marshal(tpm2.ECCSRKTemplate)},
		{"signing key", signingKeyTemplate(), tpm2.Marshal(goSigningKeyTemplate())},
	} {
		if !bytes.Equal(c.ours, c.want) {
			t.Errorf("%s template:\n ours   %x\n go-tpm %x", c.name, c.ours, c.want)
		}
	}
}

func ptr[T any](v T) *T { return &v }

// TestParseMatchesGoTPM parses what go-tpm encodes: NV public areas with
// every attribute the package checks, and the public area of an ECC key.
func TestParseMatchesGoTPM(t *testing.T) {
	g := goCounterTemplate()
	g.Attributes.Written, g.Attributes.PolicyWrite, g.Attributes.WriteLocked = true, true, true
	p, err := parseNVPublic(tpm2.Marshal(g))
	if err != nil {
		t.Fatal(err)
	}
	if p.index != CounterIndex || p.nt() != ntCounter || !p.has(nvWritten|nvWriteLocked|nvPolicyWrite|nvAuthWrite|nvAuthRead) ||
		p.has(nvPPWrite) || p.dataSize != 8 {
		t.Errorf("parsed %+v", p)
	}
	if _, err := parseNVPublic(tpm2.Marshal(g)[:5]); err == nil {
		t.Error("a truncated TPMS_NV_PUBLIC parsed")
	}

	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := k.PublicKey.Bytes()
	pub := goSigningKeyTemplate()
	pub.ObjectAttributes.Restricted = true
	pub.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{
		X: tpm2.TPM2BECCParameter{Buffer: raw[1:33]}, Y: tpm2.TPM2BECCParameter{Buffer: raw[33:]}})
	op, err := parsePublic(tpm2.Marshal(pub))
	if err != nil {
		t.Fatal(err)
	}
	if op.attrs&keyAttrs != keyAttrs || op.attrs&objRestricted == 0 {
		t.Errorf("attributes %#x", op.attrs)
	}
	ec, err := op.ecdsaP256()
	if err != nil || !ec.Equal(&k.PublicKey) {
		t.Errorf("public key %v, %v; want the generated one", ec, err)
	}
	// The SRK's template with the AES symmetric definition parses too.
	if op, err := parsePublic(tpm2.Marshal(tpm2.ECCSRKTemplate)); err != nil || op.curve != eccNistP256 {
		t.Errorf("SRK template: %+v, %v", op, err)
	}
	// An RSA key is told apart by its type.
	if op, err := parsePublic(tpm2.Marshal(tpm2.RSASRKTemplate)); err != nil || op.typ == algECC {
		t.Errorf("RSA template: %+v, %v", op, err)
	} else if _, err := op.ecdsaP256(); err == nil {
		t.Error("an RSA key passed as ECDSA P-256")
	}
}

// TestResponseCodes holds errors.Is and the messages to go-tpm's for the
// codes the package names, bare and with a handle, session or parameter.
func TestResponseCodes(t *testing.T) {
	for c := range rcDescs {
		variants := []uint32{uint32(c)}
		if c&0x80 != 0 {
			variants = append(variants, uint32(c)|0x100, uint32(c)|0x900, uint32(c)|0x340, uint32(c)|0xF40)
		}
		for _, v := range variants {
			e := rcError(v)
			if !errors.Is(e, c) {
				t.Errorf("%#x is not %#x", v, uint32(c))
			}
			if want := tpm2.TPMRC(v).Error(); e.Error() != want {
				t.Errorf("%#x: %q, go-tpm says %q", v, e.Error(), want)
			}
			if errors.Is(e, rc(0x0ff)) {
				t.Errorf("%#x matches an unrelated code", v)
			}
		}
	}
}

// TestRunResponses checks response framing: handles, the parameter area
// with and without sessions, and malformed responses.
func TestRunResponses(t *testing.T) {
	rsp := func(tag uint16, body ...byte) []byte {
		b := binary.BigEndian.AppendUint16(nil, tag)
		b = binary.BigEndian.AppendUint32(b, uint32(10+len(body)))
		return append(binary.BigEndian.AppendUint32(b, 0), body...)
	}
	for _, c := range []struct {
		name    string
		rsp     []byte
		handles int
		want    []byte
		ok      bool
	}{
		{"no sessions", rsp(stNoSessions, 1, 2, 3), 0, []byte{1, 2, 3}, true},
		{"handle and sessions", rsp(stSessions, 0x80, 0, 0, 1, 0, 0, 0, 2, 9, 9, 0xAA), 1, []byte{9, 9}, true},
		{"parameter size past the end", rsp(stSessions, 0, 0, 0, 9, 1), 0, nil, false},
		{"short handle", rsp(stNoSessions, 0x80, 0), 1, nil, false},
		{"bad tag", rsp(0x1234), 0, nil, false},
		{"size mismatch", append(rsp(stNoSessions), 0), 0, nil, false},
		{"short header", []byte{0x80, 1, 0}, 0, nil, false},
	} {
		out, params, err := run(fixed(c.rsp), ccStartup, nil, nil, nil, c.handles)
		if (err == nil) != c.ok || c.ok && (!bytes.Equal(params, c.want) || len(out) != c.handles) {
			t.Errorf("%s: %v, %x, %v", c.name, out, params, err)
		}
	}
}

type fixed []byte

func (f fixed) Send([]byte) ([]byte, error) { return f, nil }
