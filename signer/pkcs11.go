//go:build cgo

package signer

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"math/big"
	"strings"
	"sync"

	"github.com/miekg/pkcs11"
)

// PKCS#11 v3 constants that miekg/pkcs11 v1.1.2 does not name.
const (
	ckmECEdwardsKeyPairGen = 0x1055
	ckmEdDSA               = 0x1057
	ckkECEdwards           = 0x40
)

var (
	oidP256    = asn1.ObjectIdentifier{1, 2, 840, 10045, 3, 1, 7}
	oidEd25519 = asn1.ObjectIdentifier{1, 3, 101, 112}
)

// PKCS11Available reports whether this build can use PKCS#11 tokens (it
// needs cgo).
const PKCS11Available = true

// modules holds one initialised context per module path: C_Initialize may
// run only once per process and module.
var modules = struct {
	sync.Mutex
	m    map[string]*pkcs11.Ctx
	open map[*pkcs11.Ctx]int // sessions open per module
}{m: map[string]*pkcs11.Ctx{}, open: map[*pkcs11.Ctx]int{}}

// rescan re-initialises a module that has no open session, so that it sees
// tokens created since (SoftHSM reads its token directory only when
// initialised). It reports whether it did.
func rescan(c *pkcs11.Ctx) bool {
	modules.Lock()
	defer modules.Unlock()
	if modules.open[c] > 0 {
		return false
	}
	c.Finalize()
	return c.Initialize() == nil
}

func sessionOpened(c *pkcs11.Ctx, delta int) {
	modules.Lock()
	modules.open[c] += delta
	modules.Unlock()
}

func module(path string) (*pkcs11.Ctx, error) {
	modules.Lock()
	defer modules.Unlock()
	if c, ok := modules.m[path]; ok {
		return c, nil
	}
	c := pkcs11.New(path)
	if c == nil {
		return nil, fmt.Errorf("load PKCS#11 module %s: not a loadable PKCS#11 library; check the path (module-path= or $%s)", path, ModuleEnv)
	}
	if err := c.Initialize(); err != nil && !errors.Is(err, pkcs11.Error(pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED)) {
		return nil, fmt.Errorf("initialise PKCS#11 module %s: %w", path, err)
	}
	modules.m[path] = c
	return c, nil
}

// session opens a logged-in read-write session on the token r names.
func session(r Ref, pin func() ([]byte, error)) (*pkcs11.Ctx, pkcs11.SessionHandle, error) {
	mp, err := r.ModulePath()
	if err != nil {
		return nil, 0, err
	}
	c, err := module(mp)
	if err != nil {
		return nil, 0, err
	}
	for attempt := 0; ; attempt++ {
		c, sh, labels, err := openToken(c, r, pin)
		if err != nil || sh != 0 {
			return c, sh, err
		}
		if attempt == 0 && rescan(c) {
			continue
		}
		return nil, 0, fmt.Errorf("no PKCS#11 token labelled %q in %s (tokens: %s): %w", r.Token, mp, strings.Join(labels, ", "), ErrKeyNotFound)
	}
}

// openToken opens a logged-in session on the token labelled r.Token; it
// returns a zero session and the labels it saw when there is none.
func openToken(c *pkcs11.Ctx, r Ref, pin func() ([]byte, error)) (*pkcs11.Ctx, pkcs11.SessionHandle, []string, error) {
	slots, err := c.GetSlotList(true)
	if err != nil {
		return nil, 0, nil, fmt.Errorf("list PKCS#11 slots: %w", err)
	}
	var labels []string
	for _, s := range slots {
		ti, err := c.GetTokenInfo(s)
		if err != nil {
			continue
		}
		label := strings.TrimRight(ti.Label, " \x00")
		labels = append(labels, label)
		if label != r.Token {
			continue
		}
		sh, err := c.OpenSession(s, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
		if err != nil {
			return nil, 0, nil, fmt.Errorf("open session on token %q: %w", r.Token, err)
		}
		p, err := pin()
		if err != nil {
			c.CloseSession(sh)
			return nil, 0, nil, err
		}
		if err := c.Login(sh, pkcs11.CKU_USER, string(p)); err != nil && !errors.Is(err, pkcs11.Error(pkcs11.CKR_USER_ALREADY_LOGGED_IN)) {
			c.CloseSession(sh)
			if errors.Is(err, pkcs11.Error(pkcs11.CKR_PIN_INCORRECT)) {
				return nil, 0, nil, fmt.Errorf("log in to token %q: wrong PIN ($%s): %w", r.Token, PINEnv, err)
			}
			return nil, 0, nil, fmt.Errorf("log in to token %q: %w", r.Token, err)
		}
		sessionOpened(c, 1)
		return c, sh, nil, nil
	}
	return c, 0, labels, nil
}

func closeSession(c *pkcs11.Ctx, sh pkcs11.SessionHandle) {
	c.CloseSession(sh)
	sessionOpened(c, -1)
}

func findObject(c *pkcs11.Ctx, sh pkcs11.SessionHandle, class uint, label string) (pkcs11.ObjectHandle, bool, error) {
	if err := c.FindObjectsInit(sh, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, class),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
	}); err != nil {
		return 0, false, err
	}
	objs, _, err := c.FindObjects(sh, 2)
	c.FindObjectsFinal(sh)
	if err != nil {
		return 0, false, err
	}
	if len(objs) > 1 {
		return 0, false, fmt.Errorf("token holds more than one object labelled %q: labels must be unique", label)
	}
	if len(objs) == 0 {
		return 0, false, nil
	}
	return objs[0], true, nil
}

// pkcs11Signer is a key held in a PKCS#11 token.
type pkcs11Signer struct {
	mu     sync.Mutex
	c      *pkcs11.Ctx
	sh     pkcs11.SessionHandle
	priv   pkcs11.ObjectHandle
	pub    crypto.PublicKey
	ref    Ref
	closed bool
}

func openPKCS11(r Ref, pin func() ([]byte, error)) (crypto.Signer, error) {
	c, sh, err := session(r, pin)
	if err != nil {
		return nil, err
	}
	s, err := loadPKCS11(c, sh, r)
	if err != nil {
		closeSession(c, sh)
		return nil, err
	}
	return s, nil
}

func loadPKCS11(c *pkcs11.Ctx, sh pkcs11.SessionHandle, r Ref) (*pkcs11Signer, error) {
	priv, ok, err := findObject(c, sh, pkcs11.CKO_PRIVATE_KEY, r.Object)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", r, err)
	}
	if !ok {
		return nil, fmt.Errorf("%s: no private key labelled %q in the token: %w", r, r.Object, ErrKeyNotFound)
	}
	pubObj, ok, err := findObject(c, sh, pkcs11.CKO_PUBLIC_KEY, r.Object)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", r, err)
	}
	if !ok {
		return nil, fmt.Errorf("%s: the token has the private key but no public key labelled %q; import it or regenerate the pair", r, r.Object)
	}
	attrs, err := c.GetAttributeValue(sh, pubObj, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, nil),
		pkcs11.NewAttribute(pkcs11.CKA_EC_PARAMS, nil),
		pkcs11.NewAttribute(pkcs11.CKA_EC_POINT, nil),
	})
	if err != nil {
		return nil, fmt.Errorf("%s: read public key: %w", r, err)
	}
	pub, err := parsePKCS11Public(attrs[1].Value, attrs[2].Value)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", r, err)
	}
	return &pkcs11Signer{c: c, sh: sh, priv: priv, pub: pub, ref: r}, nil
}

func parsePKCS11Public(params, point []byte) (crypto.PublicKey, error) {
	var oid asn1.ObjectIdentifier
	if _, err := asn1.Unmarshal(params, &oid); err != nil {
		// SoftHSM also accepts the curve name as a PrintableString.
		var name string
		if _, err2 := asn1.Unmarshal(params, &name); err2 != nil || name != "edwards25519" {
			return nil, fmt.Errorf("unsupported CKA_EC_PARAMS: %w", err)
		}
		oid = oidEd25519
	}
	// CKA_EC_POINT is a DER OCTET STRING holding the point.
	var raw []byte
	if _, err := asn1.Unmarshal(point, &raw); err != nil {
		raw = point
	}
	switch {
	case oid.Equal(oidEd25519):
		if len(raw) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("Ed25519 public key of %d bytes", len(raw))
		}
		return ed25519.PublicKey(raw), nil
	case oid.Equal(oidP256):
		pk, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), raw)
		if err != nil {
			return nil, fmt.Errorf("P-256 public key: %w", err)
		}
		return pk, nil
	}
	return nil, fmt.Errorf("unsupported curve %v: use ed25519 or ecdsa-p256 keys", oid)
}

func (s *pkcs11Signer) Public() crypto.PublicKey { return s.pub }

// Sign signs with the token. Ed25519 signs the message itself (opts.HashFunc
// must be 0); ECDSA signs a SHA-256 digest and returns an ASN.1 signature,
// as crypto.Signer requires.
func (s *pkcs11Signer) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var mech uint
	switch s.pub.(type) {
	case ed25519.PublicKey:
		if opts.HashFunc() != crypto.Hash(0) {
			return nil, errors.New("ed25519 signs messages, not digests")
		}
		mech = ckmEdDSA
	case *ecdsa.PublicKey:
		mech = pkcs11.CKM_ECDSA
	}
	if err := s.c.SignInit(s.sh, []*pkcs11.Mechanism{pkcs11.NewMechanism(mech, nil)}, s.priv); err != nil {
		return nil, fmt.Errorf("%s: sign: %w", s.ref, err)
	}
	sig, err := s.c.Sign(s.sh, digest)
	if err != nil {
		return nil, fmt.Errorf("%s: sign: %w", s.ref, err)
	}
	if _, ok := s.pub.(*ecdsa.PublicKey); ok {
		if len(sig)%2 != 0 {
			return nil, fmt.Errorf("%s: ECDSA signature of odd length %d", s.ref, len(sig))
		}
		n := len(sig) / 2
		return asn1.Marshal(struct{ R, S *big.Int }{new(big.Int).SetBytes(sig[:n]), new(big.Int).SetBytes(sig[n:])})
	}
	return sig, nil
}

// Close ends the session.
func (s *pkcs11Signer) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	closeSession(s.c, s.sh)
	return nil
}

// GeneratePKCS11 creates a key pair of algorithm alg inside the token r
// names, labelled r.Object, with a private key that cannot be extracted.
// It refuses to create a second key with the same label.
func GeneratePKCS11(r Ref, alg string, o Options) (crypto.Signer, error) {
	c, sh, err := session(r, o.pin())
	if err != nil {
		return nil, err
	}
	if _, ok, err := findObject(c, sh, pkcs11.CKO_PRIVATE_KEY, r.Object); err != nil || ok {
		closeSession(c, sh)
		if err == nil {
			err = fmt.Errorf("token %q already holds a key labelled %q: choose another object= label", r.Token, r.Object)
		}
		return nil, err
	}
	var mech uint
	var oid asn1.ObjectIdentifier
	var keyType uint
	switch alg {
	case Ed25519, "":
		mech, oid, keyType = ckmECEdwardsKeyPairGen, oidEd25519, ckkECEdwards
	case ECDSAP256:
		mech, oid, keyType = pkcs11.CKM_EC_KEY_PAIR_GEN, oidP256, pkcs11.CKK_EC
	default:
		closeSession(c, sh)
		return nil, fmt.Errorf("unknown key algorithm %q: use %q or %q", alg, Ed25519, ECDSAP256)
	}
	params, _ := asn1.Marshal(oid)
	id := make([]byte, 16)
	rand.Read(id)
	pubT := []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PUBLIC_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, keyType),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
		pkcs11.NewAttribute(pkcs11.CKA_VERIFY, true),
		pkcs11.NewAttribute(pkcs11.CKA_EC_PARAMS, params),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, r.Object),
		pkcs11.NewAttribute(pkcs11.CKA_ID, id),
	}
	privT := []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, keyType),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
		pkcs11.NewAttribute(pkcs11.CKA_SIGN, true),
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, false),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, r.Object),
		pkcs11.NewAttribute(pkcs11.CKA_ID, id),
	}
	if _, _, err := c.GenerateKeyPair(sh, []*pkcs11.Mechanism{pkcs11.NewMechanism(mech, nil)}, pubT, privT); err != nil {
		closeSession(c, sh)
		return nil, fmt.Errorf("generate %s key in token %q: %w", alg, r.Token, err)
	}
	s, err := loadPKCS11(c, sh, r)
	if err != nil {
		closeSession(c, sh)
		return nil, err
	}
	return s, nil
}
