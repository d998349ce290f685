//go:build !unix

package delta

import (
	"errors"
	"os"
)

func mapFile(*os.File, int64) ([]byte, error) { return nil, errors.ErrUnsupported }
func unmapFile([]byte)                        {}
func dropPages([]byte)                        {}

func allocTable(n int) (mem []byte, free func()) { return make([]byte, n), nil }
