// Package tpm owns the device's TPM 2.0: the pinned root digest and the
// anti-rollback counter in NV indexes (a trust.Store), and the device
// identity key, which never leaves the TPM.
//
// It talks to a kernel TPM device (/dev/tpmrm0) or to swtpm over TCP, in pure
// Go (no cgo, no tpm2-tools), and encodes its commands itself (wire.go). It
// never deletes an NV index or key, never touches one it did not create,
// never lowers the counter, and never rewrites a pinned root.
//
// The handles it uses are fixed and listed in docs/tpm.md:
//
//	AnchorIndex     0x01004650  NV, ordinary, 40 bytes: root digest ‖ counter base; write-locked
//	CounterIndex    0x01004651  NV, TPM_NT_COUNTER, 8 bytes
//	DeviceKeyHandle 0x81024650  persistent ECDSA P-256 signing key
//
// The security counter is the TPM NV counter minus a base recorded in the
// write-locked anchor at provisioning (a re-created TPM counter starts at the
// highest value the TPM has seen, not at 0). Raising it by d costs d atomic
// increments: cheap, crash-safe (an interrupted raise never ends below where
// it started) and unable to go down, at one NV write per unit, which is why
// security counters should stay small and a single raise is capped
// (DefaultMaxStep). Provisioning needs the owner password; reading, raising
// and signing do not, so it can stay off the device.
package tpm

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Fixed handles, all in ranges the TCG reserves for the TPM owner: NV
// indexes in 0x01000000–0x013FFFFF, persistent objects in
// 0x81000000–0x817FFFFF outside the storage (0x8100xxxx) and endorsement
// (0x8101xxxx) primary-key sub-ranges.
const (
	// AnchorIndex holds the SHA-256 of the initial root.json followed by
	// the counter base (uint64, big endian); written once, then write-locked.
	AnchorIndex Handle = 0x01004650
	// CounterIndex is the TPM NV counter behind the anti-rollback counter.
	CounterIndex Handle = 0x01004651
	// DeviceKeyHandle is where the device identity key is persisted.
	DeviceKeyHandle Handle = 0x81024650
)

// DefaultMaxStep is the largest single raise RaiseCounter performs unless
// WithMaxStep says otherwise: each unit is one NV write, 0.2–1.5 ms on swtpm
// and up to tens of ms on a discrete TPM that throttles NV writes.
const DefaultMaxStep = 10000

// TPM is an open connection to a TPM. It implements trust.Store and hands out
// the device identity key. It is safe for concurrent use; commands are
// serialised because a TPM connection carries one command at a time.
type TPM struct {
	mu        sync.Mutex
	rw        senderCloser
	sw        *swtpmConn // the same connection as rw when it is swtpm
	ownerAuth []byte
	maxStep   uint64
}

// Option configures Open.
type Option func(*TPM)

// WithOwnerAuth sets the owner hierarchy password. Only provisioning needs
// it (to define the NV indexes and persist the device key); reading, raising
// the counter and signing do not. On a real device the owner hierarchy
// should have a password that is not stored on the device (docs/tpm.md).
// The default is empty, as on a fresh TPM and on swtpm.
func WithOwnerAuth(password []byte) Option {
	return func(t *TPM) { t.ownerAuth = append([]byte(nil), password...) }
}

// WithMaxStep sets the largest raise a single RaiseCounter call performs
// (default DefaultMaxStep; 0 also means the default). Each unit costs one
// TPM NV write.
func WithMaxStep(n uint64) Option {
	return func(t *TPM) {
		if n > 0 {
			t.maxStep = n
		}
	}
}

// Open connects to the TPM at addr: a character device such as /dev/tpmrm0
// (use the resource manager, not /dev/tpm0, so other TPM users can coexist),
// or tcp://HOST:PORT for swtpm's command port. It does not power the TPM on:
// the kernel, or swtpm started with --flags startup-clear, has already done so.
// swtpm serves one connection at a time: while another client holds it, Open
// waits, up to ctx's deadline.
func Open(ctx context.Context, addr string, opts ...Option) (*TPM, error) {
	var rw senderCloser
	switch {
	case strings.HasPrefix(addr, "tcp://"):
		c, err := dialSwtpm(ctx, strings.TrimPrefix(addr, "tcp://"))
		if err != nil {
			return nil, err
		}
		rw = c
	case strings.HasPrefix(addr, "/"):
		d, err := openDevice(addr)
		if err != nil {
			return nil, fmt.Errorf("open TPM device %s: %w (is the tpm_tis/tpm_crb driver loaded and are you root or in group tss?)", addr, err)
		}
		rw = d
	default:
		return nil, fmt.Errorf("open TPM %q: want a device path like /dev/tpmrm0 or tcp://127.0.0.1:PORT", addr)
	}
	t := &TPM{rw: retrying{rw}, maxStep: DefaultMaxStep}
	t.sw, _ = rw.(*swtpmConn)
	for _, o := range opts {
		o(t)
	}
	// swtpm started without startup-clear needs TPM2_Startup; everywhere
	// else it answers TPM_RC_INITIALIZE, which is harmless.
	if t.sw != nil {
		stop := context.AfterFunc(ctx, t.sw.interrupt)
		_, _, err := run(t.rw, ccStartup, nil, nil, []byte{0, 0}, 0) // TPM_SU_CLEAR
		stop()
		if err != nil && !errors.Is(err, rcInitialize) {
			rw.Close()
			if ctx.Err() != nil {
				err = ctx.Err()
			}
			return nil, fmt.Errorf("start up TPM at %s: %w (another program may be holding swtpm's single connection)", addr, err)
		}
	}
	return t, nil
}

// Close closes the connection. Keys and NV indexes stay in the TPM.
func (t *TPM) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.rw == nil {
		return nil
	}
	err := t.rw.Close()
	t.rw = nil
	return err
}

// Kind returns "tpm".
func (t *TPM) Kind() string { return "tpm" }

// conn returns the transport for one operation under ctx, and a function to
// call when the operation ends. Callers hold t.mu. On swtpm, cancelling ctx
// aborts a command that is waiting for an answer (the connection is then
// unusable); a kernel TPM device answers promptly and is not interrupted.
func (t *TPM) conn(ctx context.Context) (sender, func(), error) {
	if t.rw == nil {
		return nil, nil, errors.New("TPM connection is closed: call tpm.Open again")
	}
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	if t.sw == nil {
		return t.rw, func() {}, nil
	}
	sw := t.sw
	stop := context.AfterFunc(ctx, sw.interrupt)
	return t.rw, func() {
		if !stop() {
			// Cancelled while the operation ran: a command may have been
			// cut off half-way, so the stream cannot be trusted.
			sw.fail(errInterrupted)
		}
	}, nil
}

// owner is the owner hierarchy's password, for the authorisation session of
// rhOwner.
func (t *TPM) owner() []byte { return t.ownerAuth }

// retrying resends a command the TPM answered with TPM_RC_RETRY,
// TPM_RC_YIELDED, TPM_RC_TESTING or TPM_RC_NV_RATE: warnings that mean "busy,
// try again", which TPMs (swtpm included) do return, e.g. while signing or
// when throttling NV writes to limit wear. It gives up after about 10 s.
type retrying struct{ senderCloser }

// Send implements sender.
func (r retrying) Send(cmd []byte) ([]byte, error) {
	delay := time.Millisecond
	for attempt := 0; ; attempt++ {
		rsp, err := r.senderCloser.Send(cmd)
		if err != nil || len(rsp) < 10 || attempt == 50 {
			return rsp, err
		}
		switch rc(binary.BigEndian.Uint32(rsp[6:10])) {
		case rcRetry, rcYielded, rcTesting, rcNVRate:
			time.Sleep(delay)
			delay = min(2*delay, 200*time.Millisecond)
		default:
			return rsp, nil
		}
	}
}

// swtpmConn speaks the TCG simulator protocol that swtpm's --server
// type=tcp port serves. go-tpm's tcp transport also opens the control port
// (which swtpm serves to one client at a time, blocking swtpm_ioctl) and
// assumes a TCP read returns a whole response, so we use this instead.
type swtpmConn struct {
	c           net.Conn
	interrupted atomic.Bool // set by interrupt, checked by Send
	mu          sync.Mutex
	broken      error // set once the stream is out of step
}

var errInterrupted = errors.New("swtpm: command interrupted: context cancelled")

// interrupt makes a Send that is waiting, or about to start, fail at once.
func (s *swtpmConn) interrupt() {
	s.interrupted.Store(true)
	_ = s.c.SetDeadline(time.Unix(1, 0))
}

// tpmSendCommand is the simulator protocol's TPM_SEND_COMMAND.
const tpmSendCommand = 8

// commandTimeout bounds one TPM command, so a hung swtpm cannot hang the agent.
const commandTimeout = 2 * time.Minute

func dialSwtpm(ctx context.Context, hostport string) (*swtpmConn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", hostport)
	if err != nil {
		return nil, fmt.Errorf("connect to swtpm at %s: %w (is swtpm running? see scripts/swtpm.sh)", hostport, err)
	}
	return &swtpmConn{c: c}, nil
}

// Send implements sender. After any failure the connection is out of
// step with swtpm (an answer may still arrive) and refuses further commands.
func (s *swtpmConn) Send(cmd []byte) ([]byte, error) {
	s.mu.Lock()
	broken := s.broken
	s.mu.Unlock()
	if broken != nil {
		return nil, fmt.Errorf("swtpm connection unusable after an earlier error (open the TPM again): %w", broken)
	}
	rsp, err := s.send(cmd)
	if err != nil {
		s.fail(err)
	}
	return rsp, err
}

// fail records the first error that put the stream out of step.
func (s *swtpmConn) fail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.broken == nil {
		s.broken = err
	}
}

func (s *swtpmConn) send(cmd []byte) ([]byte, error) {
	if err := s.c.SetDeadline(time.Now().Add(commandTimeout)); err != nil {
		return nil, fmt.Errorf("swtpm: %w", err)
	}
	// interrupt stores the flag before moving the deadline, so either we see
	// the flag here or its deadline replaces ours.
	if s.interrupted.Load() {
		return nil, errInterrupted
	}
	hdr := make([]byte, 9, 9+len(cmd))
	binary.BigEndian.PutUint32(hdr[0:], tpmSendCommand)
	hdr[4] = 0 // locality
	binary.BigEndian.PutUint32(hdr[5:], uint32(len(cmd)))
	if _, err := s.c.Write(append(hdr, cmd...)); err != nil {
		return nil, fmt.Errorf("swtpm: send command: %w", err)
	}
	var n [4]byte
	if _, err := io.ReadFull(s.c, n[:]); err != nil {
		return nil, fmt.Errorf("swtpm: read response length: %w", err)
	}
	size := binary.BigEndian.Uint32(n[:])
	if size == 0 || size > 1<<20 {
		return nil, fmt.Errorf("swtpm: implausible response length %d", size)
	}
	rsp := make([]byte, size)
	if _, err := io.ReadFull(s.c, rsp); err != nil {
		return nil, fmt.Errorf("swtpm: read response: %w", err)
	}
	// A trailing 32-bit status ends each exchange.
	if _, err := io.ReadFull(s.c, n[:]); err != nil {
		return nil, fmt.Errorf("swtpm: read response trailer: %w", err)
	}
	return rsp, nil
}

// Close implements io.Closer.
func (s *swtpmConn) Close() error { return s.c.Close() }
