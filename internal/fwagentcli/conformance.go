package fwagentcli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/fwctl/fwctl/agent/tufclient"
)

// conformanceCmd implements the tuf-conformance client-under-test protocol
// over the same TUF client (fetcher, verifier and metadata store) the
// agent uses.
func conformanceCmd() *command {
	var (
		metadataDir, metadataURL, targetBaseURL, targetDir string
		targetNames                                        stringList
	)
	return &command{
		name:      "tuf-conformance",
		args:      "--metadata-dir DIR [--metadata-url URL] [--target-name PATH ...] [--target-base-url URL] [--target-dir DIR] (init TRUSTED_ROOT | refresh | download)",
		short:     "TUF conformance client-under-test entry point (exit 0 on success, 1 on any failure)",
		usageCode: 1,
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&metadataDir, "metadata-dir", "", "trusted metadata directory")
			fs.StringVar(&metadataURL, "metadata-url", "", "repository metadata URL")
			fs.Var(&targetNames, "target-name", "target path to download (repeatable)")
			fs.StringVar(&targetBaseURL, "target-base-url", "", "repository targets URL")
			fs.StringVar(&targetDir, "target-dir", "", "directory for downloaded targets")
		},
		run: func(args []string) error {
			if len(args) == 0 || len(args) > 2 {
				return errors.New("want one of: init TRUSTED_ROOT, refresh, download")
			}
			if metadataDir == "" {
				return errors.New("--metadata-dir is required")
			}
			cl := tufclient.New("", metadataDir)
			cl.MetadataURL = strings.TrimSuffix(metadataURL, "/")
			cl.TargetsURL = strings.TrimSuffix(targetBaseURL, "/")
			cl.RefTime = referenceTime()
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
				ctx := context.Background()
				tr, err := cl.Update(ctx, root)
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
					if _, err := cl.SaveTarget(ctx, tr, name, targetDir); err != nil {
						return err
					}
				}
				return nil
			}
			return fmt.Errorf("unknown command %q: want init, refresh or download", args[0])
		},
	}
}

// referenceTime is the time the date command reports. The conformance
// suite shifts the clock with libfaketime, which moves libc's clock; Go
// reads the time without libc, so this entry point asks a dynamically
// linked program instead. (The agent itself keeps its injected clock.)
func referenceTime() time.Time {
	out, err := exec.Command("date", "+%s").Output()
	if err != nil {
		return time.Now()
	}
	sec, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
	if err != nil {
		return time.Now()
	}
	return time.Unix(sec, 0)
}

// stringList is a repeatable string flag.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }
