package signer

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
)

// PINEnv is the environment variable holding a PKCS#11 user PIN.
const PINEnv = "FWCTL_PKCS11_PIN"

// The environment variables holding key passphrases, defined here once:
// fwctl's release keys, and fwrepo's online (timestamp, director) keys.
const (
	PassphraseEnv       = "FWCTL_PASSPHRASE"
	OnlinePassphraseEnv = "FWREPO_PASSPHRASE"
)

// ModuleEnv is the environment variable naming the PKCS#11 module (shared
// library) when a pkcs11: URI has no module-path attribute.
const ModuleEnv = "FWCTL_PKCS11_MODULE"

// ErrKeyNotFound means a key URI names a key that does not exist (a file
// that is not there, or an object missing from the token). For a key that
// lives on another machine this is expected: its signatures come through
// the offline ceremony instead.
var ErrKeyNotFound = errors.New("key not found")

// Ref is a parsed key URI:
//
//	file:PATH                                     an encrypted fwctl key file
//	pkcs11:token=LABEL;object=LABEL[;module-path=SO][?module-path=SO]
//	tpm:[DEVICE]?handle=0x81xxxxxx                 a non-exportable ECDSA P-256 key in a TPM
//
// DEVICE is a TPM character device (default /dev/tpmrm0) or tcp://HOST:PORT
// for swtpm; see tpm.go.
//
// A pkcs11 URI follows RFC 7512's syntax for the attributes fwctl uses.
// The PIN is never part of a URI: it comes from $FWCTL_PKCS11_PIN or a
// prompt.
type Ref struct {
	Scheme string // "file", "pkcs11" or "tpm"
	Path   string // file: the key file
	Token  string // pkcs11: token label
	Object string // pkcs11: key label (CKA_LABEL)
	Module string // pkcs11: module path; empty means $FWCTL_PKCS11_MODULE
	Device string // tpm: device path or tcp://HOST:PORT
	Handle uint32 // tpm: persistent handle of the key
}

// String returns the URI form of r.
func (r Ref) String() string {
	switch r.Scheme {
	case "file":
		return "file:" + r.Path
	case "pkcs11":
		s := "pkcs11:token=" + pctEncode(r.Token) + ";object=" + pctEncode(r.Object)
		if r.Module != "" {
			s += "?module-path=" + pctEncode(r.Module)
		}
		return s
	case "tpm":
		return r.tpmString()
	}
	return r.Scheme + ":?"
}

func pctEncode(s string) string {
	return strings.NewReplacer("%", "%25", ";", "%3B", "?", "%3F", "&", "%26", "=", "%3D").Replace(s)
}

// ParseRef parses a key URI. A bare path (no scheme) is taken as file:PATH.
func ParseRef(uri string) (Ref, error) {
	scheme, rest, ok := strings.Cut(uri, ":")
	if ok && scheme == "tpm" {
		return parseTPMRef(uri, rest)
	}
	if !ok || (scheme != "file" && scheme != "pkcs11") {
		if strings.HasPrefix(uri, "pkcs11") {
			return Ref{}, fmt.Errorf("key URI %q: want pkcs11:token=LABEL;object=LABEL", uri)
		}
		return Ref{Scheme: "file", Path: uri}, nil
	}
	if scheme == "file" {
		if rest == "" {
			return Ref{}, fmt.Errorf("key URI %q: want file:PATH", uri)
		}
		return Ref{Scheme: "file", Path: strings.TrimPrefix(rest, "//")}, nil
	}
	r := Ref{Scheme: "pkcs11"}
	path, query, _ := strings.Cut(rest, "?")
	attrs := strings.Split(path, ";")
	if query != "" {
		attrs = append(attrs, strings.Split(query, "&")...)
	}
	for _, a := range attrs {
		if a == "" {
			continue
		}
		k, v, _ := strings.Cut(a, "=")
		v, err := url.PathUnescape(v)
		if err != nil {
			return Ref{}, fmt.Errorf("key URI %q: attribute %s: %w", uri, k, err)
		}
		switch k {
		case "token":
			r.Token = v
		case "object":
			r.Object = v
		case "module-path":
			r.Module = v
		case "type", "id", "slot-id", "manufacturer", "model", "serial", "library-description":
			// Accepted for compatibility, not used to select keys.
		case "pin-value", "pin-source":
			return Ref{}, fmt.Errorf("key URI %q: a PIN never goes into a key URI (it would end up in shell history and process lists); set $%s or type it at the prompt", uri, PINEnv)
		default:
			return Ref{}, fmt.Errorf("key URI %q: unknown attribute %q", uri, k)
		}
	}
	if r.Token == "" || r.Object == "" {
		return Ref{}, fmt.Errorf("key URI %q: token= and object= are required, e.g. pkcs11:token=release;object=root-1", uri)
	}
	return r, nil
}

// Abs makes a file reference absolute, so that it still names the same
// file when stored in a workspace and used from another directory.
func (r Ref) Abs() Ref {
	if r.Scheme == "file" {
		if p, err := filepath.Abs(r.Path); err == nil {
			r.Path = p
		}
	}
	return r
}

// Module returns the PKCS#11 module path for r: its module-path attribute,
// else $FWCTL_PKCS11_MODULE, else SoftHSM2's default location.
func (r Ref) ModulePath() (string, error) {
	if r.Module != "" {
		return r.Module, nil
	}
	if m := os.Getenv(ModuleEnv); m != "" {
		return m, nil
	}
	for _, m := range []string{"/usr/lib/softhsm/libsofthsm2.so", "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so"} {
		if _, err := os.Stat(m); err == nil {
			return m, nil
		}
	}
	return "", fmt.Errorf("no PKCS#11 module for %s: add ?module-path=/path/to/module.so to the URI or set $%s", r, ModuleEnv)
}

// Options supply secrets for opening keys.
type Options struct {
	// Passphrase decrypts encrypted key files.
	Passphrase func() ([]byte, error)
	// PIN logs in to PKCS#11 tokens; nil means $FWCTL_PKCS11_PIN or a
	// terminal prompt.
	PIN func() ([]byte, error)
}

func (o Options) pin() func() ([]byte, error) {
	if o.PIN != nil {
		return o.PIN
	}
	return PassphraseSource(PINEnv, "PKCS#11 user PIN: ", false)
}

// Open returns the private key that uri names, behind crypto.Signer. A
// PKCS#11 key stays in its token, a TPM key in its TPM; the returned signer
// then also implements io.Closer, which ends the session or releases the
// TPM connection (swtpm serves one client at a time: Close signers when
// done; see Close).
func Open(uri string, o Options) (crypto.Signer, error) {
	r, err := ParseRef(uri)
	if err != nil {
		return nil, err
	}
	return r.Open(o)
}

// Open returns the private key r names.
func (r Ref) Open(o Options) (crypto.Signer, error) {
	switch r.Scheme {
	case "file":
		if _, err := os.Stat(r.Path); errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%s: %w", r, ErrKeyNotFound)
		}
		pw := o.Passphrase
		if pw == nil {
			pw = PassphraseSource(PassphraseEnv, "Key passphrase for "+r.Path+": ", false)
		}
		s, _, err := Load(r.Path, pw)
		return s, err
	case "pkcs11":
		return openPKCS11(r, o.pin())
	case "tpm":
		s, _, err := openTPM(r, false)
		if err != nil {
			return nil, err
		}
		return s, nil
	}
	return nil, fmt.Errorf("key URI %s: unknown scheme", r)
}

// Public returns the public key r names without unlocking the private key
// (a file key's public half is stored in clear; a token's public object is
// readable after login).
func (r Ref) Public(o Options) (crypto.PublicKey, error) {
	switch r.Scheme {
	case "file":
		if _, err := os.Stat(r.Path); errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%s: %w", r, ErrKeyNotFound)
		}
		if b, err := os.ReadFile(r.Path); err == nil && strings.HasPrefix(string(b), "-----BEGIN") {
			return ParsePublicPEM(b)
		}
		kf, err := ReadKeyFile(r.Path)
		if err != nil {
			return nil, err
		}
		return ParsePublicPEM([]byte(kf.Public))
	case "pkcs11":
		s, err := openPKCS11(r, o.pin())
		if err != nil {
			return nil, err
		}
		defer closeSigner(s)
		return s.Public(), nil
	case "tpm":
		s, _, err := openTPM(r, false)
		if err != nil {
			return nil, err
		}
		defer s.Close()
		return s.Public(), nil
	}
	return nil, fmt.Errorf("key URI %s: unknown scheme", r)
}

// ParsePublicPEM parses a PKIX "PUBLIC KEY" PEM block.
func ParsePublicPEM(b []byte) (crypto.PublicKey, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PUBLIC KEY" {
		return nil, errors.New("not a PEM public key (want -----BEGIN PUBLIC KEY-----)")
	}
	pub, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse public key: %w", err)
	}
	if Algorithm(pub) == "unsupported" {
		return nil, fmt.Errorf("public key type %T is not supported: use ed25519 or ecdsa-p256", pub)
	}
	return pub, nil
}

// PublicPEM encodes pub as a PKIX "PUBLIC KEY" PEM block.
func PublicPEM(pub crypto.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

func closeSigner(s crypto.Signer) {
	if c, ok := s.(interface{ Close() error }); ok {
		c.Close()
	}
}

// Close releases what s holds (a PKCS#11 session, a TPM connection); other
// signers ignore it.
func Close(s crypto.Signer) { closeSigner(s) }

// Verify checks a TUF signature (as made by TUF(s).SignMessage) over msg.
func Verify(pub crypto.PublicKey, msg, sig []byte) error {
	switch k := pub.(type) {
	case ed25519.PublicKey:
		if ed25519.Verify(k, msg, sig) {
			return nil
		}
	case *ecdsa.PublicKey:
		d := sha256.Sum256(msg)
		if ecdsa.VerifyASN1(k, d[:], sig) {
			return nil
		}
	default:
		return fmt.Errorf("unsupported key type %T", pub)
	}
	return errors.New("signature does not verify")
}
