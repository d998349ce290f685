package tufclient

import (
	"bytes"
	"context"
	"crypto/sha256"
	"os"
	"path/filepath"
	"testing"

	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// A resumed download is checked against every listed hash: the caller
// feeds the bytes it already has to NewHash's hasher.
func TestResumeChecksEveryHash(t *testing.T) {
	fw := bytes.Repeat([]byte("firmware "), 1000)
	s := newSim(t)
	s.addTarget(metadata.TARGETS, "hw/fw.img", fw, "sha256", "sha512")
	s.bump(true)
	s.publish()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "root.json"), s.rootBytes(1), 0o644)
	c := s.client(dir)
	tr, err := c.Update(context.Background(), s.rootBytes(1))
	if err != nil {
		t.Fatal(err)
	}
	tf, err := tr.GetTargetInfo("hw/fw.img")
	if err != nil {
		t.Fatal(err)
	}
	const have = 4000
	h, err := NewHash(tf)
	if err != nil {
		t.Fatal(err)
	}
	h.Write(fw[:have])
	var rest bytes.Buffer
	if err := c.ResumeTarget(context.Background(), tr, tf, &rest, h, have, nil); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(rest.Bytes(), fw[have:]) {
		t.Fatal("resumed bytes differ")
	}
	// A prefix that differs from the signed image is caught by the hashes.
	bad, _ := NewHash(tf)
	bad.Write(bytes.ToUpper(fw[:have]))
	if err := c.ResumeTarget(context.Background(), tr, tf, &bytes.Buffer{}, bad, have, nil); err == nil {
		t.Fatal("a resume over altered bytes verified")
	}
	// A plain SHA-256 cannot vouch for the sha512 of the prefix.
	plain := sha256.New()
	plain.Write(fw[:have])
	if err := c.ResumeTarget(context.Background(), tr, tf, &bytes.Buffer{}, plain, have, nil); err == nil {
		t.Fatal("resumed with a hash that covers only sha256")
	}
}
