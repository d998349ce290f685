package delta

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
)

// Magic opens every delta file. See FORMAT.md for the full layout.
const Magic = "FWDELTA\x00"

// Version is the format version this package writes. It also reads every
// version from minVersion on. Any change to the bytes a decoder accepts bumps
// it; FORMAT.md keeps the history and testdata/golden keeps a vector of
// every version.
const Version = 7

// minVersion is the oldest version this package decodes: version 2 is
// version 3 without executable transforms; version 4 is version 3 with one
// more transform architecture (archRVC); version 5 adds the table kinds,
// version 6 the address map for riscv64 code, version 7 for arm64 code too.
const minVersion = 2

// retired lists format versions that once existed and that this package
// refuses with ErrRetired rather than as unknown. Version 1 was changed twice
// in place before versions were enforced (see FORMAT.md), so a version-1
// delta cannot be decoded reliably: it must be re-created.
var retired = map[uint16]string{
	1: "re-create the delta from its base and target with this fwctl (fwctl delta or fwdelta)",
}

// HeaderSize is the encoded size of a Header in bytes.
const HeaderSize = 8 + 2 + 2 + 4 + 8 + 32 + 8 + 32 + 4

// Limits enforced on every delta read, whatever its header claims. They bound
// the memory Apply needs, independent of the image size.
const (
	// MaxBlockSize is the largest result span one block may produce.
	MaxBlockSize = 4 << 20
	// maxCtrlSlack lets a tiny block have a control section longer than
	// its result (ops are at least 3 bytes).
	maxCtrlSlack = 64
	// MaxImageSize caps base and result lengths (1 TiB).
	MaxImageSize = 1 << 40
)

// Errors returned by ReadHeader and Apply. Callers branch with errors.Is;
// the returned error wraps one of these with detail.
var (
	// ErrCorrupt means the delta is malformed, truncated or inconsistent.
	ErrCorrupt = errors.New("delta: corrupt or truncated delta")
	// ErrUnsupported means the delta has an unknown magic, version or flag.
	ErrUnsupported = errors.New("delta: unsupported delta format")
	// ErrRetired means the delta has a version this package once wrote but
	// no longer reads. It wraps ErrUnsupported, so callers that only fall
	// back to a full image on ErrUnsupported keep working.
	ErrRetired = fmt.Errorf("%w: retired format version", ErrUnsupported)
	// ErrBaseMismatch means the base given to Apply is not the one the delta was made for.
	ErrBaseMismatch = errors.New("delta: base image does not match delta")
	// ErrResultMismatch means the rebuilt image does not have the length or
	// sha256 recorded in the header.
	ErrResultMismatch = errors.New("delta: result does not match expected hash or length")
)

// Header is the fixed-size preamble of a delta. A device reads it first
// (ReadHeader) to check that it holds the right base before downloading the
// rest.
type Header struct {
	// Version is the format version of the delta.
	Version uint16
	// BlockSize is the largest number of result bytes any block produces.
	BlockSize uint32
	// BaseLen and BaseSHA256 identify the image the delta applies to.
	BaseLen    int64
	BaseSHA256 [sha256.Size]byte
	// ResultLen and ResultSHA256 identify the image the delta rebuilds.
	ResultLen    int64
	ResultSHA256 [sha256.Size]byte
}

// String gives a one-line human summary.
func (h Header) String() string {
	return fmt.Sprintf("delta v%d base %d bytes sha256:%s -> result %d bytes sha256:%s",
		h.Version, h.BaseLen, hex.EncodeToString(h.BaseSHA256[:]), h.ResultLen,
		hex.EncodeToString(h.ResultSHA256[:]))
}

func (h Header) marshal() []byte {
	b := make([]byte, 0, HeaderSize)
	b = append(b, Magic...)
	b = binary.BigEndian.AppendUint16(b, h.Version)
	b = binary.BigEndian.AppendUint16(b, 0) // flags
	b = binary.BigEndian.AppendUint32(b, h.BlockSize)
	b = binary.BigEndian.AppendUint64(b, uint64(h.BaseLen))
	b = append(b, h.BaseSHA256[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(h.ResultLen))
	b = append(b, h.ResultSHA256[:]...)
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ReadHeader reads and validates the header at the start of a delta. It
// consumes exactly HeaderSize bytes of r.
func ReadHeader(r io.Reader) (Header, error) {
	var b [HeaderSize]byte
	// Check the magic before the rest, so that a short file that is not a
	// delta at all is reported as such.
	_, err := io.ReadFull(r, b[:len(Magic)])
	if err == nil && string(b[:len(Magic)]) != Magic {
		return Header{}, fmt.Errorf("%w: bad magic %q (not an fwctl delta)", ErrUnsupported, b[:len(Magic)])
	}
	if err == nil {
		_, err = io.ReadFull(r, b[len(Magic):])
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return Header{}, fmt.Errorf("%w: header: %v", ErrCorrupt, io.ErrUnexpectedEOF)
	}
	if err != nil {
		return Header{}, fmt.Errorf("delta: read header: %w", err)
	}
	return parseHeader(b[:])
}

func parseHeader(b []byte) (Header, error) {
	var h Header
	if string(b[:8]) != Magic {
		return h, fmt.Errorf("%w: bad magic %q (not an fwctl delta)", ErrUnsupported, b[:8])
	}
	if v := binary.BigEndian.Uint16(b[8:]); v < minVersion || v > Version {
		if what, ok := retired[v]; ok {
			return h, fmt.Errorf("%w: version %d is no longer supported; %s", ErrRetired, v, what)
		}
		return h, fmt.Errorf("%w: version %d, this build reads versions %d to %d", ErrUnsupported, v, minVersion, Version)
	}
	h.Version = binary.BigEndian.Uint16(b[8:])
	if got, want := binary.BigEndian.Uint32(b[HeaderSize-4:]), crc32.Checksum(b[:HeaderSize-4], castagnoli); got != want {
		return h, fmt.Errorf("%w: header checksum %08x, computed %08x", ErrCorrupt, got, want)
	}
	if f := binary.BigEndian.Uint16(b[10:]); f != 0 {
		return h, fmt.Errorf("%w: unknown flags %#04x", ErrUnsupported, f)
	}
	h.BlockSize = binary.BigEndian.Uint32(b[12:])
	baseLen := binary.BigEndian.Uint64(b[16:])
	copy(h.BaseSHA256[:], b[24:56])
	resLen := binary.BigEndian.Uint64(b[56:])
	copy(h.ResultSHA256[:], b[64:96])
	if h.BlockSize == 0 || h.BlockSize > MaxBlockSize {
		return h, fmt.Errorf("%w: block size %d outside 1..%d", ErrCorrupt, h.BlockSize, MaxBlockSize)
	}
	if baseLen > MaxImageSize || resLen > MaxImageSize {
		return h, fmt.Errorf("%w: image length above %d", ErrCorrupt, int64(MaxImageSize))
	}
	h.BaseLen, h.ResultLen = int64(baseLen), int64(resLen)
	return h, nil
}

// A block holds these sections, in this order; see FORMAT.md.
const (
	secCtrl  = iota // ops
	secGaps         // zero diff bytes before each patched field
	secSizes        // byte length of each field's difference, minus one
	secVals         // each field's arithmetic difference, zig-zag, little-endian
	secExtra        // literal bytes
	numSections
)

// blockConverted is the version-3 block flag: the block copies from the
// base converted by the base's transforms and produces the result converted
// by the result's, which the decoder converts back.
const blockConverted = 1

// fieldLen is the widest patched field: a little-endian 32-bit word, the
// size of x86 rel32 displacements and of the low half of moved pointers,
// whose arithmetic difference is the same small number across a whole
// table or function where the bytewise difference varies with carries.
const fieldLen = 4

// maxRaw is the most uncompressed section bytes a block of outLen result
// bytes may carry; it bounds Apply's buffers.
func maxRaw(outLen int) int { return 2*outLen + maxCtrlSlack }
