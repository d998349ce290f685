package tlog

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
)

// maxNote bounds a checkpoint: real ones are a few hundred bytes.
const maxNote = 64 << 10

// Checkpoint is a log's signed commitment to its tree at one size. Only
// VerifyCheckpoint produces one, so a *Checkpoint has been verified.
type Checkpoint struct {
	// Origin names the log (for Rekor v1, "hostname - treeID").
	Origin string
	// Size is the number of entries in the tree.
	Size uint64
	// RootHash is the tree's RFC 6962 root hash.
	RootHash []byte
	// Extensions are the note's further lines, e.g. "Timestamp: ...".
	Extensions []string
	// Note is the complete signed note, to persist as the last accepted
	// checkpoint and verify again when loaded.
	Note []byte
}

type noteSig struct {
	name string
	hint []byte // first 4 bytes of the key ID
	sig  []byte
}

// parseNote splits a signed note into its text (ending in a newline) and
// its signature lines, following the format of golang.org/x/mod/sumdb/note.
func parseNote(note []byte) (*Checkpoint, []noteSig, error) {
	if len(note) > maxNote {
		return nil, nil, fmt.Errorf("%w: checkpoint of %d bytes, at most %d expected", ErrMalformed, len(note), maxNote)
	}
	if !utf8.Valid(note) {
		return nil, nil, fmt.Errorf("%w: checkpoint is not UTF-8", ErrMalformed)
	}
	i := bytes.LastIndex(note, []byte("\n\n"))
	if i < 0 {
		return nil, nil, fmt.Errorf("%w: checkpoint has no signature block", ErrMalformed)
	}
	text, sigBlock := note[:i+1], note[i+2:]
	lines := strings.Split(strings.TrimSuffix(string(text), "\n"), "\n")
	if len(lines) < 3 {
		return nil, nil, fmt.Errorf("%w: checkpoint has %d lines, want origin, size and root hash", ErrMalformed, len(lines))
	}
	cp := &Checkpoint{Origin: lines[0], Extensions: lines[3:], Note: note}
	if cp.Origin == "" {
		return nil, nil, fmt.Errorf("%w: checkpoint has an empty origin", ErrMalformed)
	}
	size, err := strconv.ParseUint(lines[1], 10, 64)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: checkpoint size %q: %w", ErrMalformed, lines[1], err)
	}
	cp.Size = size
	root, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(root) != sha256.Size {
		return nil, nil, fmt.Errorf("%w: checkpoint root hash %q is not base64 of 32 bytes", ErrMalformed, lines[2])
	}
	cp.RootHash = root

	var sigs []noteSig
	if !bytes.HasSuffix(sigBlock, []byte("\n")) {
		return nil, nil, fmt.Errorf("%w: checkpoint signature block does not end in a newline", ErrMalformed)
	}
	for _, line := range strings.Split(strings.TrimSuffix(string(sigBlock), "\n"), "\n") {
		rest, ok := strings.CutPrefix(line, "— ")
		if !ok {
			return nil, nil, fmt.Errorf("%w: checkpoint signature line %q does not start with an em dash", ErrMalformed, line)
		}
		name, b64, ok := strings.Cut(rest, " ")
		if !ok || name == "" {
			return nil, nil, fmt.Errorf("%w: checkpoint signature line %q has no name", ErrMalformed, line)
		}
		raw, err := base64.StdEncoding.DecodeString(b64)
		if err != nil || len(raw) <= 4 {
			return nil, nil, fmt.Errorf("%w: checkpoint signature of %q is not base64 of a key hint and a signature", ErrMalformed, name)
		}
		sigs = append(sigs, noteSig{name: name, hint: raw[:4], sig: raw[4:]})
	}
	return cp, sigs, nil
}

// VerifyCheckpoint parses a signed checkpoint note and checks that it
// carries a valid signature by logKey (ECDSA over the SHA-256 of the note's
// text, key hint = first 4 bytes of the key ID). Signatures by other keys,
// such as witnesses, are ignored.
func VerifyCheckpoint(note []byte, logKey *ecdsa.PublicKey) (*Checkpoint, error) {
	cp, sigs, err := parseNote(note)
	if err != nil {
		return nil, err
	}
	id, err := KeyID(logKey)
	if err != nil {
		return nil, err
	}
	text := note[:bytes.LastIndex(note, []byte("\n\n"))+1]
	digest := sha256.Sum256(text)
	for _, s := range sigs {
		if bytes.Equal(s.hint, id[:4]) && ecdsa.VerifyASN1(logKey, digest[:], s.sig) {
			return cp, nil
		}
	}
	return nil, fmt.Errorf("%w: no valid signature by log key %x on checkpoint %q size %d", ErrBadCheckpoint, id[:4], cp.Origin, cp.Size)
}

// Consistent checks a consistency proof (as served by Rekor's
// /api/v1/log/proof) that the tree committed to by newer extends the one
// committed to by older. Both must come from VerifyCheckpoint.
func Consistent(older, newer *Checkpoint, hashes [][]byte) error {
	if older == nil || newer == nil {
		return fmt.Errorf("%w: missing checkpoint", ErrMalformed)
	}
	if older.Origin != newer.Origin {
		return fmt.Errorf("%w: checkpoint from log %q, expected log %q", ErrInconsistent, newer.Origin, older.Origin)
	}
	if older.Size > newer.Size {
		return fmt.Errorf("%w: tree size %d is smaller than %d", ErrRollback, newer.Size, older.Size)
	}
	if err := proof.VerifyConsistency(rfc6962.DefaultHasher, older.Size, newer.Size, hashes, older.RootHash, newer.RootHash); err != nil {
		return fmt.Errorf("%w: from size %d to %d: %w", ErrInconsistent, older.Size, newer.Size, err)
	}
	return nil
}

// Advance applies the rule for the last accepted checkpoint: next may
// replace last only if it is for the same log, not smaller, and provably
// extends it (hashes is the consistency proof from last.Size to next.Size;
// none is needed for the same size). A nil last accepts next: the first
// checkpoint is trusted as shipped, ideally inside signed metadata so that
// the whole fleet shares one view of the log. Advance returns the
// checkpoint to keep.
func Advance(last, next *Checkpoint, hashes [][]byte) (*Checkpoint, error) {
	if next == nil {
		return nil, fmt.Errorf("%w: missing checkpoint", ErrMalformed)
	}
	if last == nil {
		return next, nil
	}
	if err := Consistent(last, next, hashes); err != nil {
		return nil, err
	}
	return next, nil
}
