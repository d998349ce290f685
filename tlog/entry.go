package tlog

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
)

// maxInput bounds any untrusted document this package parses: a Rekor
// entry or a bundle is a few kilobytes.
const maxInput = 1 << 20

// maxHashes bounds a proof: a tree of 2^64 leaves needs 64 hashes.
const maxHashes = 64

// rekorEntry is one value of the JSON object Rekor v1 returns from
// /api/v1/log/entries (keyed by the entry's UUID).
type rekorEntry struct {
	Body           string `json:"body"`
	IntegratedTime int64  `json:"integratedTime"`
	LogID          string `json:"logID"`
	LogIndex       int64  `json:"logIndex"`
	Verification   *struct {
		InclusionProof *struct {
			Checkpoint string   `json:"checkpoint"`
			Hashes     []string `json:"hashes"`
			LogIndex   int64    `json:"logIndex"`
			RootHash   string   `json:"rootHash"`
			TreeSize   int64    `json:"treeSize"`
		} `json:"inclusionProof"`
		SignedEntryTimestamp string `json:"signedEntryTimestamp"`
	} `json:"verification"`
}

// ParseRekorEntry parses Rekor v1's response for one entry, the JSON object
// {"<uuid>": {body, integratedTime, logID, logIndex, verification}} served
// by /api/v1/log/entries and returned when the entry is created.
func ParseRekorEntry(data []byte) (*Entry, error) {
	if len(data) > maxInput {
		return nil, fmt.Errorf("%w: Rekor entry of %d bytes, at most %d expected", ErrMalformed, len(data), maxInput)
	}
	var m map[string]rekorEntry
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("%w: Rekor entry: %w", ErrMalformed, err)
	}
	if len(m) != 1 {
		return nil, fmt.Errorf("%w: Rekor response holds %d entries, want 1", ErrMalformed, len(m))
	}
	var r rekorEntry
	for _, v := range m {
		r = v
	}
	e := &Entry{IntegratedTime: r.IntegratedTime, LogIndex: r.LogIndex}
	var err error
	if e.Body, err = base64.StdEncoding.DecodeString(r.Body); err != nil || len(e.Body) == 0 {
		return nil, fmt.Errorf("%w: Rekor entry body is not base64", ErrMalformed)
	}
	if e.LogID, err = hex.DecodeString(r.LogID); err != nil || len(e.LogID) != 32 {
		return nil, fmt.Errorf("%w: Rekor log ID %q is not hex of 32 bytes", ErrMalformed, r.LogID)
	}
	if r.Verification == nil {
		return e, checkIndexes(e)
	}
	if s := r.Verification.SignedEntryTimestamp; s != "" {
		if e.SET, err = base64.StdEncoding.DecodeString(s); err != nil {
			return nil, fmt.Errorf("%w: signed entry timestamp is not base64", ErrMalformed)
		}
	}
	if p := r.Verification.InclusionProof; p != nil {
		e.Proof = &InclusionProof{LogIndex: p.LogIndex, TreeSize: p.TreeSize, Checkpoint: []byte(p.Checkpoint)}
		if e.Proof.RootHash, err = hex.DecodeString(p.RootHash); err != nil || len(e.Proof.RootHash) != 32 {
			return nil, fmt.Errorf("%w: inclusion proof root hash %q is not hex of 32 bytes", ErrMalformed, p.RootHash)
		}
		if e.Proof.Hashes, err = decodeHashes(p.Hashes, hex.DecodeString); err != nil {
			return nil, err
		}
	}
	return e, checkIndexes(e)
}

func decodeHashes(in []string, decode func(string) ([]byte, error)) ([][]byte, error) {
	if len(in) > maxHashes {
		return nil, fmt.Errorf("%w: inclusion proof of %d hashes, at most %d expected", ErrMalformed, len(in), maxHashes)
	}
	out := make([][]byte, len(in))
	for i, s := range in {
		h, err := decode(s)
		if err != nil || len(h) != 32 {
			return nil, fmt.Errorf("%w: inclusion proof hash %d is not 32 bytes", ErrMalformed, i)
		}
		out[i] = h
	}
	return out, nil
}

func checkIndexes(e *Entry) error {
	if e.LogIndex < 0 || e.IntegratedTime < 0 {
		return fmt.Errorf("%w: negative log index or time", ErrMalformed)
	}
	if p := e.Proof; p != nil && (p.LogIndex < 0 || p.TreeSize <= p.LogIndex) {
		return fmt.Errorf("%w: inclusion proof for index %d in a tree of size %d", ErrMalformed, p.LogIndex, p.TreeSize)
	}
	return nil
}

// HashedRekord is the content of a hashedrekord v0.0.1 entry body.
type HashedRekord struct {
	// Digest is the SHA-256 of the signed artifact.
	Digest []byte
	// Signature is the DER signature over Digest.
	Signature []byte
	// PublicKeyPEM is the PEM public key the signature verifies with.
	PublicKeyPEM []byte
}

// ParseHashedRekord parses a hashedrekord v0.0.1 entry body, as found in
// Entry.Body.
func ParseHashedRekord(body []byte) (*HashedRekord, error) {
	if len(body) > maxInput {
		return nil, fmt.Errorf("%w: entry body of %d bytes, at most %d expected", ErrMalformed, len(body), maxInput)
	}
	var b struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Spec       struct {
			Data struct {
				Hash struct {
					Algorithm string `json:"algorithm"`
					Value     string `json:"value"`
				} `json:"hash"`
			} `json:"data"`
			Signature struct {
				Content   []byte `json:"content"`
				PublicKey struct {
					Content []byte `json:"content"`
				} `json:"publicKey"`
			} `json:"signature"`
		} `json:"spec"`
	}
	if err := json.Unmarshal(body, &b); err != nil {
		return nil, fmt.Errorf("%w: entry body: %w", ErrMalformed, err)
	}
	if b.Kind != "hashedrekord" || b.APIVersion != "0.0.1" {
		return nil, fmt.Errorf("%w: entry of kind %q version %q, want hashedrekord 0.0.1", ErrMalformed, b.Kind, b.APIVersion)
	}
	if b.Spec.Data.Hash.Algorithm != "sha256" {
		return nil, fmt.Errorf("%w: entry hash algorithm %q, want sha256", ErrMalformed, b.Spec.Data.Hash.Algorithm)
	}
	digest, err := hex.DecodeString(b.Spec.Data.Hash.Value)
	if err != nil || len(digest) != 32 {
		return nil, fmt.Errorf("%w: entry hash %q is not hex of 32 bytes", ErrMalformed, b.Spec.Data.Hash.Value)
	}
	return &HashedRekord{Digest: digest, Signature: b.Spec.Signature.Content, PublicKeyPEM: b.Spec.Signature.PublicKey.Content}, nil
}

// pbInt is an int64 in protobuf's JSON mapping: written as a string, read
// from a string or a number.
type pbInt int64

func (n pbInt) MarshalJSON() ([]byte, error) {
	return json.Marshal(strconv.FormatInt(int64(n), 10))
}

func (n *pbInt) UnmarshalJSON(b []byte) error {
	s := string(b)
	if len(b) > 0 && b[0] == '"' {
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return fmt.Errorf("integer %s: %w", b, err)
	}
	*n = pbInt(v)
	return nil
}
