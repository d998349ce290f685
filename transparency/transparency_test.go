package transparency

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"github.com/fwctl/fwctl/transparency/rekortest"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fwctl/fwctl/internal/atomicfile"
	"github.com/fwctl/fwctl/internal/testenv"
	"github.com/fwctl/fwctl/tlog"
)

// release is a signed firmware image.
type release struct {
	image, digest, sig []byte
}

func newReleaseKey(t *testing.T) (*ecdsa.PrivateKey, []byte) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return k, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

func sign(t *testing.T, k *ecdsa.PrivateKey, image string) release {
	t.Helper()
	d := sha256.Sum256([]byte(image))
	sig, err := ecdsa.SignASN1(rand.Reader, k, d[:])
	if err != nil {
		t.Fatal(err)
	}
	return release{[]byte(image), d[:], sig}
}

// uploaded holds what TestUploadAndVerify logged, for the cosign test.
type uploaded struct {
	key     *ecdsa.PrivateKey
	pubPEM  []byte
	rels    []release
	entries []*Entry
}

func upload(t *testing.T) *uploaded {
	t.Helper()
	url, _ := needRekor(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	u := &uploaded{}
	u.key, u.pubPEM = newReleaseKey(t)
	for i := range 2 {
		r := sign(t, u.key, fmt.Sprintf("fwctl test image %d %d\n", i, time.Now().UnixNano()))
		e, err := Upload(ctx, url, r.digest, r.sig, u.pubPEM)
		if err != nil {
			t.Fatalf("Upload: %v", err)
		}
		u.rels, u.entries = append(u.rels, r), append(u.entries, e)
	}
	return u
}

func TestUploadAndVerify(t *testing.T) {
	url, logPEM := needRekor(t)
	ctx := context.Background()
	u := upload(t)
	logKey, err := tlog.ParsePublicKey(logPEM)
	if err != nil {
		t.Fatal(err)
	}
	served, err := LogPublicKey(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	if k, err := tlog.ParsePublicKey(served); err != nil || !k.Equal(logKey) {
		t.Fatalf("log serves key %s (%v), rekor.sh gave %s", served, err, logPEM)
	}
	rel := &u.key.PublicKey

	for i, e := range u.entries {
		if _, err := tlog.VerifyEntry(&e.Entry, u.rels[i].digest, rel, logKey); err != nil {
			t.Errorf("entry %d: %v", i, err)
		}
	}
	e := u.entries[1]

	t.Run("proof for a different image", func(t *testing.T) {
		_, err := tlog.VerifyEntry(&e.Entry, u.rels[0].digest, rel, logKey)
		if !errors.Is(err, tlog.ErrWrongImage) {
			t.Errorf("got %v, want ErrWrongImage", err)
		}
	})
	t.Run("forged checkpoint", func(t *testing.T) {
		forged := e.Entry
		p := *e.Proof
		forged.Proof = &p
		lines := strings.SplitN(string(p.Checkpoint), "\n", 4)
		lines[1] = fmt.Sprint(p.TreeSize + 1)
		p.Checkpoint = []byte(strings.Join(lines, "\n"))
		p.TreeSize++
		if _, err := tlog.VerifyEntry(&forged, u.rels[1].digest, rel, logKey); !errors.Is(err, tlog.ErrBadCheckpoint) {
			t.Errorf("got %v, want ErrBadCheckpoint", err)
		}
	})
	t.Run("truncated proof", func(t *testing.T) {
		first, err := GetEntry(ctx, url, u.entries[0].LogIndex)
		if err != nil {
			t.Fatal(err)
		}
		if len(first.Proof.Hashes) == 0 {
			t.Fatalf("entry %d has an empty proof in a tree of size %d", first.LogIndex, first.Proof.TreeSize)
		}
		first.Proof.Hashes = first.Proof.Hashes[:len(first.Proof.Hashes)-1]
		if _, err := tlog.VerifyEntry(&first.Entry, u.rels[0].digest, rel, logKey); !errors.Is(err, tlog.ErrBadProof) {
			t.Errorf("got %v, want ErrBadProof", err)
		}
	})
	t.Run("bad SET", func(t *testing.T) {
		bad := e.Entry
		bad.IntegratedTime++
		if _, err := tlog.VerifyEntry(&bad, u.rels[1].digest, rel, logKey); !errors.Is(err, tlog.ErrBadSET) {
			t.Errorf("got %v, want ErrBadSET", err)
		}
	})
	t.Run("checkpoints advance", func(t *testing.T) {
		old, err := tlog.VerifyCheckpoint(u.entries[0].Proof.Checkpoint, logKey)
		if err != nil {
			t.Fatal(err)
		}
		note, err := Checkpoint(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		latest, err := tlog.VerifyCheckpoint(note, logKey)
		if err != nil {
			t.Fatal(err)
		}
		hashes, err := ConsistencyProof(ctx, url, int64(old.Size), int64(latest.Size))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tlog.Advance(old, latest, hashes); err != nil {
			t.Errorf("Advance(%d, %d): %v", old.Size, latest.Size, err)
		}
		if _, err := tlog.Advance(latest, old, hashes); !errors.Is(err, tlog.ErrRollback) {
			t.Errorf("Advance back: got %v, want ErrRollback", err)
		}
	})
	t.Run("search by key", func(t *testing.T) {
		found, err := SearchByKey(ctx, url, u.pubPEM)
		if err != nil {
			t.Fatal(err)
		}
		if len(found) != 2 || found[0].UUID != u.entries[0].UUID || found[1].UUID != u.entries[1].UUID {
			t.Fatalf("SearchByKey found %d entries, want the 2 uploaded", len(found))
		}
		other, otherPEM := newReleaseKey(t)
		_ = other
		if found, err := SearchByKey(ctx, url, otherPEM); err != nil || len(found) != 0 {
			t.Errorf("SearchByKey(unused key) = %d entries, %v", len(found), err)
		}
	})
	t.Run("upload again", func(t *testing.T) {
		r := u.rels[0]
		again, err := Upload(ctx, url, r.digest, r.sig, u.pubPEM)
		if err != nil || again.LogIndex != u.entries[0].LogIndex {
			t.Errorf("Upload of a logged signature = %+v, %v; want entry %d", again, err, u.entries[0].LogIndex)
		}
	})
	if os.Getenv("FW_UPDATE_GOLDEN") == "1" {
		writeGolden(t, url, u)
	}
}

// writeGolden stores the real server's answers as tlog's test vectors.
func writeGolden(t *testing.T, url string, u *uploaded) {
	if !rekortest.Fresh() {
		t.Fatal("FW_UPDATE_GOLDEN=1 needs a fresh log: unset REKOR_URL")
	}
	dir := "../tlog/testdata"
	write := func(name string, data []byte) {
		if err := atomicfile.Write(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	get := func(path string) []byte {
		resp, err := http.Get(url + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		data, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("GET %s: %d %v", path, resp.StatusCode, err)
		}
		return data
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	_, logPEM := rekortest.Need(t)
	write("rekor.pub", logPEM)
	write("release.pub", u.pubPEM)
	for i, e := range u.entries {
		write(fmt.Sprintf("image-%d.bin", i), u.rels[i].image)
		write(fmt.Sprintf("entry-%d.json", i), get(fmt.Sprintf("/api/v1/log/entries?logIndex=%d", e.LogIndex)))
		write(fmt.Sprintf("checkpoint-%d.txt", e.Proof.TreeSize), e.Proof.Checkpoint)
		b, err := MarshalBundle(u.rels[i].digest, u.rels[i].sig, u.pubPEM, e)
		if err != nil {
			t.Fatal(err)
		}
		write(fmt.Sprintf("image-%d.sigstore.json", i), b)
	}
	first, last := u.entries[0].Proof.TreeSize, u.entries[1].Proof.TreeSize
	write(fmt.Sprintf("consistency-%d-%d.json", first, last), get(fmt.Sprintf("/api/v1/log/proof?firstSize=%d&lastSize=%d", first, last)))
}

// cosignPath returns the cosign built by scripts/cosign.sh, or skips.
func cosignPath(t *testing.T) string {
	t.Helper()
	p := filepath.Join(toolsDir(), "cosign")
	if _, err := os.Stat(p); err == nil {
		return p
	}
	return testenv.LookPath(t, "cosign", "run scripts/cosign.sh to build it into "+toolsDir())
}

func TestCosignVerifyBlob(t *testing.T) {
	url, logPEM := needRekor(t)
	cosign := cosignPath(t)
	u := upload(t)
	dir := t.TempDir()
	path := func(name string) string { return filepath.Join(dir, name) }
	root, err := TrustedRoot(url, logPEM, time.Now().Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{"trusted_root.json": root, "release.pub": u.pubPEM, "image": u.rels[1].image, "tampered": append([]byte("x"), u.rels[1].image...)}
	withLog, err := MarshalBundle(u.rels[1].digest, u.rels[1].sig, u.pubPEM, u.entries[1])
	if err != nil {
		t.Fatal(err)
	}
	offline, err := MarshalBundle(u.rels[1].digest, u.rels[1].sig, u.pubPEM, nil)
	if err != nil {
		t.Fatal(err)
	}
	files["log.sigstore.json"], files["offline.sigstore.json"] = withLog, offline
	_, otherPEM := newReleaseKey(t)
	files["other.pub"] = otherPEM
	for name, data := range files {
		if err := os.WriteFile(path(name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	verify := func(bundle, key, image string, extra ...string) error {
		args := append([]string{"verify-blob", "--new-bundle-format", "--trusted-root", path("trusted_root.json"),
			"--key", path(key), "--bundle", path(bundle)}, extra...)
		cmd := exec.Command(cosign, append(args, path(image))...)
		// No way out to the public Sigstore TUF repository.
		cmd.Env = append(os.Environ(), "TUF_ROOT="+path("tuf"), "HOME="+dir)
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("%w: %s", err, bytes.TrimSpace(out))
		}
		return nil
	}
	tests := []struct {
		name, bundle, key, image string
		extra                    []string
		ok                       bool
	}{
		{"with log entry", "log.sigstore.json", "release.pub", "image", nil, true},
		{"offline", "offline.sigstore.json", "release.pub", "image", []string{"--insecure-ignore-tlog=true"}, true},
		{"offline bundle needs tlog flag", "offline.sigstore.json", "release.pub", "image", nil, false},
		{"tampered image", "log.sigstore.json", "release.pub", "tampered", nil, false},
		{"wrong key", "log.sigstore.json", "other.pub", "image", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := verify(tt.bundle, tt.key, tt.image, tt.extra...)
			if tt.ok && err != nil {
				t.Errorf("cosign verify-blob: %v", err)
			}
			if !tt.ok && err == nil {
				t.Errorf("cosign verify-blob accepted it")
			}
		})
	}
}

func TestTrustedRoot(t *testing.T) {
	_, pub := newReleaseKey(t)
	root, err := TrustedRoot("http://127.0.0.1:1", pub, time.Unix(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	var j struct {
		Tlogs []struct {
			BaseURL   string `json:"baseUrl"`
			PublicKey struct {
				RawBytes []byte `json:"rawBytes"`
			} `json:"publicKey"`
			LogID struct {
				KeyID []byte `json:"keyId"`
			} `json:"logId"`
		} `json:"tlogs"`
	}
	if err := json.Unmarshal(root, &j); err != nil || len(j.Tlogs) != 1 {
		t.Fatalf("trusted root %s: %v", root, err)
	}
	sum := sha256.Sum256(j.Tlogs[0].PublicKey.RawBytes)
	if !bytes.Equal(j.Tlogs[0].LogID.KeyID, sum[:]) {
		t.Errorf("logId.keyId = %s, want %s", base64.StdEncoding.EncodeToString(j.Tlogs[0].LogID.KeyID), base64.StdEncoding.EncodeToString(sum[:]))
	}
	if _, err := TrustedRoot("http://x", []byte("junk"), time.Time{}); err == nil {
		t.Error("TrustedRoot accepted a junk key")
	}
}

// TestCosignGolden checks that cosign accepts the bundles checked in as
// tlog's golden vectors, against the golden log key; no log needed.
func TestCosignGolden(t *testing.T) {
	cosign := cosignPath(t)
	golden := func(name string) string { return filepath.Join("..", "tlog", "testdata", name) }
	logPEM, err := os.ReadFile(golden("rekor.pub"))
	if err != nil {
		t.Fatal(err)
	}
	root, err := TrustedRoot("http://127.0.0.1:1", logPEM, time.Unix(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	rootPath := filepath.Join(dir, "trusted_root.json")
	if err := os.WriteFile(rootPath, root, 0o644); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		cmd := exec.Command(cosign, "verify-blob", "--new-bundle-format", "--trusted-root", rootPath,
			"--key", golden("release.pub"), "--bundle", golden(fmt.Sprintf("image-%d.sigstore.json", i)), golden(fmt.Sprintf("image-%d.bin", i)))
		cmd.Env = append(os.Environ(), "TUF_ROOT="+filepath.Join(dir, "tuf"), "HOME="+dir)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("cosign verify-blob image-%d: %v: %s", i, err, out)
		}
	}
}
