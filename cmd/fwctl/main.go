// Command fwctl signs and publishes firmware releases. See internal/fwctlcli.
package main

import (
	"os"

	"github.com/fwctl/fwctl/internal/fwctlcli"
)

func main() { os.Exit(fwctlcli.Main()) }
