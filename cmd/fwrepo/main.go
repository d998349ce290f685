// Command fwrepo serves a published fwctl repository. See internal/fwrepocli.
package main

import (
	"os"

	"github.com/fwctl/fwctl/internal/fwrepocli"
)

func main() { os.Exit(fwrepocli.Main()) }
