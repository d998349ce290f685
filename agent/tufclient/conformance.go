package tufclient

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"

	"github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/updater"

	"github.com/fwctl/fwctl/internal/atomicfile"
)

// Init stores rootFile as the trusted root.json of MetadataDir.
func (c *Client) Init(rootFile string) error {
	b, err := os.ReadFile(rootFile)
	if err != nil {
		return fmt.Errorf("read trusted root: %w", err)
	}
	if _, err := metadata.Root().FromBytes(b); err != nil {
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

// DownloadTo finds targetPath (following delegations) and stores it in dir
// under its URL-escaped path, skipping the download when a file with the
// right length and hash is already there. It reports whether it was cached.
func (c *Client) DownloadTo(ctx context.Context, up *updater.Updater, targetPath, dir string) (bool, error) {
	tf, err := up.GetTargetInfo(targetPath)
	if err != nil {
		return false, fmt.Errorf("target %s: %w", targetPath, err)
	}
	dst := filepath.Join(dir, url.PathEscape(targetPath))
	if fileMatches(dst, tf) {
		return true, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return false, err
	}
	return false, atomicfile.WriteFrom(dst, func(w io.Writer) error {
		return c.Download(ctx, up, tf, w, nil)
	}, 0o644)
}

func fileMatches(path string, tf *metadata.TargetFiles) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, io.LimitReader(f, tf.Length+1))
	return err == nil && n == tf.Length && hex.EncodeToString(h.Sum(nil)) == hex.EncodeToString(tf.Hashes["sha256"])
}
