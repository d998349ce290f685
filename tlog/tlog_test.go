package tlog

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"testing"

	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/merkle/testonly"
)

// fakeLog is an in-memory Rekor v1 look-alike: it signs SETs and
// checkpoints the way Rekor does, so that every failure path can be tested
// without a server. The golden tests pin the real server's bytes.
type fakeLog struct {
	t      *testing.T
	key    *ecdsa.PrivateKey
	tree   *testonly.Tree
	bodies [][]byte
}

func newFakeLog(t *testing.T) *fakeLog {
	return &fakeLog{t: t, key: newKey(t), tree: testonly.New(rfc6962.DefaultHasher)}
}

func newKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func pemKey(t *testing.T, k *ecdsa.PublicKey) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// hashedRekord signs image with release and returns the entry body.
func hashedRekord(t *testing.T, image []byte, release *ecdsa.PrivateKey) []byte {
	t.Helper()
	digest := sha256.Sum256(image)
	sig, err := ecdsa.SignASN1(rand.Reader, release, digest[:])
	if err != nil {
		t.Fatal(err)
	}
	body := fmt.Sprintf(`{"apiVersion":"0.0.1","kind":"hashedrekord","spec":{"data":{"hash":{"algorithm":"sha256","value":"%x"}},"signature":{"content":"%s","publicKey":{"content":"%s"}}}}`,
		digest, base64.StdEncoding.EncodeToString(sig), base64.StdEncoding.EncodeToString(pemKey(t, &release.PublicKey)))
	return []byte(body)
}

func (l *fakeLog) add(body []byte) {
	l.bodies = append(l.bodies, body)
	l.tree.AppendData(body)
}

// checkpoint signs a note for the tree at size with key.
func (l *fakeLog) checkpoint(size uint64, key *ecdsa.PrivateKey) []byte {
	l.t.Helper()
	text := fmt.Sprintf("fake.example - 42\n%d\n%s\nTimestamp: 1\n", size, base64.StdEncoding.EncodeToString(l.tree.HashAt(size)))
	digest := sha256.Sum256([]byte(text))
	sig, err := ecdsa.SignASN1(rand.Reader, key, digest[:])
	if err != nil {
		l.t.Fatal(err)
	}
	id, _ := KeyID(&key.PublicKey)
	return []byte(text + "\n— fake.example " + base64.StdEncoding.EncodeToString(append(id[:4:4], sig...)) + "\n")
}

// entry returns leaf index with a SET and a proof in the current tree.
func (l *fakeLog) entry(index int) *Entry {
	l.t.Helper()
	id, _ := KeyID(&l.key.PublicKey)
	e := &Entry{Body: l.bodies[index], IntegratedTime: 1700000000 + int64(index), LogID: id, LogIndex: int64(index)}
	payload := fmt.Sprintf(`{"body":"%s","integratedTime":%d,"logID":"%s","logIndex":%d}`,
		base64.StdEncoding.EncodeToString(e.Body), e.IntegratedTime, hex.EncodeToString(id), e.LogIndex)
	digest := sha256.Sum256([]byte(payload))
	var err error
	if e.SET, err = ecdsa.SignASN1(rand.Reader, l.key, digest[:]); err != nil {
		l.t.Fatal(err)
	}
	size := l.tree.Size()
	hashes, err := l.tree.InclusionProof(uint64(index), size)
	if err != nil {
		l.t.Fatal(err)
	}
	e.Proof = &InclusionProof{LogIndex: int64(index), TreeSize: int64(size), RootHash: l.tree.Hash(), Hashes: hashes, Checkpoint: l.checkpoint(size, l.key)}
	return e
}

func TestVerifyEntry(t *testing.T) {
	log := newFakeLog(t)
	release := newKey(t)
	images := [][]byte{[]byte("image one"), []byte("image two"), []byte("image three")}
	for _, img := range images {
		log.add(hashedRekord(t, img, release))
	}
	log.add(hashedRekord(t, []byte("other vendor"), newKey(t)))
	sum := func(i int) []byte { s := sha256.Sum256(images[i]); return s[:] }
	logPub, relPub := &log.key.PublicKey, &release.PublicKey

	tests := []struct {
		name   string
		mutate func(e *Entry) (image []byte, releaseKey, logKey *ecdsa.PublicKey)
		want   error
	}{
		{"valid", func(e *Entry) ([]byte, *ecdsa.PublicKey, *ecdsa.PublicKey) { return sum(1), relPub, logPub }, nil},
		{"proof for a different image", func(e *Entry) ([]byte, *ecdsa.PublicKey, *ecdsa.PublicKey) { return sum(2), relPub, logPub }, ErrWrongImage},
		{"other release key", func(e *Entry) ([]byte, *ecdsa.PublicKey, *ecdsa.PublicKey) {
			return sum(1), &newKey(t).PublicKey, logPub
		}, ErrWrongKey},
		{"other log key", func(e *Entry) ([]byte, *ecdsa.PublicKey, *ecdsa.PublicKey) {
			return sum(1), relPub, &newKey(t).PublicKey
		}, ErrBadSET},
		{"bad SET", func(e *Entry) ([]byte, *ecdsa.PublicKey, *ecdsa.PublicKey) {
			e.IntegratedTime++
			return sum(1), relPub, logPub
		}, ErrBadSET},
		{"missing SET", func(e *Entry) ([]byte, *ecdsa.PublicKey, *ecdsa.PublicKey) {
			e.SET = nil
			return sum(1), relPub, logPub
		}, ErrBadSET},
		{"checkpoint signed by another key", func(e *Entry) ([]byte, *ecdsa.PublicKey, *ecdsa.PublicKey) {
			e.Proof.Checkpoint = log.checkpoint(uint64(e.Proof.TreeSize), newKey(t))
			return sum(1), relPub, logPub
		}, ErrBadCheckpoint},
		{"checkpoint text altered", func(e *Entry) ([]byte, *ecdsa.PublicKey, *ecdsa.PublicKey) {
			e.Proof.Checkpoint = bytes.Replace(e.Proof.Checkpoint, []byte("\n4\n"), []byte("\n5\n"), 1)
			return sum(1), relPub, logPub
		}, ErrBadCheckpoint},
		{"truncated proof", func(e *Entry) ([]byte, *ecdsa.PublicKey, *ecdsa.PublicKey) {
			e.Proof.Hashes = e.Proof.Hashes[:len(e.Proof.Hashes)-1]
			return sum(1), relPub, logPub
		}, ErrBadProof},
		{"wrong proof hash", func(e *Entry) ([]byte, *ecdsa.PublicKey, *ecdsa.PublicKey) {
			e.Proof.Hashes[0] = make([]byte, 32)
			return sum(1), relPub, logPub
		}, ErrBadProof},
		{"proof for another index", func(e *Entry) ([]byte, *ecdsa.PublicKey, *ecdsa.PublicKey) {
			e.Proof.LogIndex = 0
			return sum(1), relPub, logPub
		}, ErrBadProof},
		{"root differs from checkpoint", func(e *Entry) ([]byte, *ecdsa.PublicKey, *ecdsa.PublicKey) {
			e.Proof.RootHash = log.tree.HashAt(3)
			return sum(1), relPub, logPub
		}, ErrBadProof},
		{"no proof", func(e *Entry) ([]byte, *ecdsa.PublicKey, *ecdsa.PublicKey) {
			e.Proof = nil
			return sum(1), relPub, logPub
		}, ErrBadProof},
		{"body swapped for another logged image", func(e *Entry) ([]byte, *ecdsa.PublicKey, *ecdsa.PublicKey) {
			e.Body = log.bodies[2]
			return sum(2), relPub, logPub
		}, ErrBadSET},
		{"garbage body", func(e *Entry) ([]byte, *ecdsa.PublicKey, *ecdsa.PublicKey) {
			e.Body = []byte("{")
			return sum(1), relPub, logPub
		}, ErrMalformed},
		{"nil keys", func(e *Entry) ([]byte, *ecdsa.PublicKey, *ecdsa.PublicKey) { return sum(1), nil, nil }, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := log.entry(1)
			img, rk, lk := tt.mutate(e)
			cp, err := VerifyEntry(e, img, rk, lk)
			if !errors.Is(err, tt.want) {
				t.Fatalf("VerifyEntry = %v, want %v", err, tt.want)
			}
			if err == nil && (cp.Size != 4 || cp.Origin != "fake.example - 42") {
				t.Errorf("checkpoint = %+v", cp)
			}
		})
	}
}

func TestAdvance(t *testing.T) {
	log := newFakeLog(t)
	for i := range 7 {
		log.add([]byte{byte(i)})
	}
	cp := func(size uint64) *Checkpoint {
		c, err := VerifyCheckpoint(log.checkpoint(size, log.key), &log.key.PublicKey)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	proof := func(a, b uint64) [][]byte {
		p, err := log.tree.ConsistencyProof(a, b)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	other := newFakeLog(t)
	for i := range 7 {
		other.add([]byte{byte(i), 1})
	}
	forked, err := VerifyCheckpoint(other.checkpoint(7, log.key), &log.key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}

	if got, err := Advance(nil, cp(3), nil); err != nil || got.Size != 3 {
		t.Errorf("Advance(nil, 3) = %v, %v", got, err)
	}
	if got, err := Advance(cp(3), cp(7), proof(3, 7)); err != nil || got.Size != 7 {
		t.Errorf("Advance(3, 7) = %v, %v", got, err)
	}
	if _, err := Advance(cp(7), cp(7), nil); err != nil {
		t.Errorf("Advance(7, 7) = %v", err)
	}
	if _, err := Advance(cp(7), cp(3), proof(3, 7)); !errors.Is(err, ErrRollback) {
		t.Errorf("Advance(7, 3) = %v, want ErrRollback", err)
	}
	if _, err := Advance(cp(3), forked, proof(3, 7)); !errors.Is(err, ErrInconsistent) {
		t.Errorf("Advance to a fork = %v, want ErrInconsistent", err)
	}
	if _, err := Advance(cp(3), cp(7), proof(3, 7)[1:]); !errors.Is(err, ErrInconsistent) {
		t.Errorf("Advance with a truncated proof = %v, want ErrInconsistent", err)
	}
	if err := Consistent(cp(2), cp(6), proof(2, 6)); err != nil {
		t.Errorf("Consistent(2, 6) = %v", err)
	}
}

func TestBundleRoundTrip(t *testing.T) {
	log := newFakeLog(t)
	release := newKey(t)
	image := []byte("firmware")
	log.add(hashedRekord(t, image, release))
	e := log.entry(0)
	var r HashedRekord
	if hr, err := ParseHashedRekord(e.Body); err != nil {
		t.Fatal(err)
	} else {
		r = *hr
	}
	hint, _ := KeyHint(&release.PublicKey)
	b := &Bundle{Digest: r.Digest, Signature: r.Signature, KeyHint: hint, Entries: []Entry{*e}}
	data, err := b.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseBundle(data)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(image)
	if _, err := VerifyBundle(got, sum[:], &release.PublicKey, &log.key.PublicKey); err != nil {
		t.Fatalf("VerifyBundle: %v", err)
	}
	other := sha256.Sum256([]byte("other"))
	if _, err := VerifyBundle(got, other[:], &release.PublicKey, &log.key.PublicKey); !errors.Is(err, ErrWrongImage) {
		t.Errorf("VerifyBundle(other image) = %v, want ErrWrongImage", err)
	}
	got.Entries = nil
	if _, err := VerifyBundle(got, sum[:], &release.PublicKey, nil); err != nil {
		t.Errorf("VerifyBundle without log = %v", err)
	}
	if _, err := VerifyBundle(got, sum[:], &release.PublicKey, &log.key.PublicKey); !errors.Is(err, ErrBadProof) {
		t.Errorf("VerifyBundle without entry = %v, want ErrBadProof", err)
	}
	var j map[string]any
	if err := json.Unmarshal(data, &j); err != nil || j["mediaType"] != BundleMediaType {
		t.Errorf("bundle JSON = %s", data)
	}
}

func TestProofLen(t *testing.T) {
	tree := testonly.New(rfc6962.DefaultHasher)
	for size := uint64(1); size <= 40; size++ {
		tree.AppendData([]byte{byte(size)})
		for i := uint64(0); i < size; i++ {
			p, _ := tree.InclusionProof(i, size)
			if got := proofLen(i, size); got != len(p) {
				t.Fatalf("proofLen(%d, %d) = %d, want %d", i, size, got, len(p))
			}
		}
	}
}
