package director

import (
	"bytes"
	"context"
	"crypto"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/fwctl/fwctl/manifests"
	"github.com/fwctl/fwctl/repo/blob"
	"github.com/fwctl/fwctl/repo/layout"
	"github.com/fwctl/fwctl/signer"
)

// InitOptions make a new director root.
type InitOptions struct {
	// Out is the directory for root.key, online.key (unless OnlineKey is
	// set) and 1.root.json.
	Out string
	// Algorithm of the new keys (signer.Ed25519 default, or
	// signer.ECDSAP256).
	Algorithm string
	// RootPassphrase and OnlinePassphrase encrypt the key files (nil:
	// plaintext, only on an explicit user request).
	RootPassphrase, OnlinePassphrase []byte
	// OnlineKey, when set, is an existing online key (a PKCS#11 or TPM key,
	// or a key file) to authorise instead of generating online.key.
	OnlineKey crypto.Signer
	// Expires is the root's lifetime (default one year).
	Expires time.Duration
	Now     func() time.Time
}

// InitResult names what Init wrote.
type InitResult struct {
	Root        string `json:"root"`
	RootKey     string `json:"root_key"`
	RootKeyID   string `json:"root_keyid"`
	OnlineKey   string `json:"online_key,omitempty"`
	OnlineKeyID string `json:"online_keyid"`
	Expires     string `json:"expires"`
}

// Init creates a director root: an offline root key (root.key), an online
// key for targets, snapshot and timestamp (online.key, or opt.OnlineKey)
// and 1.root.json signed by the root key. It refuses to overwrite an
// existing 1.root.json.
func Init(opt InitOptions) (*InitResult, error) {
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.Expires <= 0 {
		opt.Expires = 365 * 24 * time.Hour
	}
	if err := os.MkdirAll(opt.Out, 0o700); err != nil {
		return nil, err
	}
	res := &InitResult{Root: filepath.Join(opt.Out, "1.root.json"), RootKey: filepath.Join(opt.Out, "root.key")}
	if _, err := os.Stat(res.Root); err == nil {
		return nil, fmt.Errorf("%s exists: a director root is made once (rotate its keys with 'fwrepo director rotate')", res.Root)
	}
	rootKey, err := signer.Generate(opt.Algorithm)
	if err != nil {
		return nil, err
	}
	if res.RootKeyID, err = signer.Save(res.RootKey, "director-root", rootKey, opt.RootPassphrase); err != nil {
		return nil, err
	}
	online := opt.OnlineKey
	if online == nil {
		if online, err = signer.Generate(opt.Algorithm); err != nil {
			return nil, err
		}
		res.OnlineKey = filepath.Join(opt.Out, "online.key")
		if _, err = signer.Save(res.OnlineKey, "director-online", online, opt.OnlinePassphrase); err != nil {
			return nil, err
		}
	}
	exp := opt.Now().UTC().Add(opt.Expires).Truncate(time.Second)
	root := metadata.Root(exp)
	root.Signed.ConsistentSnapshot = true
	rk, _, err := signer.TUFKey(rootKey.Public())
	if err != nil {
		return nil, err
	}
	ok, okID, err := signer.TUFKey(online.Public())
	if err != nil {
		return nil, err
	}
	res.OnlineKeyID = okID
	if err := root.Signed.AddKey(rk, metadata.ROOT); err != nil {
		return nil, err
	}
	for _, role := range []string{metadata.TARGETS, metadata.SNAPSHOT, metadata.TIMESTAMP} {
		if err := root.Signed.AddKey(ok, role); err != nil {
			return nil, err
		}
	}
	if _, err := root.Sign(signer.TUF(rootKey)); err != nil {
		return nil, fmt.Errorf("sign director root: %w", err)
	}
	b, err := root.ToBytes(true)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(res.Root, b, 0o644); err != nil {
		return nil, err
	}
	res.Expires = exp.Format(time.RFC3339)
	return res, nil
}

// PublishRoot writes director root metadata b into the store as
// director/metadata/N.root.json. A root already there with the same bytes
// is fine; different bytes under the same version are refused (a
// published name is never rewritten). Version N > 1 must follow from the
// store's N-1 (signed by its root keys and its own).
func PublishRoot(ctx context.Context, st blob.Store, b []byte) (int64, error) {
	r, err := metadata.Root().FromBytes(b)
	if err != nil {
		return 0, fmt.Errorf("director root: %w", err)
	}
	v := r.Signed.Version
	name := manifests.DirectorRoot + "/" + strconv.FormatInt(v, 10) + ".root.json"
	cur, err := blob.ReadLimited(ctx, st, name, layout.MaxRootLength)
	switch {
	case err == nil && bytes.Equal(cur, b):
		return v, nil
	case err == nil:
		return 0, fmt.Errorf("%s in %s holds a different director root v%d: refusing to rewrite a published root", name, st, v)
	case !errors.Is(err, blob.ErrNotExist):
		return 0, err
	}
	if v == 1 {
		if _, err := selfSigned(b); err != nil {
			return 0, err
		}
	} else {
		prevName := manifests.DirectorRoot + "/" + strconv.FormatInt(v-1, 10) + ".root.json"
		pb, err := blob.ReadLimited(ctx, st, prevName, layout.MaxRootLength)
		if err != nil {
			return 0, fmt.Errorf("director root v%d needs v%d in the store first: %w", v, v-1, err)
		}
		prev, err := metadata.Root().FromBytes(pb)
		if err != nil {
			return 0, err
		}
		if _, err := next(prev, b); err != nil {
			return 0, err
		}
	}
	return v, st.Put(ctx, name, bytes.NewReader(b), int64(len(b)))
}

func selfSigned(b []byte) (*metadata.Metadata[metadata.RootType], error) {
	if err := manifests.RejectDuplicateKeys(b); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrRoot, err)
	}
	r, err := metadata.Root().FromBytes(b)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrRoot, err)
	}
	if err := r.VerifyDelegate(metadata.ROOT, r); err != nil {
		return nil, fmt.Errorf("%w: director root v%d is not signed by its own root keys: %w", ErrRoot, r.Signed.Version, err)
	}
	return r, nil
}

func next(cur *metadata.Metadata[metadata.RootType], b []byte) (*metadata.Metadata[metadata.RootType], error) {
	n, err := selfSigned(b)
	if err != nil {
		return nil, err
	}
	if n.Signed.Version != cur.Signed.Version+1 {
		return nil, fmt.Errorf("%w: director root v%d follows v%d", ErrRoot, n.Signed.Version, cur.Signed.Version)
	}
	if err := cur.VerifyDelegate(metadata.ROOT, n); err != nil {
		return nil, fmt.Errorf("%w: director root v%d is not signed by v%d's root keys: %w", ErrRoot, n.Signed.Version, cur.Signed.Version, err)
	}
	return n, nil
}

// verifyChain verifies the store's director root chain from trusted (or
// the store's 1.root.json) and returns the newest root.
func verifyChain(ctx context.Context, st blob.Store, trusted []byte) (*metadata.Metadata[metadata.RootType], error) {
	if len(trusted) == 0 {
		b, err := blob.ReadLimited(ctx, st, manifests.DirectorRoot+"/1.root.json", layout.MaxRootLength)
		if err != nil {
			return nil, fmt.Errorf("%w: %w: publish it with 'fwrepo director init --dir REPO' (or 'fwrepo director publish-root')", ErrRoot, err)
		}
		trusted = b
	}
	cur, err := selfSigned(trusted)
	if err != nil {
		return nil, err
	}
	return verifyChainFrom(ctx, st, cur)
}

// verifyChainFrom follows the store's director root chain from the
// verified root cur and returns the newest root.
func verifyChainFrom(ctx context.Context, st blob.Store, cur *metadata.Metadata[metadata.RootType]) (*metadata.Metadata[metadata.RootType], error) {
	for {
		name := manifests.DirectorRoot + "/" + strconv.FormatInt(cur.Signed.Version+1, 10) + ".root.json"
		b, err := blob.ReadLimited(ctx, st, name, layout.MaxRootLength)
		if errors.Is(err, blob.ErrNotExist) {
			return cur, nil
		}
		if err != nil {
			return nil, err
		}
		if cur, err = next(cur, b); err != nil {
			return nil, err
		}
	}
}
