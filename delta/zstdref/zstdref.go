// Package zstdref compresses delta sections with the reference zstd library
// (libzstd, bundled by github.com/DataDog/zstd and built through cgo). Its
// high levels parse far better than the pure-Go encoder that package delta
// uses by default, which matters for the field streams of executables'
// deltas. Only the release side (fwctl, fwdelta) uses it: devices decode any
// zstd frame with the pure-Go decoder, and fwagent never links this package.
//
// Built without cgo, Compressor returns nil and delta falls back to its
// built-in encoder; the deltas are valid either way, only their size differs.
package zstdref

import "github.com/fwctl/fwctl/delta"

// Level is the zstd compression level used: the highest one that does not
// need the "ultra" window sizes, so its frames stay within the decoder's
// window limit for any section.
const Level = 19

// Compressor returns a delta.Compressor backed by libzstd at Level, or nil
// if this build has no cgo.
func Compressor() delta.Compressor { return compressor() }
