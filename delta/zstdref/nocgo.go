//go:build !cgo

package zstdref

import "github.com/fwctl/fwctl/delta"

func compressor() delta.Compressor { return nil }
