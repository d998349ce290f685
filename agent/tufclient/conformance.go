package tufclient

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/fwctl/fwctl/agent/tuf"
	"github.com/fwctl/fwctl/internal/atomicfile"
)

// Init stores rootFile as the trusted root.json of MetadataDir.
func (c *Client) Init(rootFile string) error {
	b, err := os.ReadFile(rootFile)
	if err != nil {
		return fmt.Errorf("read trusted root: %w", err)
	}
	if _, err := tuf.ParseRoot(b); err != nil {
		return fmt.Errorf("trusted root %s is not valid root metadata: %w", rootFile, err)
	}
	if err := os.MkdirAll(c.MetadataDir, 0o700); err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(c.MetadataDir, "root.json"), b, 0o644)
}

// TrustedRoot reads root.json from MetadataDir.
func (c *Client) TrustedRoot() ([]byte, error) {
	b, err := os.ReadFile(filepath.Join(c.MetadataDir, "root.json"))
	if err != nil {
		return nil, fmt.Errorf("no trusted root in %s: %w", c.MetadataDir, err)
	}
	return b, nil
}
