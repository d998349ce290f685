package tufclient

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/fwctl/fwctl/agent/tuf"
)

// TestCheckStages: with Client.Check, Update stores the verified
// timestamp, snapshot and targets only once Check accepts them; a refused
// set leaves the metadata directory as it was, and the next accepted one
// is stored.
func TestCheckStages(t *testing.T) {
	s := newSim(t)
	s.addTarget(metadata.TARGETS, "hw/fw.img", []byte("v1"))
	s.bump(true)
	s.publish()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "root.json"), s.rootBytes(1), 0o644)
	refuse := errors.New("not this device's")
	var accept bool
	tune := func(c *Client) {
		c.Check = func(set *tuf.Trusted) error {
			if set.Targets == nil || set.Snapshot == nil || set.Timestamp == nil {
				t.Fatal("Check called before the set is verified")
			}
			if !accept {
				return refuse
			}
			return nil
		}
	}
	files := []string{"timestamp.json", "snapshot.json", "targets.json"}
	read := func() [][]byte {
		var out [][]byte
		for _, f := range files {
			b, _ := os.ReadFile(filepath.Join(dir, f))
			out = append(out, b)
		}
		return out
	}
	if err := attackRun(s, dir, "", tune); !errors.Is(err, refuse) {
		t.Fatalf("first update = %v, want Check's refusal", err)
	}
	for i, b := range read() {
		if b != nil {
			t.Fatalf("%s stored before Check accepted it", files[i])
		}
	}
	accept = true
	if err := attackRun(s, dir, "", tune); err != nil {
		t.Fatal(err)
	}
	stored := read()
	for i, b := range stored {
		if b == nil {
			t.Fatalf("%s not stored after Check accepted it", files[i])
		}
	}
	s.addTarget(metadata.TARGETS, "hw/fw2.img", []byte("v2"))
	s.bump(true)
	s.publish()
	accept = false
	if err := attackRun(s, dir, "", tune); !errors.Is(err, refuse) {
		t.Fatalf("update = %v, want Check's refusal", err)
	}
	for i, b := range read() {
		if !bytes.Equal(b, stored[i]) {
			t.Fatalf("%s changed by a refused update", files[i])
		}
	}
	accept = true
	if err := attackRun(s, dir, "", tune); err != nil {
		t.Fatal(err)
	}
	for i, b := range read() {
		if bytes.Equal(b, stored[i]) {
			t.Fatalf("%s not updated after Check accepted the new set", files[i])
		}
	}
}
