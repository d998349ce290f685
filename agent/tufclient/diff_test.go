package tufclient

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/config"
	"github.com/theupdateframework/go-tuf/v2/metadata/updater"
)

// step is one refresh (and lookups and downloads) after change.
type step struct {
	change  func(s *sim)
	after   time.Duration // reference time after the simulator's start
	targets []string      // looked up and downloaded in order, in one session
	ok      bool          // our expected outcome
	// goTUF, when set, documents a go-tuf defect: go-tuf's outcome is the
	// opposite of ok on this step.
	goTUF string
}

// ours runs our client over dir; it returns the first error.
func ours(s *sim, dir string, st step) error {
	c := s.client(dir)
	c.RefTime = s.now.Add(st.after)
	root, err := os.ReadFile(filepath.Join(dir, "root.json"))
	if err != nil {
		return err
	}
	tr, err := c.Update(context.Background(), root)
	if err != nil {
		return err
	}
	for _, p := range st.targets {
		tf, err := tr.GetTargetInfo(p)
		if err != nil {
			return err
		}
		var buf bytes.Buffer
		if err := c.FetchTarget(context.Background(), tr, tf, &buf, nil); err != nil {
			return err
		}
	}
	return nil
}

// theirs runs go-tuf's updater over dir.
func theirs(s *sim, dir string, st step) error {
	root, err := os.ReadFile(filepath.Join(dir, "root.json"))
	if err != nil {
		return err
	}
	cfg, err := config.New(s.srv.URL+"/metadata", root)
	if err != nil {
		return err
	}
	cfg.LocalMetadataDir = dir
	cfg.LocalTargetsDir = filepath.Join(dir, "t")
	cfg.RemoteTargetsURL = s.srv.URL + "/targets"
	cfg.PrefixTargetsWithHash = true
	up, err := updater.New(cfg)
	if err != nil {
		return err
	}
	up.UnsafeSetRefTime(s.now.Add(st.after))
	if err := up.Refresh(); err != nil {
		return err
	}
	for _, p := range st.targets {
		tf, err := up.GetTargetInfo(p)
		if err != nil {
			return err
		}
		if _, _, err := up.DownloadTarget(tf, filepath.Join(cfg.LocalTargetsDir, "f"), ""); err != nil {
			return err
		}
	}
	return nil
}

// differential runs steps on one simulator with both clients, each with
// its own metadata directory kept across steps.
func differential(t *testing.T, setup func(s *sim), steps ...step) {
	t.Helper()
	s := newSim(t)
	if setup != nil {
		setup(s)
		s.publish()
	}
	dirs := [2]string{t.TempDir(), t.TempDir()}
	for _, d := range dirs {
		os.MkdirAll(filepath.Join(d, "t"), 0o755)
		os.WriteFile(filepath.Join(d, "root.json"), s.rootBytes(1), 0o644)
	}
	for i, st := range steps {
		if st.change != nil {
			st.change(s)
		}
		a, b := ours(s, dirs[0], st), theirs(s, dirs[1], st)
		if (a == nil) != st.ok {
			t.Errorf("step %d: our client: error %v, want ok=%v", i, a, st.ok)
		}
		goWant := st.ok
		if st.goTUF != "" {
			goWant = !st.ok
		}
		if (b == nil) != goWant {
			t.Errorf("step %d: go-tuf: error %v, expected ok=%v (%s)", i, b, goWant, st.goTUF)
		}
		if a != nil {
			t.Logf("step %d: ours: %v", i, a)
		}
	}
}

const day = 24 * time.Hour

func TestDifferential(t *testing.T) {
	fw := []byte("firmware image")
	withTarget := func(s *sim) { s.addTarget(metadata.TARGETS, "hw/1/fw.img", fw) }
	tests := []struct {
		name  string
		setup func(s *sim)
		steps []step
	}{
		{"basic", withTarget, []step{{ok: true, targets: []string{"hw/1/fw.img"}}}},
		{"missing target", withTarget, []step{{ok: false, targets: []string{"hw/1/none.img"}}}},
		{"sha512 only", func(s *sim) { s.addTarget(metadata.TARGETS, "hw/1/fw.img", fw, "sha512") },
			[]step{{ok: true, targets: []string{"hw/1/fw.img"}}}},
		{"sha256 and sha512", func(s *sim) { s.addTarget(metadata.TARGETS, "hw/1/fw.img", fw, "sha256", "sha512") },
			[]step{{ok: true, targets: []string{"hw/1/fw.img"}}}},
		{"wrong sha512 beside right sha256", func(s *sim) {
			s.addTarget(metadata.TARGETS, "hw/1/fw.img", fw, "sha256", "sha512")
			s.targets.Signed.Targets["hw/1/fw.img"].Hashes["sha512"][0] ^= 1
		}, []step{{ok: false, targets: []string{"hw/1/fw.img"}}}},
		{"tampered target", withTarget, []step{{ok: false, targets: []string{"hw/1/fw.img"}, change: func(s *sim) {
			for k, b := range s.served {
				if bytes.Equal(b, fw) {
					s.served[k] = []byte("evil firmware!")
				}
			}
		}}}},
		{"ecdsa and rsa keys", func(s *sim) {
			s.replaceRootKeys(metadata.TARGETS)
			s.signers[metadata.TARGETS] = nil
			for _, id := range append([]string(nil), s.root.Signed.Roles[metadata.TARGETS].KeyIDs...) {
				s.root.Signed.RevokeKey(id, metadata.TARGETS)
			}
			s.addRootKey(metadata.TARGETS, "ecdsa")
			s.addRootKey(metadata.TARGETS, "rsa")
			s.root.Signed.Roles[metadata.TARGETS].Threshold = 2
			s.root.Signed.Version++
			s.rootSigner = s.signers[metadata.ROOT]
			s.signRoot()
			withTarget(s)
		}, []step{{ok: true, targets: []string{"hw/1/fw.img"}}}},
		{"threshold needs distinct keys", func(s *sim) {
			s.newRoot(func(r *metadata.RootType) { r.Roles[metadata.TARGETS].Threshold = 2 })
			// one key signing twice is one signature
			s.signers[metadata.TARGETS] = append(s.signers[metadata.TARGETS], s.signers[metadata.TARGETS][0])
		}, []step{{ok: false}}},
		{"root rotation", nil, []step{
			{ok: true},
			{ok: true, change: func(s *sim) {
				s.replaceRootKeys(metadata.ROOT)
				s.root.Signed.Version++
				s.signRoot()
			}},
			{ok: true, change: func(s *sim) { s.newRoot(nil); s.newRoot(nil) }},
		}},
		{"root not signed by the previous root", nil, []step{{ok: false, change: func(s *sim) {
			s.replaceRootKeys(metadata.ROOT)
			s.rootSigner = nil // only the new keys sign
			s.root.Signed.Version++
			s.signRoot()
		}}}},
		{"root not signed by itself", nil, []step{{ok: false, change: func(s *sim) {
			old := s.signers[metadata.ROOT]
			s.replaceRootKeys(metadata.ROOT)
			s.signers[metadata.ROOT] = old // only the old keys sign
			s.root.Signed.Version++
			s.signRoot()
		}}}},
		{"root version skips", nil, []step{{ok: false, change: func(s *sim) {
			s.root.Signed.Version += 2
			s.sign(s.root, metadata.ROOT)
			b, _ := s.root.ToBytes(false)
			s.put("metadata/2.root.json", b) // says version 3
		}}}},
		{"expired root", nil, []step{{ok: false, after: 8 * day}}},
		{"expired timestamp", nil, []step{{ok: false, change: func(s *sim) {
			s.timestamp.Signed.Expires = s.now.Add(-time.Hour)
			s.publish()
		}}}},
		{"expired snapshot", nil, []step{{ok: false, change: func(s *sim) {
			s.snapshot.Signed.Expires = s.now.Add(-time.Hour)
			s.publish()
		}}}},
		{"expired targets", nil, []step{{ok: false, change: func(s *sim) {
			s.targets.Signed.Expires = s.now.Add(-time.Hour)
			s.publish()
		}}}},
		{"timestamp rollback", nil, []step{
			{ok: true, change: func(s *sim) { s.timestamp.Signed.Version = 5; s.publish() }},
			{ok: false, change: func(s *sim) { s.timestamp.Signed.Version = 4; s.publish() }},
		}},
		{"snapshot version rollback in timestamp", nil, []step{
			{ok: true, change: func(s *sim) { s.bump(false); s.publish() }},
			{ok: false, change: func(s *sim) { s.timestamp.Signed.Version++; s.snapshot.Signed.Version = 1; s.publish() }},
		}},
		{"targets rollback in snapshot", nil, []step{
			{ok: true, change: func(s *sim) { s.bump(true); s.publish() }},
			{ok: false, change: func(s *sim) { s.bump(false); s.targets.Signed.Version = 1; s.publish() }},
		}},
		{"mix and match snapshot", nil, []step{{ok: false, change: func(s *sim) {
			s.bump(false)
			s.publish()
			s.timestamp.Signed.Meta["snapshot.json"].Version = 1
			s.sign(s.timestamp, metadata.TIMESTAMP)
			b, _ := s.timestamp.ToBytes(false)
			s.root.Signed.ConsistentSnapshot = false
			s.put("metadata/timestamp.json", b)
			s.put("metadata/1.snapshot.json", s.served["metadata/2.snapshot.json"]) // version 2 served as 1
		}}}},
		{"snapshot hash mismatch", func(s *sim) { s.metaHashes = true }, []step{{ok: false, change: func(s *sim) {
			s.put("metadata/1.snapshot.json", append(bytes.Clone(s.served["metadata/1.snapshot.json"]), ' '))
		}}}},
		{"fast-forward recovery", nil, []step{
			{ok: true, change: func(s *sim) { s.timestamp.Signed.Version = 1000; s.publish() }},
			{ok: true, change: func(s *sim) {
				s.newRoot(nil)
				s.replaceRootKeys(metadata.TIMESTAMP)
				s.root.Signed.Version++
				s.rootSigner = s.signers[metadata.ROOT]
				s.signRoot()
				s.timestamp.Signed.Version = 1
				s.publish()
			}},
		}},
		{"old timestamp key after rotation", nil, []step{
			{ok: true},
			{ok: false, change: func(s *sim) {
				old := s.signers[metadata.TIMESTAMP]
				s.replaceRootKeys(metadata.TIMESTAMP)
				s.root.Signed.Version++
				s.rootSigner = s.signers[metadata.ROOT]
				s.signRoot()
				s.signers[metadata.TIMESTAMP] = old
				s.timestamp.Signed.Version++
				s.publish()
			}},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { differential(t, tt.setup, tt.steps...) })
	}
}
