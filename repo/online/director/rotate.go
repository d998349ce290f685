package director

import (
	"bytes"
	"context"
	"crypto"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/fwctl/fwctl/manifests"
	"github.com/fwctl/fwctl/repo/blob"
	"github.com/fwctl/fwctl/signer"
)

// ErrRotation means a rotation was refused before anything was written:
// a threshold is not met, a key is named that is not a root key, the new
// root would leave a role without enough keys.
var ErrRotation = errors.New("director root rotation refused")

// onlineRoles are the roles the online key signs alone.
var onlineRoles = []string{metadata.TARGETS, metadata.SNAPSHOT, metadata.TIMESTAMP}

// Rotation is one change of the director root: version N+1 of the store's
// newest root N, with root keys added or revoked, a new root threshold, a
// new online key, or (none of these) only a fresh expiry.
type Rotation struct {
	// Signers are root keys that sign N+1: N's root keys (at least N's
	// root threshold of them, revoked ones included) and N+1's (at least
	// its threshold: TUF's rule that both versions' keys sign).
	Signers []crypto.Signer
	// AddRootKeys are authorised as root keys in N+1 (they must also be
	// among Signers when N+1's threshold needs them).
	AddRootKeys []crypto.PublicKey
	// RevokeRootKeys are key IDs (or unique prefixes of at least 8 hex
	// digits) of N's root keys that N+1 drops.
	RevokeRootKeys []string
	// RootThreshold, when > 0, is N+1's root threshold (default: N's).
	RootThreshold int
	// Online, when set, is the new online key for targets, snapshot and
	// timestamp; it replaces N's. Every device's metadata is then signed
	// again with it and published (new versions, timestamp last).
	Online crypto.Signer
	// OnlinePublic, instead of Online, names a new online key whose
	// private half is elsewhere (on fwrepo's server, when the root keys
	// sign on an offline machine): no device is re-signed here; Refresh
	// with that key (fwrepo director refresh, or fwrepo serve) does it.
	OnlinePublic crypto.PublicKey
	// Expires is N+1's lifetime (default one year).
	Expires time.Duration
	// Out, when set, is a directory that also receives N+1.root.json (the
	// key directory 'fwrepo director init' made).
	Out string
}

// RotateResult says what Rotate published.
type RotateResult struct {
	Version        int64    `json:"version"`
	Root           string   `json:"root,omitempty"` // N+1.root.json in Rotation.Out
	Expires        string   `json:"expires"`
	RootKeyIDs     []string `json:"root_keyids"`
	RootThreshold  int      `json:"root_threshold"`
	AddedRootKeys  []string `json:"added_root_keys,omitempty"`
	RevokedRootKey []string `json:"revoked_root_keys,omitempty"`
	OnlineKeyID    string   `json:"online_keyid"`
	OldOnlineKeyID string   `json:"old_online_keyid,omitempty"` // set when the online key changed
	// Devices re-signed under the new online key.
	Resigned int `json:"resigned_devices"`
}

// Rotate makes director root version N+1 from the newest root N of the
// chain in opt.Store (verified from opt.TrustedRoot or the store's
// 1.root.json), signs it with rot.Signers, refuses unless both N's and
// N+1's root thresholds are met, and publishes it as N+1.root.json. With
// rot.Online it then opens the director with the new online key (opt's
// lifetimes, workers, log and clock; opt's KeyURI and Signer are ignored)
// and re-signs every device's metadata (Resign). Nothing is written
// before all checks pass; a failure during the re-sign leaves the root
// published, and Resign (or fwrepo serve's Refresh with the new key)
// finishes it.
func Rotate(ctx context.Context, opt Options, rot Rotation) (*RotateResult, error) {
	if opt.Store == nil {
		return nil, errors.New("director: no store")
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if rot.Expires <= 0 {
		rot.Expires = 365 * 24 * time.Hour
	}
	cur, err := verifyChain(ctx, opt.Store, opt.TrustedRoot)
	if err != nil {
		return nil, err
	}
	refuse := func(format string, args ...any) (*RotateResult, error) {
		return nil, fmt.Errorf("%w: %s", ErrRotation, fmt.Sprintf(format, args...))
	}
	cb, err := cur.ToBytes(false)
	if err != nil {
		return nil, err
	}
	nx, err := metadata.Root().FromBytes(cb)
	if err != nil {
		return nil, err
	}
	n := &nx.Signed
	n.Version = cur.Signed.Version + 1
	n.Expires = opt.Now().UTC().Add(rot.Expires).Truncate(time.Second)
	nx.ClearSignatures()
	res := &RotateResult{Version: n.Version, Expires: n.Expires.Format(time.RFC3339)}

	curRoot := cur.Signed.Roles[metadata.ROOT]
	for _, p := range rot.RevokeRootKeys {
		id, err := matchKeyID(curRoot.KeyIDs, p)
		if err != nil {
			return refuse("revoke root key %q: %v", p, err)
		}
		if slices.Contains(res.RevokedRootKey, id) {
			continue
		}
		if err := n.RevokeKey(id, metadata.ROOT); err != nil {
			return nil, err
		}
		res.RevokedRootKey = append(res.RevokedRootKey, id)
	}
	onlineIDs := cur.Signed.Roles[metadata.TIMESTAMP].KeyIDs
	for _, pub := range rot.AddRootKeys {
		k, id, err := signer.TUFKey(pub)
		if err != nil {
			return nil, err
		}
		if slices.Contains(n.Roles[metadata.ROOT].KeyIDs, id) {
			return refuse("key %s is already a root key of v%d", short(id), cur.Signed.Version)
		}
		if err := n.AddKey(k, metadata.ROOT); err != nil {
			return nil, err
		}
		res.AddedRootKeys = append(res.AddedRootKeys, id)
	}
	if rot.RootThreshold > 0 {
		n.Roles[metadata.ROOT].Threshold = rot.RootThreshold
	}
	newRoot := n.Roles[metadata.ROOT]
	if len(newRoot.KeyIDs) == 0 {
		return refuse("v%d would have no root keys", n.Version)
	}
	if newRoot.Threshold > len(newRoot.KeyIDs) {
		return refuse("v%d would have %d root keys but need %d signatures: add keys or lower --root-threshold", n.Version, len(newRoot.KeyIDs), newRoot.Threshold)
	}
	res.RootKeyIDs, res.RootThreshold = slices.Clone(newRoot.KeyIDs), newRoot.Threshold

	res.OnlineKeyID = onlineIDs[0]
	if rot.Online != nil && rot.OnlinePublic != nil {
		return refuse("a new online key is named twice (Online and OnlinePublic)")
	}
	onlinePub := rot.OnlinePublic
	if rot.Online != nil {
		onlinePub = rot.Online.Public()
	}
	if onlinePub != nil {
		k, id, err := signer.TUFKey(onlinePub)
		if err != nil {
			return nil, err
		}
		if slices.Contains(onlineIDs, id) {
			return refuse("key %s is already the online key of v%d", short(id), cur.Signed.Version)
		}
		for _, role := range onlineRoles {
			for _, old := range slices.Clone(n.Roles[role].KeyIDs) {
				if err := n.RevokeKey(old, role); err != nil {
					return nil, err
				}
			}
			if err := n.AddKey(k, role); err != nil {
				return nil, err
			}
			n.Roles[role].Threshold = 1
		}
		res.OldOnlineKeyID, res.OnlineKeyID = res.OnlineKeyID, id
	}
	for _, id := range newRoot.KeyIDs {
		for _, role := range onlineRoles {
			if slices.Contains(n.Roles[role].KeyIDs, id) {
				return refuse("key %s would be both a root key and the online key (the root keys stay offline)", short(id))
			}
		}
	}

	signed := map[string]bool{}
	for _, s := range rot.Signers {
		_, id, err := signer.TUFKey(s.Public())
		if err != nil {
			return nil, err
		}
		if signed[id] {
			continue
		}
		if !slices.Contains(curRoot.KeyIDs, id) && !slices.Contains(newRoot.KeyIDs, id) {
			return refuse("key %s is not a root key of v%d or v%d", short(id), cur.Signed.Version, n.Version)
		}
		if _, err := nx.Sign(signer.TUF(s)); err != nil {
			return nil, fmt.Errorf("sign director root v%d with %s: %w", n.Version, short(id), err)
		}
		signed[id] = true
	}
	for _, v := range []struct {
		version int64
		role    *metadata.Role
	}{{cur.Signed.Version, curRoot}, {n.Version, newRoot}} {
		have := 0
		for _, id := range v.role.KeyIDs {
			if signed[id] {
				have++
			}
		}
		if have < v.role.Threshold {
			return refuse("v%d must be signed by %d of v%d's root keys (%s), %d given: add --root-key",
				n.Version, v.role.Threshold, v.version, shortList(v.role.KeyIDs), have)
		}
	}
	b, err := nx.ToBytes(true)
	if err != nil {
		return nil, err
	}
	if _, err := next(cur, b); err != nil { // the check devices make
		return nil, err
	}
	if rot.Out != "" {
		res.Root = filepath.Join(rot.Out, strconv.FormatInt(n.Version, 10)+".root.json")
		if old, err := os.ReadFile(res.Root); err == nil && !bytes.Equal(old, b) {
			return nil, fmt.Errorf("%s exists with another root: refusing to overwrite it", res.Root)
		}
		if err := os.WriteFile(res.Root, b, 0o644); err != nil {
			return nil, err
		}
	}
	if _, err := PublishRoot(ctx, opt.Store, b); err != nil {
		return nil, err
	}
	if rot.Online == nil {
		return res, nil
	}
	opt.Signer, opt.KeyURI, opt.ReadOnly = rot.Online, "", false
	d, err := Open(ctx, opt)
	if err != nil {
		return res, fmt.Errorf("director root v%d is published, re-signing the devices failed (run 'fwrepo director refresh' with the new online key): %w", n.Version, err)
	}
	defer d.Close()
	if res.Resigned, err = d.Resign(ctx); err != nil {
		return res, fmt.Errorf("director root v%d is published, re-signing the devices failed (run 'fwrepo director refresh' with the new online key): %w", n.Version, err)
	}
	return res, nil
}

// Resign re-publishes, with the same assignment and new versions
// (targets, snapshot, then timestamp), every device whose published
// metadata is signed by another key than the director's: after an online
// key rotation. It returns how many it re-signed.
func (d *Director) Resign(ctx context.Context) (int, error) {
	ids, err := d.Devices(ctx)
	if err != nil {
		return 0, err
	}
	if err := d.preload(ctx, ids); err != nil {
		return 0, err
	}
	var jobs []job
	d.mu.Lock()
	for _, id := range ids {
		if dev := d.devices[id]; dev != nil && dev.version > 0 && dev.keyID != d.keyID {
			jobs = append(jobs, job{id: id, a: dev.assigned, keep: true})
		}
	}
	d.mu.Unlock()
	if len(jobs) == 0 {
		return 0, nil
	}
	return len(jobs), d.publish(ctx, jobs, true)
}

// checkKey re-reads the store's root chain when a root newer than d's is
// there, and refuses to sign when the newest no longer authorises d's
// key: a fwrepo serve still holding a rotated-out online key must not
// publish metadata devices refuse (d.mu held).
func (d *Director) checkKey(ctx context.Context) error {
	if d.root == nil { // made by hand in a test, without a root
		return nil
	}
	name := manifests.DirectorRoot + "/" + strconv.FormatInt(d.root.Signed.Version+1, 10) + ".root.json"
	if _, err := d.st.Stat(ctx, name); errors.Is(err, blob.ErrNotExist) {
		return nil
	} else if err != nil {
		return err
	}
	root, err := verifyChainFrom(ctx, d.st, d.root)
	if err != nil {
		return err
	}
	if err := keyAuthorised(root, d.keyID); err != nil {
		return fmt.Errorf("%w (the online key was rotated: restart with the new --director-key)", err)
	}
	d.root = root
	return nil
}

// keyAuthorised checks that root names keyID, alone (threshold 1), for
// targets, snapshot and timestamp.
func keyAuthorised(root *metadata.Metadata[metadata.RootType], keyID string) error {
	for _, role := range onlineRoles {
		if !slices.Contains(root.Signed.Roles[role].KeyIDs, keyID) {
			return fmt.Errorf("%w: key %s is not a %s key of director root v%d; use the online key 'fwrepo director init' or 'fwrepo director rotate' made",
				ErrKeyNotAuthorised, keyID, role, root.Signed.Version)
		}
		if root.Signed.Roles[role].Threshold != 1 {
			return fmt.Errorf("%w: director root v%d asks %d signatures for %s; the online director signs alone (threshold 1)",
				ErrKeyNotAuthorised, root.Signed.Version, root.Signed.Roles[role].Threshold, role)
		}
	}
	return nil
}

// matchKeyID finds the one key ID of ids that p names (whole, or a
// prefix of at least 8 hex digits).
func matchKeyID(ids []string, p string) (string, error) {
	p = strings.ToLower(p)
	var match []string
	for _, id := range ids {
		if id == p || (len(p) >= 8 && strings.HasPrefix(id, p)) {
			match = append(match, id)
		}
	}
	if len(match) != 1 {
		return "", fmt.Errorf("matches %d root keys (%s); give at least 8 hex digits of one", len(match), shortList(ids))
	}
	return match[0], nil
}

func short(id string) string {
	if len(id) > 16 {
		return id[:16]
	}
	return id
}

func shortList(ids []string) string {
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = short(id)
	}
	return strings.Join(s, ", ")
}
