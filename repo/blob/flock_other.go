//go:build !unix

package blob

import (
	"errors"
	"os"
)

// flock is not available here: fwrepo and fwctl publish into a directory
// run on Unix.
func flock(*os.File) error {
	return errors.New("file locks are only supported on Unix")
}
