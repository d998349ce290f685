// Package repo owns the signing workspace of a TUF repository of firmware
// releases: keys, roles, delegations, targets with their firmware
// metadata, deltas, the offline signing ceremony, key rotation, and
// Workspace.Release, which owns the whole publish order (log to Rekor,
// sign and write with consistent snapshots, log the targets version,
// upload, timestamp last). Metadata is built and signed with go-tuf v2's
// metadata package.
//
// Verifying a published repository is repo/verify's, the naming rule
// repo/layout's, uploading repo/upload's; fwrepo's online roles
// (repo/online) never import this package.
//
// A workspace is a directory:
//
//	fwctl.json      settings (expiry per role)
//	keys/           one encrypted key file per key, named ROLE-KEYID.json, and
//	                ROLE-KEYID.ref for keys named by URI (PKCS#11, files elsewhere)
//	pending/        the next root and targets versions while they collect
//	                signatures (the offline ceremony)
//	metadata/       the last published, signed metadata (N.root.json, ...)
//	staged/         targets.json (and delegated/ROLE.json) with changes not yet published
//	targets/        copies of the target files, by target path
//
// The workspace never publishes a half-written repository: new files are
// written under names that nothing references yet, and timestamp.json, the
// entry point, is replaced last and atomically.
package repo

import (
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/fwctl/fwctl/internal/atomicfile"
	"github.com/fwctl/fwctl/internal/duration"
	"github.com/fwctl/fwctl/signer"
)

// Top-level role names.
var Roles = []string{metadata.ROOT, metadata.TARGETS, metadata.SNAPSHOT, metadata.TIMESTAMP}

// Settings are the workspace's persistent settings.
type Settings struct {
	Format int                 `json:"format"`
	Expiry map[string]Duration `json:"expiry"`
}

// Duration is a time.Duration that reads and writes as "24h" (or "30d"):
// the one duration type of every config, see internal/duration.
type Duration = duration.Duration

// ParseDuration parses a Go duration, also accepting whole days ("30d"); it
// must be above zero (expiry).
func ParseDuration(s string) (time.Duration, error) { return duration.Positive(s) }

// DefaultExpiry is how long freshly signed metadata of each role stays valid.
var DefaultExpiry = map[string]time.Duration{
	metadata.ROOT:      365 * 24 * time.Hour,
	metadata.TARGETS:   90 * 24 * time.Hour,
	metadata.SNAPSHOT:  7 * 24 * time.Hour,
	metadata.TIMESTAMP: 24 * time.Hour,
}

// Workspace is an open signing workspace.
type Workspace struct {
	Dir        string
	Settings   Settings
	Passphrase func() ([]byte, error)
	Now        func() time.Time
}

// ErrNotWorkspace means the directory is not a fwctl workspace.
var ErrNotWorkspace = errors.New("not a fwctl workspace (no fwctl.json): run 'fwctl init DIR' first or pass --workspace")

// InitOptions configure a new workspace.
type InitOptions struct {
	Algorithm     string                   // signer.Ed25519 or signer.ECDSAP256
	RootKeys      int                      // number of root keys
	RootThreshold int                      // signatures needed on root
	Expiry        map[string]time.Duration // per role, defaults from DefaultExpiry
	// Passphrase encrypts the keys; nil with InsecurePlaintext stores them in
	// plaintext.
	Passphrase        func() ([]byte, error)
	InsecurePlaintext bool
	Now               func() time.Time
	// KeyURIs name existing keys per role instead of generating them:
	// file:PATH, pkcs11:token=…;object=…, or pub:PEMFILE for a key that lives
	// on another machine (it can only sign through the ceremony). For root,
	// RootKeys counts the keys to generate in addition.
	KeyURIs map[string][]string
	// PIN logs in to PKCS#11 tokens (default: $FWCTL_PKCS11_PIN or a prompt).
	PIN func() ([]byte, error)
}

// InitResult reports the keys created by Init.
type InitResult struct {
	Dir  string              `json:"dir"`
	Keys map[string][]string `json:"keys"` // role -> key IDs
}

// Init creates a new workspace in dir, which must not exist or be empty.
func Init(dir string, opt InitOptions) (*InitResult, error) {
	if opt.RootKeys <= 0 && len(opt.KeyURIs[metadata.ROOT]) == 0 {
		opt.RootKeys = 1
	}
	if opt.RootKeys < 0 {
		opt.RootKeys = 0
	}
	if opt.RootThreshold <= 0 {
		opt.RootThreshold = 1
	}
	if n := opt.RootKeys + len(opt.KeyURIs[metadata.ROOT]); opt.RootThreshold > n {
		return nil, fmt.Errorf("root threshold %d is larger than the number of root keys %d", opt.RootThreshold, n)
	}
	local := opt.RootKeys
	for _, u := range opt.KeyURIs[metadata.ROOT] {
		if !strings.HasPrefix(u, "pub:") {
			local++
		}
	}
	if local < opt.RootThreshold {
		return nil, fmt.Errorf("init: root version 1 needs %d signatures but only %d root keys would be here: create the workspace where a threshold of root keys is available, then rotate keys out to other machines", opt.RootThreshold, local)
	}
	for r := range opt.KeyURIs {
		if !isTopLevel(r) {
			return nil, fmt.Errorf("init: key for unknown role %q: use root, targets, snapshot or timestamp", r)
		}
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if entries, err := os.ReadDir(dir); err == nil && len(entries) > 0 {
		return nil, fmt.Errorf("init %s: directory is not empty; choose a new directory", dir)
	}
	var pw []byte
	if !opt.InsecurePlaintext {
		if opt.Passphrase == nil {
			return nil, errors.New("init: a passphrase is required to encrypt keys (or ask for --insecure-plaintext-keys)")
		}
		var err error
		if pw, err = opt.Passphrase(); err != nil {
			return nil, err
		}
	}
	for _, d := range []string{"keys", "metadata", "staged", "targets"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			return nil, fmt.Errorf("init: %w", err)
		}
	}
	st := Settings{Format: 1, Expiry: map[string]Duration{}}
	for r, d := range DefaultExpiry {
		st.Expiry[r] = Duration(d)
	}
	for r, d := range opt.Expiry {
		st.Expiry[r] = Duration(d)
	}
	ws := &Workspace{Dir: dir, Settings: st, Now: opt.Now, Passphrase: func() ([]byte, error) { return pw, nil }}
	if err := ws.saveSettings(); err != nil {
		return nil, err
	}

	now := opt.Now().UTC()
	root := metadata.Root(expires(now, ws.expiry(metadata.ROOT)))
	res := &InitResult{Dir: dir, Keys: map[string][]string{}}
	signers := map[string][]crypto.Signer{}
	keyOpts := signer.Options{Passphrase: ws.Passphrase, PIN: opt.PIN}
	for _, role := range Roles {
		for _, uri := range opt.KeyURIs[role] {
			key, id, err := ResolvePublic(uri, keyOpts)
			if err != nil {
				return nil, fmt.Errorf("init: %s key %s: %w", role, uri, err)
			}
			if err := root.Signed.AddKey(key, role); err != nil {
				return nil, err
			}
			if err := ws.addKeyRef(role, id, uri); err != nil {
				return nil, err
			}
			res.Keys[role] = append(res.Keys[role], id)
			if role == metadata.ROOT && !strings.HasPrefix(uri, "pub:") {
				s, err := signer.Open(uri, keyOpts)
				if err != nil {
					return nil, fmt.Errorf("init: root key %s: %w", uri, err)
				}
				defer signer.Close(s)
				signers[role] = append(signers[role], s)
			}
		}
		n := 1
		if role == metadata.ROOT {
			n = opt.RootKeys
		} else if len(opt.KeyURIs[role]) > 0 {
			n = 0
		}
		for range n {
			k, err := signer.Generate(opt.Algorithm)
			if err != nil {
				return nil, err
			}
			key, id, err := signer.TUFKey(k.Public())
			if err != nil {
				return nil, err
			}
			if _, err := signer.Save(filepath.Join(dir, "keys", role+"-"+id[:16]+".json"), role, k, pw); err != nil {
				return nil, err
			}
			if err := root.Signed.AddKey(key, role); err != nil {
				return nil, err
			}
			res.Keys[role] = append(res.Keys[role], id)
			signers[role] = append(signers[role], k)
		}
	}
	root.Signed.Roles[metadata.ROOT].Threshold = opt.RootThreshold
	if len(signers[metadata.ROOT]) < opt.RootThreshold {
		return nil, fmt.Errorf("init: root version 1 needs %d signatures but only %d root keys are reachable here: create the workspace where a threshold of root keys is available (plug in the token, copy the encrypted key files)", opt.RootThreshold, len(signers[metadata.ROOT]))
	}
	for _, k := range signers[metadata.ROOT] {
		if _, err := root.Sign(signer.TUF(k)); err != nil {
			return nil, fmt.Errorf("sign root: %w", err)
		}
	}
	if err := writeMetadata(filepath.Join(dir, "metadata", "1.root.json"), root); err != nil {
		return nil, err
	}
	if err := writeMetadata(filepath.Join(dir, "metadata", "root.json"), root); err != nil {
		return nil, err
	}
	targets := metadata.Targets(expires(now, ws.expiry(metadata.TARGETS)))
	targets.Signed.Version = 0 // the first publish makes it version 1
	if err := writeMetadata(ws.stagedTargetsPath(), targets); err != nil {
		return nil, err
	}
	return res, nil
}

// Open opens an existing workspace.
func Open(dir string, passphrase func() ([]byte, error)) (*Workspace, error) {
	b, err := os.ReadFile(filepath.Join(dir, "fwctl.json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w", dir, ErrNotWorkspace)
	}
	if err != nil {
		return nil, err
	}
	ws := &Workspace{Dir: dir, Passphrase: passphrase, Now: time.Now}
	if err := json.Unmarshal(b, &ws.Settings); err != nil {
		return nil, fmt.Errorf("%s/fwctl.json: %w", dir, err)
	}
	return ws, nil
}

func (ws *Workspace) saveSettings() error {
	b, err := json.MarshalIndent(ws.Settings, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(ws.Dir, "fwctl.json"), append(b, '\n'), 0o644)
}

// CheckWindow is how long before a role's metadata expires that
// 'fwctl check-expiry' warns by default: a quarter of the role's lifetime
// (delegated roles: the targets role's), at most 30 days. With the
// default lifetimes that is 30 days for root, 22.5 for targets, 42 hours
// for snapshot and 6 hours for timestamp, so a repository published
// just now passes, and one whose timestamp nobody re-signed fails well
// before devices refuse it. ws may be nil (a published repository
// checked without its workspace: the default lifetimes).
func CheckWindow(ws *Workspace, role string) time.Duration {
	life, ok := DefaultExpiry[role]
	if !ok {
		role, life = metadata.TARGETS, DefaultExpiry[metadata.TARGETS]
	}
	if ws != nil {
		life = ws.expiry(role)
	}
	return min(life/4, 30*24*time.Hour)
}

func (ws *Workspace) expiry(role string) time.Duration {
	if d, ok := ws.Settings.Expiry[role]; ok && d > 0 {
		return time.Duration(d)
	}
	return DefaultExpiry[role]
}

func (ws *Workspace) stagedTargetsPath() string {
	return filepath.Join(ws.Dir, "staged", "targets.json")
}

// keyFiles lists the key files of role.
func (ws *Workspace) keyFiles(role string) ([]string, error) {
	files, err := filepath.Glob(filepath.Join(ws.Dir, "keys", role+"-*.json"))
	if err != nil {
		return nil, err
	}
	sort.Strings(files)
	return files, nil
}

// Root returns the current signed root.
func (ws *Workspace) Root() (*metadata.Metadata[metadata.RootType], error) {
	return metadata.Root().FromFile(filepath.Join(ws.Dir, "metadata", "root.json"))
}

// stagedTargets returns the targets metadata to edit: the staged copy.
func (ws *Workspace) stagedTargets() (*metadata.Metadata[metadata.TargetsType], error) {
	return metadata.Targets().FromFile(ws.stagedTargetsPath())
}

// writeMetadata writes md atomically in canonical, indented form.
func writeMetadata[T metadata.Roles](path string, md *metadata.Metadata[T]) error {
	b, err := md.ToBytes(true)
	if err != nil {
		return fmt.Errorf("encode %s: %w", filepath.Base(path), err)
	}
	return atomicfile.Write(path, b, 0o644)
}
