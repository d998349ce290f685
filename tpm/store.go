package tpm

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
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
	cur, name, err := readCounter(rw)
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
	// The counter's Name changes only on its first write, which provisioning
	// did, so the Name read above stays valid for every increment.
	inc := counterIncrement(name)
	for i := cur; i < n; i++ {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("raise counter to %d: interrupted at %d (safe; raise again): %w", n, i, err)
		}
		if _, err := inc.Execute(rw); err != nil {
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
func (t *TPM) ensureCounter(rw transport.TPM) (created bool, err error) {
	pub, name, err := nvPublic(rw, CounterIndex)
	if errors.Is(err, errNoIndex) {
		if err := t.define(rw, counterTemplate()); err != nil {
			return false, err
		}
		created = true
		if pub, name, err = nvPublic(rw, CounterIndex); err != nil {
			return created, err
		}
	} else if err != nil {
		return false, err
	}
	if err := checkCounter(pub); err != nil {
		return created, err
	}
	if !pub.Attributes.Written {
		if _, err := counterIncrement(name).Execute(rw); err != nil {
			return created, fmt.Errorf("initialise NV counter %#08x: %w", uint32(CounterIndex), err)
		}
	}
	return created, nil
}

// ensureAnchor writes digest and the counter base into the anchor index and
// write-locks it, resuming an interrupted earlier run.
func (t *TPM) ensureAnchor(ctx context.Context, rw transport.TPM, digest [32]byte) (pinned, wasPinned bool, err error) {
	pub, name, err := nvPublic(rw, AnchorIndex)
	if errors.Is(err, errNoIndex) {
		if err := t.define(rw, anchorTemplate()); err != nil {
			return false, false, err
		}
		pub, name, err = nvPublic(rw, AnchorIndex)
	}
	if err != nil {
		return false, false, err
	}
	if err := checkAnchor(pub); err != nil {
		return false, false, err
	}
	if pub.Attributes.Written {
		data, err := nvRead(rw, AnchorIndex, name, anchorSize)
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
		w := tpm2.NVWrite{AuthHandle: t.owner(), NVIndex: tpm2.NamedHandle{Handle: AnchorIndex, Name: name},
			Data: tpm2.TPM2BMaxNVBuffer{Buffer: data}}
		if _, err := w.Execute(rw); err != nil {
			return false, false, fmt.Errorf("write root pin to NV %#08x: %w", uint32(AnchorIndex), ownerHint(err))
		}
		pinned = true
	}
	if !pub.Attributes.WriteLocked {
		// The write changed the Name: read it again (HARDWARE.md).
		if _, name, err = nvPublic(rw, AnchorIndex); err != nil {
			return pinned, wasPinned, err
		}
		l := tpm2.NVWriteLock{AuthHandle: t.owner(), NVIndex: tpm2.NamedHandle{Handle: AnchorIndex, Name: name}}
		if _, err := l.Execute(rw); err != nil {
			return pinned, wasPinned, fmt.Errorf("write-lock root pin in NV %#08x: %w", uint32(AnchorIndex), ownerHint(err))
		}
	}
	return pinned, wasPinned, nil
}

// counterIncrement authorises with the counter's own, empty, password, so
// the agent needs no owner password to raise it.
func counterIncrement(name tpm2.TPM2BName) tpm2.NVIncrement {
	return tpm2.NVIncrement{
		AuthHandle: tpm2.AuthHandle{Handle: CounterIndex, Name: name, Auth: tpm2.PasswordAuth(nil)},
		NVIndex:    tpm2.NamedHandle{Handle: CounterIndex, Name: name},
	}
}

func (t *TPM) define(rw transport.TPM, pub tpm2.TPMSNVPublic) error {
	d := tpm2.NVDefineSpace{AuthHandle: t.owner(), PublicInfo: tpm2.New2B(pub)}
	if _, err := d.Execute(rw); err != nil {
		return fmt.Errorf("define NV index %#08x: %w", uint32(pub.NVIndex), ownerHint(err))
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
func anchorTemplate() tpm2.TPMSNVPublic {
	return tpm2.TPMSNVPublic{
		NVIndex: AnchorIndex,
		NameAlg: tpm2.TPMAlgSHA256,
		Attributes: tpm2.TPMANV{NT: tpm2.TPMNTOrdinary, OwnerWrite: true, OwnerRead: true, AuthRead: true,
			WriteDefine: true, WriteAll: true, NoDA: true},
		DataSize: anchorSize,
	}
}

func counterTemplate() tpm2.TPMSNVPublic {
	return tpm2.TPMSNVPublic{
		NVIndex:    CounterIndex,
		NameAlg:    tpm2.TPMAlgSHA256,
		Attributes: tpm2.TPMANV{NT: tpm2.TPMNTCounter, AuthWrite: true, OwnerRead: true, AuthRead: true, NoDA: true},
		DataSize:   8,
	}
}

// checkAnchor refuses an index at AnchorIndex that someone else defined, or
// that could be rewritten.
func checkAnchor(p *tpm2.TPMSNVPublic) error {
	a := p.Attributes
	if a.NT != tpm2.TPMNTOrdinary || p.DataSize != anchorSize || !a.WriteDefine || !a.AuthRead ||
		a.AuthWrite || a.PolicyWrite || a.PPWrite {
		return fmt.Errorf("NV index %#08x exists with unexpected attributes (size %d): it was not created by fwctl; undefine it (tpm2_nvundefine %#08x) if it is not in use", uint32(AnchorIndex), p.DataSize, uint32(AnchorIndex))
	}
	return nil
}

func checkCounter(p *tpm2.TPMSNVPublic) error {
	a := p.Attributes
	if a.NT != tpm2.TPMNTCounter || !a.AuthRead || !a.AuthWrite || a.PolicyWrite || a.PPWrite || p.DataSize != 8 {
		return fmt.Errorf("NV index %#08x exists with unexpected attributes: it was not created by fwctl; undefine it (tpm2_nvundefine %#08x) if it is not in use", uint32(CounterIndex), uint32(CounterIndex))
	}
	return nil
}

// readAnchor returns the pinned digest and the counter base.
func readAnchor(rw transport.TPM) ([32]byte, uint64, error) {
	var digest [32]byte
	pub, name, err := nvPublic(rw, AnchorIndex)
	if errors.Is(err, errNoIndex) {
		return digest, 0, ErrNotProvisioned
	}
	if err != nil {
		return digest, 0, err
	}
	if err := checkAnchor(pub); err != nil {
		return digest, 0, err
	}
	if !pub.Attributes.Written || !pub.Attributes.WriteLocked {
		return digest, 0, fmt.Errorf("root pin in NV %#08x is incomplete (provisioning was interrupted; provision again): %w", uint32(AnchorIndex), ErrNotProvisioned)
	}
	data, err := nvRead(rw, AnchorIndex, name, anchorSize)
	if err != nil {
		return digest, 0, err
	}
	copy(digest[:], data)
	return digest, binary.BigEndian.Uint64(data[32:]), nil
}

// readCounter returns the counter relative to its base, and the counter
// index's Name.
func readCounter(rw transport.TPM) (uint64, tpm2.TPM2BName, error) {
	_, base, err := readAnchor(rw)
	if err != nil {
		return 0, tpm2.TPM2BName{}, err
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
	if !pub.Attributes.Written {
		return 0, name, fmt.Errorf("anti-rollback counter NV %#08x was re-created and never incremented: provision the device again", uint32(CounterIndex))
	}
	data, err := nvRead(rw, CounterIndex, name, 8)
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
func counterRaw(rw transport.TPM) (uint64, error) {
	_, name, err := nvPublic(rw, CounterIndex)
	if err != nil {
		return 0, err
	}
	data, err := nvRead(rw, CounterIndex, name, 8)
	if err != nil {
		return 0, err
	}
	return binary.BigEndian.Uint64(data), nil
}

var errNoIndex = errors.New("NV index not defined")

// nvPublic reads an index's public area and its current Name.
func nvPublic(rw transport.TPM, h tpm2.TPMHandle) (*tpm2.TPMSNVPublic, tpm2.TPM2BName, error) {
	rsp, err := tpm2.NVReadPublic{NVIndex: h}.Execute(rw)
	if errors.Is(err, tpm2.TPMRCHandle) {
		return nil, tpm2.TPM2BName{}, fmt.Errorf("NV index %#08x: %w", uint32(h), errNoIndex)
	}
	if err != nil {
		return nil, tpm2.TPM2BName{}, fmt.Errorf("read public area of NV index %#08x: %w", uint32(h), err)
	}
	pub, err := rsp.NVPublic.Contents()
	if err != nil {
		return nil, tpm2.TPM2BName{}, fmt.Errorf("parse public area of NV index %#08x: %w", uint32(h), err)
	}
	return pub, rsp.NVName, nil
}

func nvRead(rw transport.TPM, h tpm2.TPMHandle, name tpm2.TPM2BName, size uint16) ([]byte, error) {
	r := tpm2.NVRead{
		AuthHandle: tpm2.AuthHandle{Handle: h, Name: name, Auth: tpm2.PasswordAuth(nil)},
		NVIndex:    tpm2.NamedHandle{Handle: h, Name: name},
		Size:       size,
	}
	rsp, err := r.Execute(rw)
	if err != nil {
		return nil, fmt.Errorf("read NV index %#08x: %w", uint32(h), err)
	}
	if len(rsp.Data.Buffer) != int(size) {
		return nil, fmt.Errorf("read NV index %#08x: got %d bytes, want %d", uint32(h), len(rsp.Data.Buffer), size)
	}
	return rsp.Data.Buffer, nil
}

// ownerHint adds what to do when the owner password is wrong or missing.
func ownerHint(err error) error {
	if errors.Is(err, tpm2.TPMRCBadAuth) || errors.Is(err, tpm2.TPMRCAuthFail) || errors.Is(err, tpm2.TPMRCLockout) {
		return fmt.Errorf("%w (owner authorisation refused: pass the owner password with WithOwnerAuth)", err)
	}
	return err
}
