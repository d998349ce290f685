package tufclient

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/fwctl/fwctl/agent/tuf"
)

// trickle answers with body one byte at a time, 20 ms apart (50 bytes/s),
// until the client goes away.
func trickle(body []byte) func(w http.ResponseWriter, r *http.Request) {
	return func(w http.ResponseWriter, r *http.Request) {
		for i := 0; ; i++ {
			if _, err := w.Write([]byte{body[i%len(body)]}); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
}

// endlessBody streams bytes without end and without a Content-Length.
func endlessBody(w http.ResponseWriter, r *http.Request) {
	chunk := bytes.Repeat([]byte{' '}, 4096)
	for {
		if _, err := w.Write(chunk); err != nil {
			return
		}
	}
}

// hostile makes the simulator answer requests for a path ending in suffix
// with h.
func (s *sim) hostile(suffix string, h func(w http.ResponseWriter, r *http.Request)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hook = func(w http.ResponseWriter, r *http.Request) bool {
		if strings.HasSuffix(r.URL.Path, suffix) {
			h(w, r)
			return true
		}
		return false
	}
}

// attackRun refreshes (and fetches target, if not empty) as a device would
// from the first root, with a metadata directory carried over from ok runs.
func attackRun(s *sim, dir, target string, tune func(c *Client)) error {
	c := s.client(dir)
	if tune != nil {
		tune(c)
	}
	root, err := os.ReadFile(filepath.Join(dir, "root.json"))
	if err != nil {
		return err
	}
	tr, err := c.Update(context.Background(), root)
	if err != nil || target == "" {
		return err
	}
	tf, err := tr.GetTargetInfo(target)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	return c.FetchTarget(context.Background(), tr, tf, &buf, nil)
}

// TestAttacks plays every attack of TUF's threat model through a hostile
// server and checks that it is refused with an error naming the file and
// the attack.
func TestAttacks(t *testing.T) {
	fw := []byte("firmware image, version 1")
	quick := func(c *Client) {
		c.Rate = Rate{MinRate: 1000, Window: 100 * time.Millisecond}
		c.Limits.MaxTimestampLength = 4096
	}
	tests := []struct {
		name   string
		attack func(s *sim)
		target string
		tune   func(c *Client)
		kind   error
		file   string
	}{
		{"rollback of timestamp", func(s *sim) { s.timestamp.Signed.Version = 1; s.publish() }, "", nil, tuf.ErrRollback, "timestamp.json"},
		{"rollback of targets", func(s *sim) {
			s.bump(false)
			s.targets.Signed.Version = 1
			s.publish()
		}, "", nil, tuf.ErrRollback, "snapshot.json"},
		{"freeze: replayed expired timestamp", func(s *sim) {
			s.timestamp.Signed.Version++
			s.timestamp.Signed.Expires = s.now.Add(-time.Minute)
			s.publish()
		}, "", nil, tuf.ErrFreeze, "timestamp.json"},
		{"mix-and-match: old targets under the new version", func(s *sim) {
			old := s.served["metadata/2.targets.json"]
			s.bump(true)
			s.publish()
			s.put("metadata/3.targets.json", old)
		}, "", nil, tuf.ErrMixAndMatch, "targets.json"},
		{"endless data: timestamp", func(s *sim) { s.hostile("/timestamp.json", endlessBody) }, "", quick, tuf.ErrEndlessData, "timestamp.json"},
		{"endless data: target", func(s *sim) { s.hostile("fw.img", endlessBody) }, "hw/fw.img", quick, tuf.ErrEndlessData, "targets/hw/fw.img"},
		{"slow retrieval: timestamp", func(s *sim) { s.hostile("/timestamp.json", trickle([]byte("{}"))) }, "", quick, tuf.ErrSlowRetrieval, "timestamp.json"},
		{"slow retrieval: target", func(s *sim) { s.hostile("fw.img", trickle(fw)) }, "hw/fw.img", quick, tuf.ErrSlowRetrieval, "targets/hw/fw.img"},
		{"slow retrieval: no response headers", func(s *sim) {
			s.hostile("/timestamp.json", func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
		}, "", quick, tuf.ErrSlowRetrieval, "timestamp.json"},
		{"arbitrary software: altered image", func(s *sim) {
			s.hostile("fw.img", func(w http.ResponseWriter, r *http.Request) { w.Write(bytes.ToUpper(fw)) })
		}, "hw/fw.img", nil, tuf.ErrArbitrarySoftware, "targets/hw/fw.img"},
		{"arbitrary software: targets signed by an attacker key", func(s *sim) {
			sg, _ := newSigner(t, "ed25519")
			s.bump(true)
			s.addTarget(metadata.TARGETS, "hw/evil.img", []byte("evil"))
			s.signers[metadata.TARGETS] = append(s.signers[metadata.TARGETS][:0:0], sg)
			s.publish()
		}, "", nil, tuf.ErrSignature, "targets.json"},
		{"fast-forward: old timestamp key after rotation", func(s *sim) {
			old := s.signers[metadata.TIMESTAMP]
			s.replaceRootKeys(metadata.TIMESTAMP)
			s.root.Signed.Version++
			s.rootSigner = s.signers[metadata.ROOT]
			s.signRoot()
			s.signers[metadata.TIMESTAMP] = old
			s.timestamp.Signed.Version = 1 << 40
			s.publish()
		}, "", nil, tuf.ErrSignature, "timestamp.json"},
		{"key compromise: one of two root keys rotates root", func(s *sim) {
			// root threshold is 2 of 2 (set up below); the attacker has one
			s.signers[metadata.ROOT] = s.signers[metadata.ROOT][:1]
			s.replaceRootKeys(metadata.TARGETS)
			s.newRoot(nil)
		}, "", nil, tuf.ErrSignature, "root.json"},
		{"key rotation: revoked targets key", func(s *sim) {
			old := s.signers[metadata.TARGETS]
			s.replaceRootKeys(metadata.TARGETS)
			s.newRoot(nil)
			s.signers[metadata.TARGETS] = old
			s.bump(true)
			s.publish()
		}, "", nil, tuf.ErrSignature, "targets.json"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSim(t)
			s.addRootKey(metadata.ROOT, "ed25519")
			s.root.Signed.Roles[metadata.ROOT].Threshold = 2
			s.newRoot(nil)
			s.addTarget(metadata.TARGETS, "hw/fw.img", fw)
			s.bump(true)
			s.publish()
			dir := t.TempDir()
			os.WriteFile(filepath.Join(dir, "root.json"), s.rootBytes(1), 0o644)
			if err := attackRun(s, dir, "hw/fw.img", nil); err != nil {
				t.Fatalf("before the attack: %v", err)
			}
			tt.attack(s)
			err := attackRun(s, dir, tt.target, tt.tune)
			if !errors.Is(err, tt.kind) {
				t.Fatalf("error %v, want %v", err, tt.kind)
			}
			if !strings.Contains(err.Error(), tt.file) || !strings.Contains(err.Error(), tt.kind.Error()) {
				t.Fatalf("error %q does not name the file %s and the attack", err, tt.file)
			}
			t.Log(err)
		})
	}
}
