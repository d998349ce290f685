package agent

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/fwctl/fwctl/internal/atomicfile"
	"github.com/fwctl/fwctl/manifests"
)

// nextReportSeq returns the sequence number of the next device manifest
// and stores it before the manifest is signed, so no two reports share
// one. It starts at the clock's Unix seconds when that is larger, so a
// device whose state directory was wiped (and whose clock is right) goes
// on above the reports fwrepo already holds (docs/offline.md).
func (a *Agent) nextReportSeq() (uint64, error) {
	p := filepath.Join(a.cfg.StateDir, "report.seq")
	var last uint64
	b, err := os.ReadFile(p)
	switch {
	case err == nil:
		if last, err = strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64); err != nil {
			return 0, fmt.Errorf("report sequence %s: %w (remove the file: the next report then starts at the clock's Unix seconds)", p, err)
		}
	case !errors.Is(err, fs.ErrNotExist):
		return 0, fmt.Errorf("report sequence: %w", err)
	}
	seq := max(last+1, uint64(max(a.Now().Unix(), 0)))
	if err := atomicfile.Write(p, []byte(strconv.FormatUint(seq, 10)+"\n"), 0o600); err != nil {
		return 0, fmt.Errorf("report sequence: %w", err)
	}
	return seq, nil
}

// ReportTo writes a signed device manifest with no nonce (an offline
// report) into dir, as DEVICE-SEQ.json, for 'fwrepo reports import' to
// verify against the registered key and store. Its freshness is its
// sequence number, which fwrepo requires to be above any it stored.
func (a *Agent) ReportTo(ctx context.Context, key DeviceSigner, opt ReportOptions, dir string) (*ReportResult, string, error) {
	id := opt.DeviceID
	if id == "" {
		id = key.KeyID()
	}
	seq, err := a.nextReportSeq()
	if err != nil {
		return nil, "", err
	}
	m, err := a.manifest(ctx, id, "", seq)
	if err != nil {
		return nil, "", err
	}
	env, err := manifests.SignDeviceManifest(m, key)
	if err != nil {
		return nil, "", err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, "", fmt.Errorf("offline report: %w", err)
	}
	// ':' is valid in a device ID but not in a vfat file name; the name
	// is informational, the signed content decides.
	p := filepath.Join(dir, strings.ReplaceAll(id, ":", "_")+"-"+strconv.FormatUint(seq, 10)+".json")
	if err := writeNew(p, env); err != nil {
		return nil, "", fmt.Errorf("offline report: %w", err)
	}
	a.log.Info("offline device manifest written", "device", id, "seq", seq, "path", p)
	return &ReportResult{DeviceID: id, KeyID: key.KeyID(), Manifest: m}, p, nil
}

// writeNew writes a new file whole (a temp file, fsync, rename) without
// atomicfile's chmod, which vfat through fusefat does not implement.
func writeNew(p string, b []byte) error {
	f, err := os.CreateTemp(filepath.Dir(p), "."+filepath.Base(p)+".tmp-*")
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), p)
	}
	if err != nil {
		os.Remove(f.Name())
		return err
	}
	return atomicfile.SyncDir(filepath.Dir(p))
}
