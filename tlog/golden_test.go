package tlog

import (
	"crypto/ecdsa"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// The files in testdata are a real Rekor v1.5.4 server's answers (written
// by FW_UPDATE_GOLDEN=1 go test ./transparency -run TestUploadAndVerify):
// two hashedrekord entries for image-0.bin and image-1.bin signed with
// release.pub, in a log with key rekor.pub; entry-N.json is the response of
// /api/v1/log/entries?logIndex=N, checkpoint-S.txt the checkpoint for tree
// size S, consistency-A-B.json the response of /api/v1/log/proof, and
// image-N.sigstore.json the bundles that cosign verify-blob accepted.

func readGolden(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func goldenKeys(t *testing.T) (release, logKey *ecdsa.PublicKey) {
	t.Helper()
	var err error
	if release, err = ParsePublicKey(readGolden(t, "release.pub")); err != nil {
		t.Fatal(err)
	}
	if logKey, err = ParsePublicKey(readGolden(t, "rekor.pub")); err != nil {
		t.Fatal(err)
	}
	return release, logKey
}

func goldenDigest(t *testing.T, i int) []byte {
	sum := sha256.Sum256(readGolden(t, fmt.Sprintf("image-%d.bin", i)))
	return sum[:]
}

func TestGoldenEntries(t *testing.T) {
	release, logKey := goldenKeys(t)
	for i := range 2 {
		e, err := ParseRekorEntry(readGolden(t, fmt.Sprintf("entry-%d.json", i)))
		if err != nil {
			t.Fatal(err)
		}
		cp, err := VerifyEntry(e, goldenDigest(t, i), release, logKey)
		if err != nil {
			t.Fatalf("entry %d: %v", i, err)
		}
		if cp.Size != 2 {
			t.Errorf("entry %d: checkpoint for size %d, want 2", i, cp.Size)
		}
		if _, err := VerifyEntry(e, goldenDigest(t, 1-i), release, logKey); !errors.Is(err, ErrWrongImage) {
			t.Errorf("entry %d for the other image: %v, want ErrWrongImage", i, err)
		}
		bad := *e
		bad.SET = append([]byte(nil), e.SET...)
		bad.SET[len(bad.SET)-1] ^= 1
		if _, err := VerifyEntry(&bad, goldenDigest(t, i), release, logKey); !errors.Is(err, ErrBadSET) {
			t.Errorf("entry %d with a flipped SET bit: %v, want ErrBadSET", i, err)
		}
		proof := *e.Proof
		bad = *e
		bad.Proof = &proof
		proof.Hashes = nil
		if _, err := VerifyEntry(&bad, goldenDigest(t, i), release, logKey); !errors.Is(err, ErrBadProof) {
			t.Errorf("entry %d with a truncated proof: %v, want ErrBadProof", i, err)
		}
		proof.Hashes = e.Proof.Hashes
		proof.Checkpoint = append([]byte(nil), e.Proof.Checkpoint...)
		proof.Checkpoint[len(proof.Checkpoint)-3] ^= 1
		if _, err := VerifyEntry(&bad, goldenDigest(t, i), release, logKey); !errors.Is(err, ErrBadCheckpoint) && !errors.Is(err, ErrMalformed) {
			t.Errorf("entry %d with a damaged checkpoint signature: %v, want ErrBadCheckpoint", i, err)
		}
	}
}

func TestGoldenBundles(t *testing.T) {
	release, logKey := goldenKeys(t)
	for i := range 2 {
		b, err := ParseBundle(readGolden(t, fmt.Sprintf("image-%d.sigstore.json", i)))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := VerifyBundle(b, goldenDigest(t, i), release, logKey); err != nil {
			t.Errorf("bundle %d: %v", i, err)
		}
		if _, err := VerifyBundle(b, goldenDigest(t, 1-i), release, logKey); !errors.Is(err, ErrWrongImage) {
			t.Errorf("bundle %d for the other image: %v, want ErrWrongImage", i, err)
		}
	}
}

func TestGoldenConsistency(t *testing.T) {
	_, logKey := goldenKeys(t)
	files, _ := filepath.Glob("testdata/consistency-*.json")
	if len(files) == 0 {
		t.Fatal("no testdata/consistency-*.json")
	}
	for _, f := range files {
		var a, b int
		if _, err := fmt.Sscanf(filepath.Base(f), "consistency-%d-%d.json", &a, &b); err != nil {
			t.Fatal(err)
		}
		var resp struct {
			Hashes []string `json:"hashes"`
		}
		if err := json.Unmarshal(readGolden(t, filepath.Base(f)), &resp); err != nil {
			t.Fatal(err)
		}
		hashes, err := decodeHashes(resp.Hashes, hex.DecodeString)
		if err != nil {
			t.Fatal(err)
		}
		older, err := VerifyCheckpoint(readGolden(t, fmt.Sprintf("checkpoint-%d.txt", a)), logKey)
		if err != nil {
			t.Fatal(err)
		}
		newer, err := VerifyCheckpoint(readGolden(t, fmt.Sprintf("checkpoint-%d.txt", b)), logKey)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := Advance(older, newer, hashes); err != nil || got != newer {
			t.Errorf("Advance(%d, %d) = %v", a, b, err)
		}
		if _, err := Advance(newer, older, nil); !errors.Is(err, ErrRollback) {
			t.Errorf("Advance(%d, %d) = %v, want ErrRollback", b, a, err)
		}
	}
}
