package fwrepocli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/fwctl/fwctl/internal/cli"
	"github.com/fwctl/fwctl/manifests"
)

func init() { registerCommand(reportsCmd) }

// ReportsDir is the directory of a stick where 'fwagent report --to' puts
// offline reports (examples/offline/fwctl-stick-update).
const reportsDir = "fwctl-reports"

// importedReport is one line of 'fwrepo reports import'.
type importedReport struct {
	File     string `json:"file"`
	DeviceID string `json:"device_id,omitempty"`
	Seq      uint64 `json:"seq,omitempty"`
	Imported bool   `json:"imported"`
	Error    string `json:"error,omitempty"`
}

func reportsCmd(jsonOut *bool) *cobra.Command {
	var dbPath string
	c := &cobra.Command{
		Use:     "reports",
		Short:   "Offline device reports: import the signed reports devices wrote to a stick",
		Example: "  fwrepo reports import --db fleet.db /media/stick",
		Args:    cobra.NoArgs,
	}
	c.PersistentFlags().StringVar(&dbPath, "db", "", "inventory database, shared with 'fwrepo serve --db' (default $"+DBEnv+", else fwrepo.db)")
	imp := &cobra.Command{
		Use:   "import PATH...",
		Short: "Verify offline device reports against the registered identities and store them",
		Long: `Import the signed device reports that 'fwagent report --to DIR' wrote on an
offline site. PATH is a report file, a directory of them, or a stick's mount
point (its fwctl-reports/ directory is read). Each report is verified against
the key registered for its device and must carry a report sequence number above
the latest stored for that device (online or offline), so a replayed or older
report is refused; an accepted one updates the fleet view and the attempt
history that rollouts advance on, as an online report does. A refused report
changes nothing. Exit 3: at least one report was refused (the others are
imported).`,
		Example: `  fwrepo reports import --db fleet.db /media/stick`,
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			paths, err := reportFiles(args)
			if err != nil {
				return cli.WithCode(cli.ExitUsage, err)
			}
			files := readReports(paths)
			db, err := openInventory(dbPath)
			if err != nil {
				return err
			}
			defer db.Close()
			out := struct {
				Reports []importedReport `json:"reports"`
			}{Reports: []importedReport{}}
			refused := 0
			for _, f := range files {
				r := importedReport{File: f.path}
				m, err := f.m, f.err
				if err == nil {
					m, err = db.Import(cmd.Context(), f.raw)
				}
				if err != nil {
					r.Error = err.Error()
					refused++
				} else {
					r.DeviceID, r.Seq, r.Imported = m.DeviceID, m.Seq, true
				}
				out.Reports = append(out.Reports, r)
			}
			if err := cli.Std(*jsonOut).Result(out, func(w io.Writer) {
				for _, r := range out.Reports {
					if r.Imported {
						fmt.Fprintf(w, "imported %s: device %s, report %d\n", r.File, r.DeviceID, r.Seq)
					} else {
						fmt.Fprintf(w, "refused  %s: %s\n", r.File, r.Error)
					}
				}
			}); err != nil {
				return err
			}
			if refused > 0 {
				return cli.WithCode(cli.ExitRefused, fmt.Errorf("%d of %d reports refused", refused, len(files)))
			}
			return nil
		},
	}
	c.AddCommand(imp)
	return c
}

// reportFile is one report read from disk: its bytes, and its manifest
// as parsed before verification (used only to order the imports).
type reportFile struct {
	path string
	raw  []byte
	m    *manifests.DeviceManifest
	err  error
}

// readReports reads the files and orders them by report sequence, so that
// a stick holding several reports of one device imports them oldest
// first (each must be newer than the last stored).
func readReports(paths []string) []reportFile {
	out := make([]reportFile, 0, len(paths))
	for _, p := range paths {
		r := reportFile{path: p}
		f, err := os.Open(p)
		if err == nil {
			r.raw, err = io.ReadAll(io.LimitReader(f, manifests.MaxDeviceManifestSize+1))
			f.Close()
		}
		if err == nil {
			var s *manifests.SignedDeviceManifest
			if s, err = manifests.ParseDeviceManifest(r.raw); err == nil {
				r.m = s.Manifest
			}
		}
		r.err = err
		out = append(out, r)
	}
	seq := func(r reportFile) uint64 {
		if r.m == nil {
			return 0
		}
		return r.m.Seq
	}
	sort.SliceStable(out, func(i, j int) bool { return seq(out[i]) < seq(out[j]) })
	return out
}

// reportFiles expands the arguments: a file is itself, a directory its
// *.json files (a stick's mount point: those of its fwctl-reports/).
func reportFiles(args []string) ([]string, error) {
	var files []string
	for _, a := range args {
		fi, err := os.Stat(a)
		if err != nil {
			return nil, err
		}
		if !fi.IsDir() {
			files = append(files, a)
			continue
		}
		dir := a
		if sub, err := os.Stat(filepath.Join(a, reportsDir)); err == nil && sub.IsDir() {
			dir = filepath.Join(a, reportsDir)
		}
		ents, err := os.ReadDir(dir)
		if err != nil {
			return nil, err
		}
		n := len(files)
		for _, e := range ents {
			if e.Type().IsRegular() && strings.HasSuffix(e.Name(), ".json") && !strings.HasPrefix(e.Name(), ".") {
				files = append(files, filepath.Join(dir, e.Name()))
			}
		}
		sort.Strings(files[n:])
		if len(files) == n {
			return nil, fmt.Errorf("%s: no *.json reports (fwagent report --to writes them into %s/ on the stick)", dir, reportsDir)
		}
	}
	if len(files) == 0 {
		return nil, errors.New("no report files")
	}
	return files, nil
}
