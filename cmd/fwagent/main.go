// Command fwagent is the device-side updater. See internal/fwagentcli.
package main

import (
	"os"

	"github.com/fwctl/fwctl/internal/fwagentcli"
)

func main() { os.Exit(fwagentcli.Main()) }
