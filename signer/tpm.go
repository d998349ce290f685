package signer

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/fwctl/fwctl/tpm"
)

// TPMOwnerPasswordEnv holds the TPM owner password that creating a key
// (GenerateTPM) needs on a TPM whose owner hierarchy has one. Signing needs
// no password.
const TPMOwnerPasswordEnv = "FWCTL_TPM_OWNER_PASSWORD"

// DefaultTPMDevice is the TPM a tpm: URI without a device names.
const DefaultTPMDevice = "/dev/tpmrm0"

// tpmOpenTimeout bounds the wait for a TPM that another program holds
// (swtpm serves one connection at a time).
const tpmOpenTimeout = 30 * time.Second

// parseTPMRef parses the part of a tpm: URI after the scheme:
// DEVICE?handle=0x81xxxxxx, where DEVICE is a device path or tcp://HOST:PORT.
func parseTPMRef(uri, rest string) (Ref, error) {
	dev, query, _ := strings.Cut(rest, "?")
	if dev == "" {
		dev = DefaultTPMDevice
	}
	if !strings.HasPrefix(dev, "/") && !strings.HasPrefix(dev, "tcp://") {
		return Ref{}, fmt.Errorf("key URI %q: want tpm:/dev/tpmrm0?handle=0x81000101 or tpm:tcp://HOST:PORT?handle=0x81000101", uri)
	}
	q, err := url.ParseQuery(query)
	if err != nil {
		return Ref{}, fmt.Errorf("key URI %q: %w", uri, err)
	}
	r := Ref{Scheme: "tpm", Device: dev}
	for k, vs := range q {
		if k != "handle" || len(vs) != 1 {
			return Ref{}, fmt.Errorf("key URI %q: unknown or repeated attribute %q (a tpm: URI takes one handle=)", uri, k)
		}
		h, err := strconv.ParseUint(vs[0], 0, 32)
		if err != nil {
			return Ref{}, fmt.Errorf("key URI %q: handle %q: want a persistent handle such as 0x81000101", uri, vs[0])
		}
		if err := tpm.CheckSigningKeyHandle(tpm.Handle(h)); err != nil {
			return Ref{}, fmt.Errorf("key URI %q: %w", uri, err)
		}
		r.Handle = uint32(h)
	}
	if r.Handle == 0 {
		return Ref{}, fmt.Errorf("key URI %q: handle= is required, e.g. tpm:%s?handle=0x81000101", uri, dev)
	}
	return r, nil
}

func (r Ref) tpmString() string {
	return fmt.Sprintf("tpm:%s?handle=%#08x", r.Device, r.Handle)
}

// tpmConns shares one connection per TPM in this process: swtpm serves one
// client at a time, so a second tpm.Open (another role's key in the same
// TPM, or Ref.Public while a signer is open) would wait for the first to
// close. A connection is closed when its last user releases it.
var tpmConns = struct {
	sync.Mutex
	m map[string]*tpmConn
}{m: map[string]*tpmConn{}}

type tpmConn struct {
	t    *tpm.TPM
	refs int
}

// acquireTPM returns the open connection to dev, opening it if needed, and a
// function that releases it.
func acquireTPM(dev string) (*tpm.TPM, func(), error) {
	tpmConns.Lock()
	defer tpmConns.Unlock()
	c := tpmConns.m[dev]
	if c == nil {
		var opts []tpm.Option
		if pw, ok := os.LookupEnv(TPMOwnerPasswordEnv); ok {
			opts = append(opts, tpm.WithOwnerAuth([]byte(pw)))
		}
		ctx, cancel := context.WithTimeout(context.Background(), tpmOpenTimeout)
		t, err := tpm.Open(ctx, dev, opts...)
		cancel()
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil, nil, fmt.Errorf("%w: %w", err, ErrKeyNotFound)
			}
			return nil, nil, err
		}
		c = &tpmConn{t: t}
		tpmConns.m[dev] = c
	}
	c.refs++
	var once sync.Once
	return c.t, func() {
		once.Do(func() {
			tpmConns.Lock()
			defer tpmConns.Unlock()
			if c.refs--; c.refs == 0 {
				c.t.Close()
				delete(tpmConns.m, dev)
			}
		})
	}, nil
}

// tpmSigner is a key held in a TPM. It holds the TPM connection until
// Close.
type tpmSigner struct {
	mu      sync.RWMutex
	key     *tpm.SigningKey
	ref     Ref
	release func()
}

// openTPM opens the key r names; with create it creates the key if the
// handle is empty and reports whether it did.
func openTPM(r Ref, create bool) (*tpmSigner, bool, error) {
	t, release, err := acquireTPM(r.Device)
	if err != nil {
		return nil, false, fmt.Errorf("%s: %w", r, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), tpmOpenTimeout)
	defer cancel()
	k, created, err := t.SigningKey(ctx, tpm.Handle(r.Handle), create)
	if err != nil {
		release()
		if errors.Is(err, tpm.ErrNoKey) {
			return nil, false, fmt.Errorf("%s: %w: %w (create it with: fwctl key generate --algorithm %s '%s')", r, err, ErrKeyNotFound, ECDSAP256, r)
		}
		return nil, false, fmt.Errorf("%s: %w", r, err)
	}
	return &tpmSigner{key: k, ref: r, release: release}, created, nil
}

func (s *tpmSigner) Public() crypto.PublicKey { return s.key.Public() }

// Sign signs a SHA-256, SHA-384 or SHA-512 digest inside the TPM and returns
// an ASN.1 DER ECDSA signature.
func (s *tpmSigner) Sign(rand io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.release == nil {
		return nil, fmt.Errorf("%s: signer is closed", s.ref)
	}
	return s.key.Sign(rand, digest, opts)
}

// Close releases the TPM connection (closing it when no other signer in
// this process uses it); a signature being made finishes first.
func (s *tpmSigner) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.release != nil {
		s.release()
		s.release = nil
	}
	return nil
}

// GenerateTPM creates the non-exportable ECDSA P-256 key that r (a tpm: URI)
// names, inside the TPM. It is idempotent: when the handle already holds a
// key it returns that key and created is false. alg must be ECDSAP256 or
// empty: TPMs (and swtpm's libtpms) offer no Ed25519. Creating needs the
// owner password when the TPM has one ($FWCTL_TPM_OWNER_PASSWORD). The
// signer holds the TPM until Close.
func GenerateTPM(r Ref, alg string) (s crypto.Signer, created bool, err error) {
	if r.Scheme != "tpm" {
		return nil, false, fmt.Errorf("%s is not a tpm: key URI", r)
	}
	if alg != "" && alg != ECDSAP256 {
		return nil, false, fmt.Errorf("%s: TPM keys are %s (TPMs have no Ed25519): use --algorithm %s", r, ECDSAP256, ECDSAP256)
	}
	ts, created, err := openTPM(r, true)
	if err != nil {
		return nil, false, err
	}
	return ts, created, nil
}
