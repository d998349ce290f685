package tpm

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"encoding/binary"
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// This file is the TPM 2.0 wire format of the fourteen commands the package
// sends (TCG TPM 2.0 Library, Parts 2 and 3), with password authorisation
// only. It replaces go-tpm's reflection-based marshalling in fwagent, which
// cost about 0.5 MB of the agent's binary (issue 21); wire_test.go holds the
// encodings to go-tpm's byte for byte.

// Handle is a TPM handle: an NV index, a persistent or transient object, or
// a hierarchy.
type Handle uint32

const (
	rhOwner Handle = 0x40000001 // TPM_RH_OWNER
	rhNull  Handle = 0x40000007 // TPM_RH_NULL
	rsPW    Handle = 0x40000009 // TPM_RS_PW, the password session
)

// Command codes (TPM_CC).
const (
	ccEvictControl  = 0x120
	ccNVDefineSpace = 0x12A
	ccCreatePrimary = 0x131
	ccNVIncrement   = 0x134
	ccNVWrite       = 0x137
	ccNVWriteLock   = 0x138
	ccStartup       = 0x144
	ccNVRead        = 0x14E
	ccCreate        = 0x153
	ccLoad          = 0x157
	ccSign          = 0x15D
	ccFlushContext  = 0x165
	ccNVReadPublic  = 0x169
	ccReadPublic    = 0x173
)

// Structure tags (TPM_ST) and algorithm IDs (TPM_ALG).
const (
	stNoSessions = 0x8001
	stSessions   = 0x8002
	stHashCheck  = 0x8024

	algAES    = 0x0006
	algSHA256 = 0x000B
	algSHA384 = 0x000C
	algSHA512 = 0x000D
	algNull   = 0x0010
	algECDSA  = 0x0018
	algECC    = 0x0023
	algCFB    = 0x0043

	eccNistP256 = 0x0003
)

// sender carries one TPM command and returns its response.
type sender interface {
	Send(cmd []byte) ([]byte, error)
}

// senderCloser is an open TPM connection.
type senderCloser interface {
	sender
	Close() error
}

// run sends one command: handles, then one password session per entry of
// auths (authorising the first len(auths) handles; none: no sessions), then
// params. It returns the nOut response handles and the response parameters.
func run(rw sender, cc uint32, handles []Handle, auths [][]byte, params []byte, nOut int) ([]Handle, []byte, error) {
	tag := uint16(stNoSessions)
	if len(auths) > 0 {
		tag = stSessions
	}
	b := make([]byte, 10, 64+len(params))
	binary.BigEndian.PutUint16(b, tag)
	binary.BigEndian.PutUint32(b[6:], cc)
	for _, h := range handles {
		b = binary.BigEndian.AppendUint32(b, uint32(h))
	}
	if len(auths) > 0 {
		var area []byte
		for _, pw := range auths {
			area = binary.BigEndian.AppendUint32(area, uint32(rsPW))
			area = append2B(area, nil) // nonceCaller
			area = append(area, 0)     // sessionAttributes
			area = append2B(area, pw)  // hmac: the password
		}
		b = binary.BigEndian.AppendUint32(b, uint32(len(area)))
		b = append(b, area...)
	}
	b = append(b, params...)
	binary.BigEndian.PutUint32(b[2:], uint32(len(b)))

	rsp, err := rw.Send(b)
	if err != nil {
		return nil, nil, err
	}
	if len(rsp) < 10 {
		return nil, nil, fmt.Errorf("TPM response of %d bytes is shorter than its header", len(rsp))
	}
	rtag := binary.BigEndian.Uint16(rsp)
	if size := binary.BigEndian.Uint32(rsp[2:]); size != uint32(len(rsp)) {
		return nil, nil, fmt.Errorf("TPM response says it is %d bytes long but is %d", size, len(rsp))
	}
	if rc := binary.BigEndian.Uint32(rsp[6:]); rc != 0 {
		return nil, nil, rcError(rc)
	}
	r := &reader{b: rsp[10:]}
	out := make([]Handle, nOut)
	for i := range out {
		out[i] = Handle(r.u32())
	}
	var rparams []byte
	switch rtag {
	case stSessions:
		rparams = r.bytes(int(r.u32()))
	case stNoSessions:
		rparams = r.b
	default:
		return nil, nil, fmt.Errorf("TPM response has tag %#04x", rtag)
	}
	if r.err != nil {
		return nil, nil, fmt.Errorf("TPM response to command %#x: %w", cc, r.err)
	}
	return out, rparams, nil
}

func append2B(b, data []byte) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(data)))
	return append(b, data...)
}

func appendU16(b []byte, v uint16) []byte { return binary.BigEndian.AppendUint16(b, v) }
func appendU32(b []byte, v uint32) []byte { return binary.BigEndian.AppendUint32(b, v) }

var errShort = errors.New("truncated")

// reader takes big-endian TPM structures off a response; after the first
// short read every read returns zero and err is set.
type reader struct {
	b   []byte
	err error
}

func (r *reader) bytes(n int) []byte {
	if r.err != nil || n > len(r.b) {
		r.err = errShort
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) u16() uint16 {
	if b := r.bytes(2); b != nil {
		return binary.BigEndian.Uint16(b)
	}
	return 0
}

func (r *reader) u32() uint32 {
	if b := r.bytes(4); b != nil {
		return binary.BigEndian.Uint32(b)
	}
	return 0
}

// tpm2b reads a TPM2B: a 16-bit size, then that many bytes.
func (r *reader) tpm2b() []byte { return r.bytes(int(r.u16())) }

// done reports a short structure, or bytes left over after it.
func (r *reader) done(what string) error {
	if r.err == nil && len(r.b) != 0 {
		r.err = fmt.Errorf("%d bytes left over", len(r.b))
	}
	if r.err != nil {
		return fmt.Errorf("parse %s: %w", what, r.err)
	}
	return nil
}

// Response codes (TPM_RC) the package tells apart. Format-1 codes are in
// their canonical form, without the handle, session or parameter number.
const (
	rcInitialize rc = 0x100
	rcNVLocked   rc = 0x148
	rcHandle     rc = 0x08B
	rcAuthFail   rc = 0x08E
	rcBadAuth    rc = 0x0A2
	rcYielded    rc = 0x908
	rcTesting    rc = 0x90A
	rcNVRate     rc = 0x920
	rcLockout    rc = 0x921
	rcRetry      rc = 0x922
)

// rc is a canonical TPM response code, the target of errors.Is.
type rc uint32

func (c rc) Error() string { return rcError(c).Error() }

// rcError is a TPM's answer other than TPM_RC_SUCCESS. errors.Is matches it
// against an rc: format-1 codes compare without their handle, session or
// parameter number.
type rcError uint32

func (e rcError) canonical() rc {
	if e&0x80 != 0 {
		return rc(0x80 | e&0x3F)
	}
	return rc(e)
}

// Is implements errors.Is.
func (e rcError) Is(target error) bool {
	c, ok := target.(rc)
	return ok && e.canonical() == c
}

func (e rcError) Error() string {
	c := e.canonical()
	d, ok := rcDescs[c]
	if !ok {
		d = [2]string{fmt.Sprintf("TPM error %#x", uint32(e)), "see TPM 2.0 Part 2, TPM_RC"}
	}
	if e&0x80 != 0 {
		n := uint32(e>>8) & 0xF
		switch {
		case e&0x40 != 0:
			return fmt.Sprintf("%s (parameter %d): %s", d[0], n, d[1])
		case n&0x8 != 0:
			return fmt.Sprintf("%s (session %d): %s", d[0], n&0x7, d[1])
		default:
			return fmt.Sprintf("%s (handle %d): %s", d[0], n, d[1])
		}
	}
	return d[0] + ": " + d[1]
}

// rcDescs names the codes a TPM answers the package's commands with (the
// TCG's names and go-tpm's descriptions).
var rcDescs = map[rc][2]string{
	rcInitialize: {"TPM_RC_INITIALIZE", "TPM not initialized by TPM2_Startup or already initialized"},
	0x101:        {"TPM_RC_FAILURE", "commands not being accepted because of a TPM failure"},
	0x120:        {"TPM_RC_DISABLED", "the command is disabled"},
	0x125:        {"TPM_RC_AUTH_MISSING", "command requires an authorization session for handle and it is not present."},
	0x146:        {"TPM_RC_NV_RANGE", "NV offset+size is out of range."},
	0x147:        {"TPM_RC_NV_SIZE", "Requested allocation size is larger than allowed."},
	rcNVLocked:   {"TPM_RC_NV_LOCKED", "NV access locked."},
	0x149:        {"TPM_RC_NV_AUTHORIZATION", "NV access authorization fails in command actions (this failure does not affect lockout.action)"},
	0x14A:        {"TPM_RC_NV_UNINITIALIZED", "an NV Index is used before being initialized or the state saved by TPM2_Shutdown(STATE) could not be restored"},
	0x14B:        {"TPM_RC_NV_SPACE", "insufficient space for NV allocation"},
	0x14C:        {"TPM_RC_NV_DEFINED", "NV Index or persistent object already defined"},
	0x082:        {"TPM_RC_ATTRIBUTES", "inconsistent attributes"},
	0x084:        {"TPM_RC_VALUE", "value is out of range or is not correct for the context"},
	0x085:        {"TPM_RC_HIERARCHY", "hierarchy is not enabled or is not correct for the use"},
	rcHandle:     {"TPM_RC_HANDLE", "the handle is not correct for the use"},
	rcAuthFail:   {"TPM_RC_AUTH_FAIL", "the authorization HMAC check failed and DA counter incremented"},
	0x092:        {"TPM_RC_SCHEME", "unsupported or incompatible scheme"},
	0x095:        {"TPM_RC_SIZE", "structure is the wrong size"},
	0x09C:        {"TPM_RC_KEY", "key fields are not compatible with the selected use"},
	rcBadAuth:    {"TPM_RC_BAD_AUTH", "authorization failure without DA implications"},
	0x0A6:        {"TPM_RC_CURVE", "curve not supported"},
	0x902:        {"TPM_RC_OBJECT_MEMORY", "out of memory for object contexts"},
	0x903:        {"TPM_RC_SESSION_MEMORY", "out of memory for session contexts"},
	rcYielded:    {"TPM_RC_YIELDED", "the TPM has suspended operation on the command; forward progress was made and the command may be retried"},
	rcTesting:    {"TPM_RC_TESTING", "TPM is performing self-tests"},
	rcNVRate:     {"TPM_RC_NV_RATE", "the TPM is rate-limiting accesses to prevent wearout of NV"},
	rcLockout:    {"TPM_RC_LOCKOUT", "authorizations for objects subject to DA protection are not allowed at this time because the TPM is in DA lockout mode"},
	rcRetry:      {"TPM_RC_RETRY", "the TPM was not able to start the command"},
	0x923:        {"TPM_RC_NV_UNAVAILABLE", "the command may require writing of NV and NV is not current accessible"},
}

// TPMA_NV bits (Part 2, 13.4) and the index types in its TPM_NT field.
const (
	nvPPWrite     = 1 << 0
	nvOwnerWrite  = 1 << 1
	nvAuthWrite   = 1 << 2
	nvPolicyWrite = 1 << 3
	nvTypeShift   = 4
	nvTypeMask    = 0xF << nvTypeShift
	nvWriteLocked = 1 << 11
	nvWriteAll    = 1 << 12
	nvWriteDefine = 1 << 13
	nvOwnerRead   = 1 << 17
	nvAuthRead    = 1 << 18
	nvNoDA        = 1 << 25
	nvWritten     = 1 << 29

	ntOrdinary = 0
	ntCounter  = 1
)

// nvPublicArea is a TPMS_NV_PUBLIC.
type nvPublicArea struct {
	index      Handle
	nameAlg    uint16
	attrs      uint32
	authPolicy []byte
	dataSize   uint16
}

func (p *nvPublicArea) nt() uint32           { return p.attrs & nvTypeMask >> nvTypeShift }
func (p *nvPublicArea) has(bits uint32) bool { return p.attrs&bits == bits }

func (p *nvPublicArea) marshal() []byte {
	b := appendU32(nil, uint32(p.index))
	b = appendU16(b, p.nameAlg)
	b = appendU32(b, p.attrs)
	b = append2B(b, p.authPolicy)
	return appendU16(b, p.dataSize)
}

func parseNVPublic(data []byte) (*nvPublicArea, error) {
	r := &reader{b: data}
	p := &nvPublicArea{index: Handle(r.u32()), nameAlg: r.u16(), attrs: r.u32(), authPolicy: r.tpm2b(), dataSize: r.u16()}
	return p, r.done("TPMS_NV_PUBLIC")
}

// TPMA_OBJECT bits (Part 2, 8.3).
const (
	objFixedTPM            = 1 << 1
	objFixedParent         = 1 << 4
	objSensitiveDataOrigin = 1 << 5
	objUserWithAuth        = 1 << 6
	objNoDA                = 1 << 10
	objRestricted          = 1 << 16
	objDecrypt             = 1 << 17
	objSignEncrypt         = 1 << 18
)

// eccTemplate is a TPMT_PUBLIC of an ECC key with SHA-256 names and no
// policy: sym (TPMT_SYM_DEF_OBJECT), scheme (TPMT_ECC_SCHEME) and kdf
// (TPMT_KDF_SCHEME) already encoded, and the unique point's two zero
// coordinates of uniqueLen bytes each.
func eccTemplate(attrs uint32, sym, scheme []byte, curve uint16, kdf []byte, uniqueLen int) []byte {
	b := appendU16(nil, algECC)
	b = appendU16(b, algSHA256)
	b = appendU32(b, attrs)
	b = append2B(b, nil)
	b = append(b, sym...)
	b = append(b, scheme...)
	b = appendU16(b, curve)
	b = append(b, kdf...)
	b = append2B(b, make([]byte, uniqueLen))
	return append2B(b, make([]byte, uniqueLen))
}

// srkTemplate is go-tpm's ECCSRKTemplate, the TCG's ECC P-256 storage root
// key: AES-128-CFB, restricted decryption, no scheme and no KDF
// (TPM_ALG_NULL), unique point of two 32-byte zeros.
func srkTemplate() []byte {
	null := []byte{0, algNull}
	return eccTemplate(objFixedTPM|objFixedParent|objSensitiveDataOrigin|objUserWithAuth|objNoDA|objRestricted|objDecrypt,
		[]byte{0, algAES, 0, 128, 0, algCFB}, null, eccNistP256, null, 32)
}

// signingKeyTemplate is the device key's and the signing keys' TPMT_PUBLIC:
// ECC P-256, non-exportable, scheme left open (TPM_ALG_NULL) so each Sign
// chooses the hash.
func signingKeyTemplate() []byte {
	null := []byte{0, algNull}
	return eccTemplate(objFixedTPM|objFixedParent|objSensitiveDataOrigin|objUserWithAuth|objSignEncrypt,
		null, null, eccNistP256, null, 0)
}

// objectPublic is the part of a TPMT_PUBLIC the package checks.
type objectPublic struct {
	typ   uint16
	attrs uint32
	curve uint16 // ECC keys only
	x, y  []byte // ECC keys only
}

// parsePublic reads a TPMT_PUBLIC. Only an ECC key is parsed to the end;
// of any other type just the type and attributes are read.
func parsePublic(data []byte) (*objectPublic, error) {
	r := &reader{b: data}
	p := &objectPublic{typ: r.u16()}
	r.u16() // nameAlg
	p.attrs = r.u32()
	r.tpm2b() // authPolicy
	if r.err != nil || p.typ != algECC {
		return p, r.err
	}
	if alg := r.u16(); alg != algNull { // TPMT_SYM_DEF_OBJECT
		r.u16() // keyBits
		r.u16() // mode
	}
	switch scheme := r.u16(); scheme { // TPMT_ECC_SCHEME
	case algNull:
	case 0x001A: // TPM_ALG_ECDAA: hashAlg, count
		r.u16()
		r.u16()
	default:
		r.u16() // hashAlg
	}
	p.curve = r.u16()
	if kdf := r.u16(); kdf != algNull { // TPMT_KDF_SCHEME
		r.u16()
	}
	p.x, p.y = r.tpm2b(), r.tpm2b()
	return p, r.done("TPMT_PUBLIC")
}

// ecdsaP256 returns the public key of an ECC P-256 key.
func (p *objectPublic) ecdsaP256() (*ecdsa.PublicKey, error) {
	if p.typ != algECC || p.curve != eccNistP256 || len(p.x) > 32 || len(p.y) > 32 {
		return nil, errors.New("not an ECDSA P-256 key")
	}
	pt := make([]byte, 65)
	pt[0] = 4
	copy(pt[33-len(p.x):33], p.x)
	copy(pt[65-len(p.y):], p.y)
	return ecdsa.ParseUncompressedPublicKey(elliptic.P256(), pt)
}

// sensitiveCreate is an empty TPM2B_SENSITIVE_CREATE: no password, no data.
var sensitiveCreate = []byte{0, 4, 0, 0, 0, 0}

// createParams are the parameters of TPM2_CreatePrimary and TPM2_Create for
// template: inSensitive, inPublic, an empty outsideInfo and no PCRs.
func createParams(template []byte) []byte {
	b := append([]byte(nil), sensitiveCreate...)
	b = append2B(b, template)
	b = append2B(b, nil)
	return appendU32(b, 0) // TPML_PCR_SELECTION count
}

// device is a kernel TPM character device (/dev/tpmrm0): one write per
// command, one read per response.
type device struct{ f *os.File }

// maxResponse is the largest response read from a device, as go-tpm's.
const maxResponse = 4096

func openDevice(path string) (*device, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if fi.Mode()&os.ModeDevice == 0 {
		return nil, fmt.Errorf("TPM file is not a device: %s (%s)", fi.Mode(), path)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	return &device{f: f}, nil
}

// Send implements sender: it writes the command, waits until the response
// can be read and reads it.
func (d *device) Send(cmd []byte) ([]byte, error) {
	if _, err := d.f.Write(cmd); err != nil {
		return nil, err
	}
	fds := []unix.PollFd{{Fd: int32(d.f.Fd()), Events: unix.POLLIN}}
	for {
		_, err := unix.Poll(fds, -1)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, err
		}
		break
	}
	if fds[0].Revents != unix.POLLIN {
		return nil, fmt.Errorf("unexpected poll Revents 0x%x", fds[0].Revents)
	}
	rsp := make([]byte, maxResponse)
	n, err := d.f.Read(rsp)
	if err != nil {
		return nil, err
	}
	return rsp[:n], nil
}

// Close implements senderCloser.
func (d *device) Close() error { return d.f.Close() }
