package tufclient

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// sim is a TUF repository built with go-tuf's metadata package and served
// on 127.0.0.1: the same bytes feed our client and go-tuf's updater. Tests
// change its metadata, call publish, and can make the server hostile with
// hook.
type sim struct {
	t          testing.TB
	now        time.Time
	root       *metadata.Metadata[metadata.RootType]
	timestamp  *metadata.Metadata[metadata.TimestampType]
	snapshot   *metadata.Metadata[metadata.SnapshotType]
	targets    *metadata.Metadata[metadata.TargetsType]
	delegated  map[string]*metadata.Metadata[metadata.TargetsType]
	signers    map[string][]signature.Signer // role name -> keys that sign it
	rootSigner []signature.Signer            // extra signers of the next root (old keys on rotation)
	files      map[string][]byte             // name under targets/ -> content

	mu       sync.Mutex
	served   map[string][]byte // URL path under /metadata/ or /targets/ -> bytes
	hook     func(w http.ResponseWriter, r *http.Request) bool
	requests []string
	srv      *httptest.Server
	// snapshotHashes and timestampHashes add length and hashes to meta.
	metaHashes bool
}

func newSim(t testing.TB) *sim {
	now := time.Now().UTC().Truncate(time.Second)
	s := &sim{t: t, now: now, delegated: map[string]*metadata.Metadata[metadata.TargetsType]{},
		signers: map[string][]signature.Signer{}, files: map[string][]byte{}, served: map[string][]byte{}}
	exp := now.Add(7 * 24 * time.Hour)
	s.root = metadata.Root(exp)
	s.timestamp = metadata.Timestamp(exp)
	s.snapshot = metadata.Snapshot(exp)
	s.targets = metadata.Targets(exp)
	for _, role := range []string{metadata.ROOT, metadata.TIMESTAMP, metadata.SNAPSHOT, metadata.TARGETS} {
		s.addRootKey(role, "ed25519")
	}
	s.signRoot()
	s.publish()
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.srv.Close)
	return s
}

// newSigner makes a key of kind ed25519, ecdsa or rsa.
func newSigner(t testing.TB, kind string) (signature.Signer, *metadata.Key) {
	var priv crypto.PrivateKey
	var pub crypto.PublicKey
	switch kind {
	case "ed25519":
		p, k, _ := ed25519.GenerateKey(rand.Reader)
		pub, priv = p, k
	case "ecdsa":
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		pub, priv = k.Public(), k
	case "rsa":
		k, _ := rsa.GenerateKey(rand.Reader, 2048)
		pub, priv = k.Public(), k
	}
	sg, err := signature.LoadSigner(priv, crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	if kind == "rsa" {
		sg, err = signature.LoadRSAPSSSigner(priv.(*rsa.PrivateKey), crypto.SHA256, nil)
		if err != nil {
			t.Fatal(err)
		}
	}
	key, err := metadata.KeyFromPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return sg, key
}

// addRootKey adds a new key to a top-level role in root metadata.
func (s *sim) addRootKey(role, kind string) signature.Signer {
	sg, key := newSigner(s.t, kind)
	if err := s.root.Signed.AddKey(key, role); err != nil {
		s.t.Fatal(err)
	}
	s.signers[role] = append(s.signers[role], sg)
	return sg
}

// replaceRootKeys swaps a top-level role's keys for one new key.
func (s *sim) replaceRootKeys(role string) {
	old := s.signers[role]
	if role == metadata.ROOT {
		s.rootSigner = old
	}
	for _, id := range append([]string(nil), s.root.Signed.Roles[role].KeyIDs...) {
		if err := s.root.Signed.RevokeKey(id, role); err != nil {
			s.t.Fatal(err)
		}
	}
	s.signers[role] = nil
	s.addRootKey(role, "ed25519")
}

func (s *sim) sign(md interface {
	Sign(signature.Signer) (*metadata.Signature, error)
	ClearSignatures()
}, role string) {
	md.ClearSignatures()
	for _, sg := range s.signers[role] {
		if _, err := md.Sign(sg); err != nil {
			s.t.Fatal(err)
		}
	}
}

// signRoot signs the current root (with the previous root keys too, when
// they were just replaced) and serves it as N.root.json.
func (s *sim) signRoot() {
	s.sign(s.root, metadata.ROOT)
	for _, sg := range s.rootSigner {
		if slices.Contains(s.signers[metadata.ROOT], sg) {
			continue
		}
		if _, err := s.root.Sign(sg); err != nil {
			s.t.Fatal(err)
		}
	}
	s.rootSigner = nil
	b, err := s.root.ToBytes(false)
	if err != nil {
		s.t.Fatal(err)
	}
	s.put(fmt.Sprintf("metadata/%d.root.json", s.root.Signed.Version), b)
}

// newRoot publishes root version N+1 after change.
func (s *sim) newRoot(change func(r *metadata.RootType)) {
	s.rootSigner = s.signers[metadata.ROOT]
	s.root.Signed.Version++
	if change != nil {
		change(&s.root.Signed)
	}
	s.signRoot()
}

func (s *sim) rootBytes(version int64) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.served[fmt.Sprintf("metadata/%d.root.json", version)]
}

func (s *sim) put(name string, b []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.served[name] = b
}

// addTarget adds a target to role (targets or a delegated role).
func (s *sim) addTarget(role, path string, content []byte, hashes ...string) {
	if len(hashes) == 0 {
		hashes = []string{"sha256"}
	}
	tf, err := metadata.TargetFile().FromBytes(path, content, hashes...)
	if err != nil {
		s.t.Fatal(err)
	}
	md := s.targets
	if role != metadata.TARGETS {
		md = s.delegated[role]
	}
	md.Signed.Targets[path] = tf
	dir, base := "", path
	if i := strings.LastIndex(path, "/"); i >= 0 {
		dir, base = path[:i+1], path[i+1:]
	}
	s.files[path] = content
	for _, h := range tf.Hashes {
		s.files[dir+h.String()+"."+base] = content
	}
}

// delegate adds role to delegator's delegations with a new key.
func (s *sim) delegate(delegator string, r metadata.DelegatedRole) signature.Signer {
	sg, key := newSigner(s.t, "ed25519")
	md := s.targets
	if delegator != metadata.TARGETS {
		md = s.delegated[delegator]
	}
	if md.Signed.Delegations == nil {
		md.Signed.Delegations = &metadata.Delegations{Keys: map[string]*metadata.Key{}, Roles: []metadata.DelegatedRole{}}
	}
	id, _ := key.ID()
	md.Signed.Delegations.Keys[id] = key
	r.KeyIDs = []string{id}
	if r.Threshold == 0 {
		r.Threshold = 1
	}
	md.Signed.Delegations.Roles = append(md.Signed.Delegations.Roles, r)
	if s.delegated[r.Name] == nil {
		s.delegated[r.Name] = metadata.Targets(s.now.Add(7 * 24 * time.Hour))
		s.signers[r.Name] = []signature.Signer{sg}
	}
	return sg
}

// publish signs targets, delegated roles, snapshot and timestamp as they
// are now and serves them (versions as set by the test).
func (s *sim) publish() {
	consistent := s.root.Signed.ConsistentSnapshot
	meta := func(b []byte, v int64) *metadata.MetaFiles {
		m := metadata.MetaFile(v)
		if s.metaHashes {
			m.Length = int64(len(b))
			h, _ := metadata.TargetFile().FromBytes("x", b, "sha256")
			m.Hashes = h.Hashes
		}
		return m
	}
	serveRole := func(name string, v int64, b []byte) {
		s.put("metadata/"+name+".json", b)
		if consistent {
			s.put(fmt.Sprintf("metadata/%d.%s.json", v, name), b)
		}
	}
	for name, md := range s.delegated {
		s.sign(md, name)
		b, _ := md.ToBytes(false)
		serveRole(name, md.Signed.Version, b)
		s.snapshot.Signed.Meta[name+".json"] = meta(b, md.Signed.Version)
	}
	s.sign(s.targets, metadata.TARGETS)
	b, _ := s.targets.ToBytes(false)
	serveRole("targets", s.targets.Signed.Version, b)
	s.snapshot.Signed.Meta["targets.json"] = meta(b, s.targets.Signed.Version)
	s.sign(s.snapshot, metadata.SNAPSHOT)
	b, _ = s.snapshot.ToBytes(false)
	serveRole("snapshot", s.snapshot.Signed.Version, b)
	s.timestamp.Signed.Meta["snapshot.json"] = meta(b, s.snapshot.Signed.Version)
	s.sign(s.timestamp, metadata.TIMESTAMP)
	b, _ = s.timestamp.ToBytes(false)
	s.put("metadata/timestamp.json", b)
	for name, content := range s.files {
		s.put("targets/"+name, content)
	}
}

// bump raises the version of timestamp and snapshot (and targets if
// asked) before a publish.
func (s *sim) bump(targets bool) {
	if targets {
		s.targets.Signed.Version++
	}
	s.snapshot.Signed.Version++
	s.timestamp.Signed.Version++
}

func (s *sim) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.requests = append(s.requests, r.RequestURI)
	hook := s.hook
	s.mu.Unlock()
	if hook != nil && hook(w, r) {
		return
	}
	s.mu.Lock()
	b, ok := s.served[strings.TrimPrefix(r.URL.Path, "/")]
	s.mu.Unlock()
	if !ok {
		http.NotFound(w, r)
		return
	}
	w.Write(b)
}

// client returns our client for the simulator, with metadata in dir.
func (s *sim) client(dir string) *Client {
	c := New(s.srv.URL, dir)
	c.RefTime = s.now
	c.Retry = Retry{Attempts: 1}
	return c
}
