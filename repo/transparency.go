package repo

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/fwctl/fwctl/internal/atomicfile"
	"github.com/fwctl/fwctl/manifests"
	"github.com/fwctl/fwctl/repo/verify"
	"github.com/fwctl/fwctl/signer"
	"github.com/fwctl/fwctl/transparency"
)

// BundleSuffix ends the target path of a target's Sigstore bundle.
const BundleSuffix = ".sigstore.json"

// ReleaseKey returns the workspace's release key, the ECDSA P-256 key that
// signs images and targets metadata for the transparency log (cosign
// verify-blob checks these signatures), creating it on first use. Its
// public key is kept in WORKSPACE/release.pub for devices and auditors.
func (ws *Workspace) ReleaseKey() (crypto.Signer, []byte, error) {
	files, err := ws.keyFiles("release")
	if err != nil {
		return nil, nil, err
	}
	var key crypto.Signer
	if len(files) > 0 {
		if key, _, err = signer.Load(files[0], ws.Passphrase); err != nil {
			return nil, nil, fmt.Errorf("release key: %w", err)
		}
	} else {
		if key, err = signer.Generate(signer.ECDSAP256); err != nil {
			return nil, nil, err
		}
		// Encrypt like the workspace's other keys: plaintext only if the
		// user chose --insecure-plaintext-keys at init.
		var pw []byte
		if ws.keysEncrypted() {
			if ws.Passphrase == nil {
				return nil, nil, errors.New("release key: a passphrase is needed to encrypt it")
			}
			if pw, err = ws.Passphrase(); err != nil {
				return nil, nil, err
			}
		}
		_, id, err := signer.TUFKey(key.Public())
		if err != nil {
			return nil, nil, err
		}
		if _, err := signer.Save(filepath.Join(ws.Dir, "keys", "release-"+id[:16]+".json"), "release", key, pw); err != nil {
			return nil, nil, err
		}
	}
	if _, ok := key.Public().(*ecdsa.PublicKey); !ok {
		return nil, nil, errors.New("release key must be ECDSA P-256 (hashedrekord and cosign verify-blob)")
	}
	der, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return nil, nil, err
	}
	pub := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	if err := atomicfile.Write(filepath.Join(ws.Dir, "release.pub"), pub, 0o644); err != nil {
		return nil, nil, err
	}
	return key, pub, nil
}

// ReleasePublicKey returns the release key's public key (PEM) without
// touching the private key.
func (ws *Workspace) ReleasePublicKey() ([]byte, error) {
	b, err := os.ReadFile(filepath.Join(ws.Dir, "release.pub"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("no release key yet in %s: publish with --rekor first", ws.Dir)
	}
	return b, err
}

// keysEncrypted reports whether the workspace's root keys are encrypted.
func (ws *Workspace) keysEncrypted() bool {
	files, _ := ws.keyFiles("root")
	for _, f := range files {
		if kf, err := signer.ReadKeyFile(f); err == nil && !kf.IsEncrypted() {
			return false
		}
	}
	return true
}

// Logged describes one artifact recorded in the transparency log.
type Logged struct {
	Path     string `json:"path"`
	SHA256   string `json:"sha256"`
	LogIndex int64  `json:"log_index"`
	Bundle   string `json:"bundle"`
}

// signDigest signs a SHA-256 digest with the release key (ASN.1 ECDSA).
func signDigest(key crypto.Signer, digest []byte) ([]byte, error) {
	return key.Sign(rand.Reader, digest, crypto.SHA256)
}

// LogTargets records every staged firmware target (full or delta) that has
// no log proof yet in the Rekor log at rekorURL: it signs the image's
// SHA-256 with the release key, uploads a hashedrekord entry, writes the
// returned proof as a Sigstore bundle next to the image, stages the bundle
// as a target of its own and names it in the image's "tlog" field. Run it
// before Publish, so targets metadata signs the references.
func (ws *Workspace) LogTargets(ctx context.Context, rekorURL string) ([]Logged, error) {
	key, pub, err := ws.ReleaseKey()
	if err != nil {
		return nil, err
	}
	staged, err := ws.stagedTargets()
	if err != nil {
		return nil, err
	}
	var out []Logged
	paths := make([]string, 0, len(staged.Signed.Targets))
	for p := range staged.Signed.Targets {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		tf := staged.Signed.Targets[p]
		fw, err := verify.TargetFirmware(tf)
		if err != nil || fw.Tlog != "" {
			continue
		}
		digest := []byte(tf.Hashes["sha256"])
		sig, err := signDigest(key, digest)
		if err != nil {
			return out, fmt.Errorf("sign %s: %w", p, err)
		}
		e, err := transparency.Upload(ctx, rekorURL, digest, sig, pub)
		if err != nil {
			return out, fmt.Errorf("log %s: %w", p, err)
		}
		b, err := transparency.MarshalBundle(digest, sig, pub, e)
		if err != nil {
			return out, err
		}
		bpath := p + BundleSuffix
		if err := ws.putFile(staged, bpath, b); err != nil {
			return out, err
		}
		fw.Tlog = bpath
		custom, err := manifests.MarshalCustom(fw)
		if err != nil {
			return out, err
		}
		raw := json.RawMessage(custom)
		tf.Custom = &raw
		out = append(out, Logged{Path: p, SHA256: hex.EncodeToString(digest), LogIndex: e.LogIndex, Bundle: bpath})
	}
	return out, writeMetadata(ws.stagedTargetsPath(), staged)
}

// PutFile stages an arbitrary file (not firmware) as a target at path.
func (ws *Workspace) PutFile(path string, data []byte) error {
	staged, err := ws.stagedTargets()
	if err != nil {
		return err
	}
	if err := ws.putFile(staged, path, data); err != nil {
		return err
	}
	return writeMetadata(ws.stagedTargetsPath(), staged)
}

func (ws *Workspace) putFile(staged *metadata.Metadata[metadata.TargetsType], path string, data []byte) error {
	dst := filepath.Join(ws.Dir, "targets", filepath.FromSlash(path))
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	if err := atomicfile.Write(dst, data, 0o644); err != nil {
		return err
	}
	h := sha256.Sum256(data)
	staged.Signed.Targets[path] = &metadata.TargetFiles{Length: int64(len(data)), Hashes: metadata.Hashes{"sha256": h[:]}, Path: path}
	return nil
}

// LogTargetsMetadata records a published N.targets.json in the log and
// writes its bundle next to it (out/metadata/N.targets.json.sigstore.json),
// so auditors can tell every signed targets version was announced.
func (ws *Workspace) LogTargetsMetadata(ctx context.Context, rekorURL, out string, version int64) (*Logged, error) {
	key, pub, err := ws.ReleaseKey()
	if err != nil {
		return nil, err
	}
	name := fmt.Sprintf("%d.targets.json", version)
	b, err := os.ReadFile(filepath.Join(out, "metadata", name))
	if err != nil {
		return nil, err
	}
	d := sha256.Sum256(b)
	sig, err := signDigest(key, d[:])
	if err != nil {
		return nil, err
	}
	e, err := transparency.Upload(ctx, rekorURL, d[:], sig, pub)
	if err != nil {
		return nil, fmt.Errorf("log %s: %w", name, err)
	}
	bundle, err := transparency.MarshalBundle(d[:], sig, pub, e)
	if err != nil {
		return nil, err
	}
	if err := atomicfile.Write(filepath.Join(out, "metadata", name+BundleSuffix), bundle, 0o644); err != nil {
		return nil, err
	}
	return &Logged{Path: "metadata/" + name, SHA256: hex.EncodeToString(d[:]), LogIndex: e.LogIndex, Bundle: "metadata/" + name + BundleSuffix}, nil
}
