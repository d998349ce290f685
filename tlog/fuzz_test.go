package tlog

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"os"
	"path/filepath"
	"testing"
)

// seed adds the golden files matching pattern to the fuzz corpus.
func seed(f *testing.F, pattern string) {
	files, _ := filepath.Glob(filepath.Join("testdata", pattern))
	for _, p := range files {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
}

// fuzzKeys returns fixed keys to verify parsed input against: the golden
// log key when present, else a fresh one.
func fuzzKeys(f *testing.F) (release, logKey *ecdsa.PublicKey) {
	if data, err := os.ReadFile("testdata/rekor.pub"); err == nil {
		logKey, _ = ParsePublicKey(data)
	}
	if data, err := os.ReadFile("testdata/release.pub"); err == nil {
		release, _ = ParsePublicKey(data)
	}
	if logKey == nil || release == nil {
		l, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		r, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		logKey, release = &l.PublicKey, &r.PublicKey
	}
	return release, logKey
}

func FuzzParseRekorEntry(f *testing.F) {
	seed(f, "entry-*.json")
	f.Add([]byte(`{"x":{"body":"e30=","logID":"00","verification":{"inclusionProof":{"hashes":["00"]}}}}`))
	release, logKey := fuzzKeys(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		e, err := ParseRekorEntry(data)
		if err != nil {
			return
		}
		digest := sha256.Sum256(e.Body)
		_, _ = VerifyEntry(e, digest[:], release, logKey)
	})
}

func FuzzParseBundle(f *testing.F) {
	seed(f, "*.sigstore.json")
	release, logKey := fuzzKeys(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := ParseBundle(data)
		if err != nil {
			return
		}
		if _, err := b.Marshal(); err != nil {
			t.Fatalf("Marshal after ParseBundle: %v", err)
		}
		_, _ = VerifyBundle(b, b.Digest, release, logKey)
	})
}

func FuzzVerifyCheckpoint(f *testing.F) {
	seed(f, "checkpoint-*.txt")
	f.Add([]byte("o\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\n— o AAAAAAAA\n"))
	_, logKey := fuzzKeys(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		cp, _, err := parseNote(data)
		if err != nil {
			return
		}
		if len(cp.RootHash) != 32 {
			t.Fatalf("parsed a root hash of %d bytes", len(cp.RootHash))
		}
		_, _ = VerifyCheckpoint(data, logKey)
	})
}

func FuzzParseHashedRekord(f *testing.F) {
	f.Add([]byte(`{"apiVersion":"0.0.1","kind":"hashedrekord","spec":{"data":{"hash":{"algorithm":"sha256","value":"00"}}}}`))
	release, _ := fuzzKeys(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := ParseHashedRekord(data)
		if err != nil {
			return
		}
		_ = VerifyBody(data, r.Digest, release)
	})
}
