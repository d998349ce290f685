package tpm

import (
	"errors"
	"testing"
)

// A TPM's responses are bytes from outside the agent's process (a device
// node, or swtpm over TCP): the parsers of wire.go must turn any of them
// into a value or an error, never a panic or an allocation beyond the input.

// fixedSender answers every command with the same bytes.
type fixedSender []byte

func (f fixedSender) Send([]byte) ([]byte, error) { return f, nil }

// FuzzParseResponse runs the response framing of run (header, size,
// response code, handles, the parameter area of both tags) on any bytes.
func FuzzParseResponse(f *testing.F) {
	f.Add([]byte{0x80, 0x01, 0, 0, 0, 10, 0, 0, 0, 0}, uint8(0))
	f.Add([]byte{0x80, 0x02, 0, 0, 0, 20, 0, 0, 0, 0, 0x81, 0, 0, 1, 0, 0, 0, 2, 0xAA, 0xBB}, uint8(1))
	f.Add([]byte{0x80, 0x01, 0, 0, 0, 10, 0, 0, 0x01, 0x48}, uint8(0))
	f.Fuzz(func(t *testing.T, rsp []byte, nOut uint8) {
		handles, params, err := run(fixedSender(rsp), ccSign, nil, nil, nil, int(nOut%4))
		if err != nil {
			var code rcError
			if errors.As(err, &code) && code == 0 {
				t.Fatalf("response code 0 reported as an error: %v", err)
			}
			_ = err.Error()
			return
		}
		if len(handles) != int(nOut%4) {
			t.Fatalf("%d handles, want %d", len(handles), nOut%4)
		}
		if len(params) > len(rsp) {
			t.Fatalf("%d parameter bytes from a %d-byte response", len(params), len(rsp))
		}
	})
}

// FuzzParseStructures runs the structure parsers on any bytes:
// TPMS_NV_PUBLIC, TPMT_PUBLIC and the P-256 key it may carry.
func FuzzParseStructures(f *testing.F) {
	f.Add(signingKeyTemplate())
	f.Add(srkTemplate())
	f.Add((&nvPublicArea{index: 0x01500000, nameAlg: algSHA256, dataSize: 32}).marshal())
	f.Fuzz(func(t *testing.T, data []byte) {
		if p, err := parseNVPublic(data); err == nil && p == nil {
			t.Fatal("parseNVPublic: no value and no error")
		}
		p, err := parsePublic(data)
		if err != nil {
			return
		}
		if k, err := p.ecdsaP256(); err == nil && k == nil {
			t.Fatal("ecdsaP256: no key and no error")
		}
	})
}
