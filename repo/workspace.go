// Package repo owns the TUF repository of firmware releases: creating a
// signing workspace, recording targets with their firmware metadata, signing
// and publishing metadata with consistent snapshots, verifying a published
// repository the way a device would, and re-signing the timestamp online.
// Metadata is built and signed with go-tuf v2's metadata package.
//
// A workspace is a directory:
//
//	fwctl.json      settings (expiry per role)
//	keys/           one encrypted key file per key, named ROLE-KEYID.json
//	metadata/       the last published, signed metadata (N.root.json, ...)
//	staged/         targets.json with changes not yet published
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
	"github.com/fwctl/fwctl/signer"
)

// Top-level role names.
var Roles = []string{metadata.ROOT, metadata.TARGETS, metadata.SNAPSHOT, metadata.TIMESTAMP}

// Settings are the workspace's persistent settings.
type Settings struct {
	Format int                 `json:"format"`
	Expiry map[string]Duration `json:"expiry"`
}

// Duration is a time.Duration that reads and writes as "24h".
type Duration time.Duration

// MarshalJSON implements json.Marshaler.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON implements json.Unmarshaler.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := ParseDuration(s)
	*d = Duration(v)
	return err
}

// ParseDuration parses a Go duration, also accepting a day suffix ("30d").
func ParseDuration(s string) (time.Duration, error) {
	if n, ok := strings.CutSuffix(s, "d"); ok {
		var days int
		if _, err := fmt.Sscanf(n, "%d", &days); err != nil || days <= 0 {
			return 0, fmt.Errorf("invalid duration %q: want e.g. 24h or 30d", s)
		}
		return time.Duration(days) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("invalid duration %q: want e.g. 24h or 30d", s)
	}
	return d, nil
}

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
}

// InitResult reports the keys created by Init.
type InitResult struct {
	Dir  string              `json:"dir"`
	Keys map[string][]string `json:"keys"` // role -> key IDs
}

// Init creates a new workspace in dir, which must not exist or be empty.
func Init(dir string, opt InitOptions) (*InitResult, error) {
	if opt.RootKeys <= 0 {
		opt.RootKeys = 1
	}
	if opt.RootThreshold <= 0 {
		opt.RootThreshold = 1
	}
	if opt.RootThreshold > opt.RootKeys {
		return nil, fmt.Errorf("root threshold %d is larger than the number of root keys %d", opt.RootThreshold, opt.RootKeys)
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
	root := metadata.Root(now.Add(ws.expiry(metadata.ROOT)))
	res := &InitResult{Dir: dir, Keys: map[string][]string{}}
	signers := map[string][]crypto.Signer{}
	for _, role := range Roles {
		n := 1
		if role == metadata.ROOT {
			n = opt.RootKeys
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
	targets := metadata.Targets(now.Add(ws.expiry(metadata.TARGETS)))
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

// signers loads the private keys of role that the current root authorises.
func (ws *Workspace) signers(role string, root *metadata.Metadata[metadata.RootType]) ([]crypto.Signer, error) {
	files, err := ws.keyFiles(role)
	if err != nil {
		return nil, err
	}
	allowed := map[string]bool{}
	for _, id := range root.Signed.Roles[role].KeyIDs {
		allowed[id] = true
	}
	var out []crypto.Signer
	for _, f := range files {
		kf, err := signer.ReadKeyFile(f)
		if err != nil {
			return nil, err
		}
		if !allowed[kf.KeyID] {
			continue
		}
		s, _, err := signer.Load(f, ws.Passphrase)
		if err != nil {
			return nil, fmt.Errorf("%s key: %w", role, err)
		}
		out = append(out, s)
	}
	if len(out) < root.Signed.Roles[role].Threshold {
		return nil, fmt.Errorf("%s role needs %d signatures but only %d of its keys are in %s",
			role, root.Signed.Roles[role].Threshold, len(out), filepath.Join(ws.Dir, "keys"))
	}
	return out, nil
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
