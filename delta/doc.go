// Package delta encodes and applies binary deltas between firmware images.
//
// A delta rebuilds a result image from a base image the device already has.
// Encode runs on the release side with both images in memory; Apply runs on
// the device, reads the base through io.ReaderAt, writes the result
// sequentially and verifies it, with memory bounded by the block size (a
// few MiB) whatever the image size. The format is specified in FORMAT.md.
//
// The package never writes the base and never trusts the delta: every length
// it reads is capped, and a corrupt, truncated or malicious delta yields an
// error wrapping ErrCorrupt, never a panic or an unbounded allocation.
package delta
