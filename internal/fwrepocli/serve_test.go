package fwrepocli

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/fwctl/fwctl/signer"
)

// TestServeReportsForgedTimestamp: a timestamp.json nobody signed (put in
// the storage with version 1000000) is not re-signed: fwrepo serve logs
// the refusal and /healthz answers 503 naming it, and the file stays.
func TestServeReportsForgedTimestamp(t *testing.T) {
	dir := t.TempDir()
	pub := filepath.Join(dir, "pub")
	os.MkdirAll(filepath.Join(pub, "metadata"), 0o755)
	key, err := signer.Generate(signer.Ed25519)
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(dir, "timestamp.json")
	if _, err := signer.Save(keyFile, "timestamp", key, nil); err != nil {
		t.Fatal(err)
	}
	pk, _, _ := signer.TUFKey(key.Public())
	root := metadata.Root(time.Now().Add(time.Hour))
	for _, role := range []string{metadata.ROOT, metadata.TARGETS, metadata.SNAPSHOT, metadata.TIMESTAMP} {
		root.Signed.AddKey(pk, role)
	}
	if _, err := root.Sign(signer.TUF(key)); err != nil {
		t.Fatal(err)
	}
	rootFile := filepath.Join(pub, "metadata", "1.root.json")
	if err := root.ToFile(rootFile, true); err != nil {
		t.Fatal(err)
	}
	forged := metadata.Timestamp(time.Now().Add(time.Hour))
	forged.Signed.Version = 1000000
	tsFile := filepath.Join(pub, "metadata", "timestamp.json")
	if err := forged.ToFile(tsFile, true); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(tsFile)

	jsonOut := false
	cmd := serveCmd(&jsonOut)
	out, w := io.Pipe()
	cmd.SetOut(w)
	cmd.SetErr(io.Discard)
	cmd.SetArgs([]string{"--dir", pub, "--addr", "127.0.0.1:0", "--timestamp-key", keyFile, "--root", rootFile, "--access-log=false"})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- cmd.ExecuteContext(ctx); w.Close() }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	}()
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("serve printed %q: %v", line, err)
	}
	go io.Copy(io.Discard, out)
	_, url, ok := strings.Cut(strings.TrimSpace(line), " on ")
	if !ok {
		t.Fatalf("no address in %q", line)
	}
	// The first check runs at start; poll for its verdict (count-bounded,
	// generous).
	var status int
	var body []byte
	for range 300 {
		res, err := http.Get(url + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		body, _ = io.ReadAll(res.Body)
		res.Body.Close()
		if status = res.StatusCode; status == http.StatusServiceUnavailable {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if status != http.StatusServiceUnavailable || !strings.Contains(string(body), "refusing to re-sign") {
		t.Fatalf("/healthz: %d %q; want 503 refusing to re-sign", status, body)
	}
	if after, _ := os.ReadFile(tsFile); string(after) != string(before) {
		t.Fatalf("the forged timestamp was rewritten:\n%s", after)
	}
}
