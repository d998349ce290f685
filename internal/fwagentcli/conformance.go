package fwagentcli

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/fwctl/fwctl/agent/tufclient"
)

// conformanceCmd implements the tuf-conformance client-under-test protocol
// over the same TUF client (fetcher and metadata store) the agent uses.
func conformanceCmd() *cobra.Command {
	var (
		metadataDir, metadataURL, targetBaseURL, targetDir string
		targetNames                                        []string
	)
	c := &cobra.Command{
		Use:   "tuf-conformance (init TRUSTED_ROOT | refresh | download)",
		Short: "TUF conformance client-under-test entry point (exit 0 on success, 1 on any failure)",
		Args:  cobra.RangeArgs(1, 2),
		RunE: func(_ *cobra.Command, args []string) error {
			if metadataDir == "" {
				return errors.New("--metadata-dir is required")
			}
			cl := tufclient.New("", metadataDir)
			cl.MetadataURL = strings.TrimSuffix(metadataURL, "/")
			cl.TargetsURL = strings.TrimSuffix(targetBaseURL, "/")
			switch args[0] {
			case "init":
				if len(args) != 2 {
					return errors.New("init needs TRUSTED_ROOT")
				}
				return cl.Init(args[1])
			case "refresh", "download":
				if metadataURL == "" {
					return errors.New("--metadata-url is required")
				}
				root, err := cl.TrustedRoot()
				if err != nil {
					return err
				}
				up, err := cl.Refresh(root)
				if err != nil {
					return err
				}
				if args[0] == "refresh" {
					return nil
				}
				if targetBaseURL == "" || targetDir == "" || len(targetNames) == 0 {
					return errors.New("download needs --target-name, --target-base-url and --target-dir")
				}
				for _, name := range targetNames {
					if _, err := cl.DownloadTo(context.Background(), up, name, targetDir); err != nil {
						return err
					}
				}
				return nil
			}
			return fmt.Errorf("unknown command %q: want init, refresh or download", args[0])
		},
	}
	c.Flags().StringVar(&metadataDir, "metadata-dir", "", "trusted metadata directory")
	c.Flags().StringVar(&metadataURL, "metadata-url", "", "repository metadata URL")
	c.Flags().StringArrayVar(&targetNames, "target-name", nil, "target path to download (repeatable)")
	c.Flags().StringVar(&targetBaseURL, "target-base-url", "", "repository targets URL")
	c.Flags().StringVar(&targetDir, "target-dir", "", "directory for downloaded targets")
	c.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return err })
	return c
}
