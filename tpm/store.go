package tpm

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
)

// The trust-store vocabulary lives here, in the leaf, so that tpm imports
// nothing of ours; package agent/trust re-exports it (its Store interface
// is what *TPM implements, checked there) and its file backend uses it too.
var (
	// ErrNotProvisioned means the device has no pinned root yet.
	ErrNotProvisioned = errors.New("device not provisioned: run 'fwagent provision --root root.json' first")
	// ErrAlreadyPinned means a different root digest is already pinned.
	ErrAlreadyPinned = errors.New("a different root is already pinned on this device")
)

// Provisioned reports what provisioning created and what already existed.
type Provisioned struct {
	RootPinned     bool   `json:"root_pinned"`     // pinned by this call
	RootWasPinned  bool   `json:"root_was_pinned"` // already pinned with the same digest
	CounterCreated bool   `json:"counter_created"`
	Details        string `json:"details,omitempty"`
}

// ErrStepTooLarge means RaiseCounter was asked to raise the counter by more
// than the configured maximum step (see WithMaxStep).
var ErrStepTooLarge = errors.New("counter raise larger than the configured maximum step")

const anchorSize = 32 + 8 // root digest, counter base

// Report is what ProvisionDevice created and what already existed.
type Report struct {
	Provisioned
	KeyCreated bool   `json:"key_created"`
	KeyID      string `json:"key_id"` // hex SHA-256 of the PKIX public key
}

// Provision implements trust.Store: it pins rootDigest, creates the counter
// and the device identity key. See ProvisionDevice.
func (t *TPM) Provision(ctx context.Context, rootDigest [32]byte) (Provisioned, error) {
	r, err := t.ProvisionDevice(ctx, rootDigest)
	return r.Provisioned, err
}

// ProvisionDevice creates whatever is missing of: the NV counter
// (incremented once so it can be read), the anchor index holding rootDigest
// and the counter's value at that moment as the base (then write-locked), and
// the persistent device key. Every step checks what exists first, so running
// it again, also after an interruption, is safe; a different root digest is
// refused with ErrAlreadyPinned.
func (t *TPM) ProvisionDevice(ctx context.Context, rootDigest [32]byte) (Report, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var r Report
	rw, done, err := t.conn(ctx)
	if err != nil {
		return r, err
	}
	defer done()
	if r.CounterCreated, err = t.ensureCounter(rw); err != nil {
		return r, err
	}
	pinned, was, err := t.ensureAnchor(ctx, rw, rootDigest)
	if err != nil {
		return r, err
	}
	r.RootPinned, r.RootWasPinned = pinned, was
	key, created, err := t.ensureDeviceKey(ctx, rw)
	if err != nil {
		return r, err
	}
	r.KeyCreated, r.KeyID = created, key.KeyID()
	r.Details = fmt.Sprintf("root %s in NV %#08x (%s); counter in NV %#08x (%s); device key %s at %#08x (%s)",
		hex.EncodeToString(rootDigest[:8]), uint32(AnchorIndex), newOrKept(pinned),
		uint32(CounterIndex), newOrKept(r.CounterCreated),
		r.KeyID, uint32(DeviceKeyHandle), newOrKept(created))
	return r, nil
}

func newOrKept(created bool) string {
	if created {
		return "created"
	}
	return "already there"
}

// PinnedRoot implements trust.Store. An anchor that was written but not yet
// locked (provisioning interrupted) counts as not provisioned.
func (t *TPM) PinnedRoot(ctx context.Context) ([32]byte, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	rw, done, err := t.conn(ctx)
	if err != nil {
		return [32]byte{}, err
	}
	defer done()
	digest, _, err := readAnchor(rw)
	return digest, err
}

// Counter implements trust.Store: the TPM counter minus the base recorded at
// provisioning. It returns ErrNotProvisioned before provisioning.
func (t *TPM) Counter(ctx context.Context) (uint64, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	rw, done, err := t.conn(ctx)
	if err != nil {
		return 0, err
	}
	defer done()
	v, _, err := readCounter(rw)
	return v, err
}

// RaiseCounter implements trust.Store by incrementing the TPM NV counter
// n-current times. Each increment is atomic in the TPM, so an interruption
// leaves the counter between the old value and n, never below the old value,
// and calling RaiseCounter(n) again finishes the job. A raise larger than the
// maximum step (DefaultMaxStep, see WithMaxStep) is refused with
// ErrStepTooLarge before anything is written, to protect the TPM's NV write
// budget from a mistaken or hostile counter value.
//
// Only one process may raise the counter at a time (the agent holds a lock):
// two concurrent raisers could overshoot n.
func (t *TPM) RaiseCounter(ctx context.Context, n uint64) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	rw, done, err := t.conn(ctx)
	if err != nil {
		return err
	}
	defer done()
	cur, _, err := readCounter(rw)
	if err != nil && ctx.Err() != nil {
		// Cancelled while the read waited for swtpm: say so, not "i/o timeout".
		return fmt.Errorf("raise counter to %d: interrupted before any increment (safe; raise again): %w", n, ctx.Err())
	}
	if err != nil || n <= cur {
		return err
	}
	if n-cur > t.maxStep {
		return fmt.Errorf("raise counter from %d to %d: %w (%d); check the release's counter, or raise in steps / set WithMaxStep if it is intended", cur, n, ErrStepTooLarge, t.maxStep)
	}
	for i := cur; i < n; i++ {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("raise counter to %d: interrupted at %d (safe; raise again): %w", n, i, err)
		}
		if err := counterIncrement(rw); err != nil {
			if ctx.Err() != nil {
				err = ctx.Err()
			}
			return fmt.Errorf("raise counter to %d: increment at %d (safe; raise again): %w", n, i, err)
		}
	}
	got, _, err := readCounter(rw)
	if err != nil {
		return err
	}
	if got != n {
		return fmt.Errorf("raise counter to %d: TPM counter now reads %d; another process raised it concurrently", n, got)
	}
	return nil
}

// ensureCounter defines and initialises the NV counter if needed.
func (t *TPM) ensureCounter(rw sender) (created bool, err error) {
	pub, _, err := nvPublic(rw, CounterIndex)
	if errors.Is(err, errNoIndex) {
		if err := t.define(rw, counterTemplate()); err != nil {
			return false, err
		}
		created = true
		if pub, _, err = nvPublic(rw, CounterIndex); err != nil {
			return created, err
		}
	} else if err != nil {
		return false, err
	}
	if err := checkCounter(pub); err != nil {
		return created, err
	}
	if !pub.has(nvWritten) {
		if err := counterIncrement(rw); err != nil {
			return created, fmt.Errorf("initialise NV counter %#08x: %w", uint32(CounterIndex), err)
		}
	}
	return created, nil
}

// ensureAnchor writes digest and the counter base into the anchor index and
// write-locks it, resuming an interrupted earlier run.
func (t *TPM) ensureAnchor(ctx context.Context, rw sender, digest [32]byte) (pinned, wasPinned bool, err error) {
	pub, _, err := nvPublic(rw, AnchorIndex)
	if errors.Is(err, errNoIndex) {
		if err := t.define(rw, anchorTemplate()); err != nil {
			return false, false, err
		}
		pub, _, err = nvPublic(rw, AnchorIndex)
	}
	if err != nil {
		return false, false, err
	}
	if err := checkAnchor(pub); err != nil {
		return false, false, err
	}
	if pub.has(nvWritten) {
		data, err := nvRead(rw, AnchorIndex, anchorSize)
		if err != nil {
			return false, false, err
		}
		if !bytes.Equal(data[:32], digest[:]) {
			return false, false, fmt.Errorf("pin root %x: %w (pinned: %x); this device belongs to another repository", digest, ErrAlreadyPinned, data[:32])
		}
		wasPinned = true
	} else {
		c, err := counterRaw(rw)
		if err != nil {
			return false, false, err
		}
		data := binary.BigEndian.AppendUint64(append([]byte(nil), digest[:]...), c)
		if err := ctx.Err(); err != nil {
			return false, false, err
		}
		// TPM2_NV_Write(owner, index; data, offset 0)
		if _, _, err := run(rw, ccNVWrite, []Handle{rhOwner, AnchorIndex}, [][]byte{t.owner()}, appendU16(append2B(nil, data), 0), 0); err != nil {
			return false, false, fmt.Errorf("write root pin to NV %#08x: %w", uint32(AnchorIndex), ownerHint(err))
		}
		pinned = true
	}
	if !pub.has(nvWriteLocked) {
		// The write changed the index's Name (HARDWARE.md); password
		// authorisation does not send it, so there is nothing to re-read.
		if _, _, err := run(rw, ccNVWriteLock, []Handle{rhOwner, AnchorIndex}, [][]byte{t.owner()}, nil, 0); err != nil {
			return pinned, wasPinned, fmt.Errorf("write-lock root pin in NV %#08x: %w", uint32(AnchorIndex), ownerHint(err))
		}
	}
	return pinned, wasPinned, nil
}

// counterIncrement increments the NV counter once (TPM2_NV_Increment),
// authorised with the counter's own, empty, password, so the agent needs no
// owner password to raise it.
func counterIncrement(rw sender) error {
	_, _, err := run(rw, ccNVIncrement, []Handle{CounterIndex, CounterIndex}, [][]byte{nil}, nil, 0)
	return err
}

// define defines an NV index with an empty index password
// (TPM2_NV_DefineSpace).
func (t *TPM) define(rw sender, pub nvPublicArea) error {
	params := append2B(append2B(nil, nil), pub.marshal())
	if _, _, err := run(rw, ccNVDefineSpace, []Handle{rhOwner}, [][]byte{t.owner()}, params, 0); err != nil {
		return fmt.Errorf("define NV index %#08x: %w", uint32(pub.index), ownerHint(err))
	}
	return nil
}

// The anchor is written only with owner authorisation, at provisioning, and
// then write-locked for good. The counter is incremented with its own, empty,
// password: the agent raises it without the owner password, which on a real
// device stays off the device (docs/tpm.md), so that root on the device
// cannot delete and redefine the indexes. Anyone who can reach the TPM can
// thus raise the counter (a denial of service, as root has anyway) but no
// one can lower it. Both are read with their empty index password: their
// contents are not secret. NoDA keeps them out of dictionary-attack lockout.
func anchorTemplate() nvPublicArea {
	return nvPublicArea{
		index:    AnchorIndex,
		nameAlg:  algSHA256,
		attrs:    ntOrdinary<<nvTypeShift | nvOwnerWrite | nvOwnerRead | nvAuthRead | nvWriteDefine | nvWriteAll | nvNoDA,
		dataSize: anchorSize,
	}
}

func counterTemplate() nvPublicArea {
	return nvPublicArea{
		index:    CounterIndex,
		nameAlg:  algSHA256,
		attrs:    ntCounter<<nvTypeShift | nvAuthWrite | nvOwnerRead | nvAuthRead | nvNoDA,
		dataSize: 8,
	}
}

// checkAnchor refuses an index at AnchorIndex that someone else defined, or
// that could be rewritten.
func checkAnchor(p *nvPublicArea) error {
	if p.nt() != ntOrdinary || p.dataSize != anchorSize || !p.has(nvWriteDefine) || !p.has(nvAuthRead) ||
		p.attrs&(nvAuthWrite|nvPolicyWrite|nvPPWrite) != 0 {
		return fmt.Errorf("NV index %#08x exists with unexpected attributes (size %d): it was not created by fwctl; undefine it (tpm2_nvundefine %#08x) if it is not in use", uint32(AnchorIndex), p.dataSize, uint32(AnchorIndex))
	}
	return nil
}

func checkCounter(p *nvPublicArea) error {
	if p.nt() != ntCounter || !p.has(nvAuthRead|nvAuthWrite) || p.attrs&(nvPolicyWrite|nvPPWrite) != 0 || p.dataSize != 8 {
		return fmt.Errorf("NV index %#08x exists with unexpected attributes: it was not created by fwctl; undefine it (tpm2_nvundefine %#08x) if it is not in use", uint32(CounterIndex), uint32(CounterIndex))
	}
	return nil
}

// readAnchor returns the pinned digest and the counter base.
func readAnchor(rw sender) ([32]byte, uint64, error) {
	var digest [32]byte
	pub, _, err := nvPublic(rw, AnchorIndex)
	if errors.Is(err, errNoIndex) {
		return digest, 0, ErrNotProvisioned
	}
	if err != nil {
		return digest, 0, err
	}
	if err := checkAnchor(pub); err != nil {
		return digest, 0, err
	}
	if !pub.has(nvWritten | nvWriteLocked) {
		return digest, 0, fmt.Errorf("root pin in NV %#08x is incomplete (provisioning was interrupted; provision again): %w", uint32(AnchorIndex), ErrNotProvisioned)
	}
	data, err := nvRead(rw, AnchorIndex, anchorSize)
	if err != nil {
		return digest, 0, err
	}
	copy(digest[:], data)
	return digest, binary.BigEndian.Uint64(data[32:]), nil
}

// readCounter returns the counter relative to its base, and the counter
// index's Name.
func readCounter(rw sender) (uint64, []byte, error) {
	_, base, err := readAnchor(rw)
	if err != nil {
		return 0, nil, err
	}
	pub, name, err := nvPublic(rw, CounterIndex)
	if errors.Is(err, errNoIndex) {
		return 0, name, fmt.Errorf("anti-rollback counter NV %#08x is missing although the root is pinned: the TPM was tampered with or partly cleared; re-provision the device", uint32(CounterIndex))
	}
	if err != nil {
		return 0, name, err
	}
	if err := checkCounter(pub); err != nil {
		return 0, name, err
	}
	if !pub.has(nvWritten) {
		return 0, name, fmt.Errorf("anti-rollback counter NV %#08x was re-created and never incremented: provision the device again", uint32(CounterIndex))
	}
	data, err := nvRead(rw, CounterIndex, 8)
	if err != nil {
		return 0, name, err
	}
	c := binary.BigEndian.Uint64(data)
	if c < base {
		// A TPM counter never goes below its highest value, so this means
		// the counter was redefined on another TPM's state or forged.
		return 0, name, fmt.Errorf("TPM counter %d is below its base %d: TPM state is inconsistent; re-provision the device", c, base)
	}
	return c - base, name, nil
}

// counterRaw reads the TPM counter itself.
func counterRaw(rw sender) (uint64, error) {
	if _, _, err := nvPublic(rw, CounterIndex); err != nil {
		return 0, err
	}
	data, err := nvRead(rw, CounterIndex, 8)
	if err != nil {
		return 0, err
	}
	return binary.BigEndian.Uint64(data), nil
}

var errNoIndex = errors.New("NV index not defined")

// nvPublic reads an index's public area and its current Name
// (TPM2_NV_ReadPublic).
func nvPublic(rw sender, h Handle) (*nvPublicArea, []byte, error) {
	_, params, err := run(rw, ccNVReadPublic, []Handle{h}, nil, nil, 0)
	if errors.Is(err, rcHandle) {
		return nil, nil, fmt.Errorf("NV index %#08x: %w", uint32(h), errNoIndex)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("read public area of NV index %#08x: %w", uint32(h), err)
	}
	r := &reader{b: params}
	area, name := r.tpm2b(), r.tpm2b()
	if err := r.done("TPM2_NV_ReadPublic response"); err != nil {
		return nil, nil, fmt.Errorf("parse public area of NV index %#08x: %w", uint32(h), err)
	}
	pub, err := parseNVPublic(area)
	if err != nil {
		return nil, nil, fmt.Errorf("parse public area of NV index %#08x: %w", uint32(h), err)
	}
	return pub, name, nil
}

// nvRead reads size bytes from offset 0 of an index, authorised with the
// index's own, empty, password (TPM2_NV_Read). Password authorisation sends
// no Names, so unlike an HMAC session it needs none.
func nvRead(rw sender, h Handle, size uint16) ([]byte, error) {
	_, params, err := run(rw, ccNVRead, []Handle{h, h}, [][]byte{nil}, appendU16(appendU16(nil, size), 0), 0)
	if err != nil {
		return nil, fmt.Errorf("read NV index %#08x: %w", uint32(h), err)
	}
	r := &reader{b: params}
	data := r.tpm2b()
	if err := r.done("TPM2_NV_Read response"); err != nil {
		return nil, fmt.Errorf("read NV index %#08x: %w", uint32(h), err)
	}
	if len(data) != int(size) {
		return nil, fmt.Errorf("read NV index %#08x: got %d bytes, want %d", uint32(h), len(data), size)
	}
	return data, nil
}

// ownerHint adds what to do when the owner password is wrong or missing.
func ownerHint(err error) error {
	if errors.Is(err, rcBadAuth) || errors.Is(err, rcAuthFail) || errors.Is(err, rcLockout) {
		return fmt.Errorf("%w (owner authorisation refused: pass the owner password with WithOwnerAuth)", err)
	}
	return err
}
