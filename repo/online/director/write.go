package director

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/fwctl/fwctl/manifests"
	"github.com/fwctl/fwctl/repo/blob"
)

// write stores every job's files so that no timestamp names a file that
// is not there, and no published name ever holds a partly written file.
// In a directory store, without one fsync per file: every file is first
// written under a temp name, one sync of the file system makes them all
// durable, the versioned files are renamed into place, a second sync makes
// those renames durable, then the timestamps are renamed into place and a
// third sync makes them durable before write returns. A crash leaves each
// device's old or new timestamp, and a timestamp only ever names files
// whose bytes and names were durable before it. (A wave of 10,000
// devices otherwise spends its time in 30,000-60,000 fsyncs.) Other
// stores write every file by Put, timestamps last.
//
// The durations of the directory store's phases are appended to *phases
// (for the publish log line).
func (d *Director) write(ctx context.Context, jobs []job, phases *[]any) error {
	dir, fast := d.st.(blob.Dir)
	fast = fast && canSync
	var mu sync.Mutex
	done := func(j *job) {
		mu.Lock()
		d.devices[j.id] = j.next
		mu.Unlock()
	}
	if !fast {
		return parallel(ctx, len(jobs), d.workers(), func(i int) error {
			j := &jobs[i]
			if j.skip {
				return nil
			}
			for k, name := range j.names {
				if err := d.st.Put(ctx, name, bytes.NewReader(j.data[k]), int64(len(j.data[k]))); err != nil {
					return fmt.Errorf("publish director metadata of %s: %w", j.id, err)
				}
			}
			done(j)
			return nil
		})
	}
	t0 := time.Now()
	phase := func(name string) {
		*phases = append(*phases, name, time.Since(t0).Round(time.Millisecond).String())
		t0 = time.Now()
	}
	// Every name is under director/devices/, opened once: the files are
	// created and renamed by paths relative to it.
	devices := filepath.Join(string(dir), filepath.FromSlash(devicesPrefix))
	if err := os.MkdirAll(devices, 0o755); err != nil {
		return fmt.Errorf("publish director metadata: %w", err)
	}
	rd, err := openRel(devices)
	if err != nil {
		return fmt.Errorf("publish director metadata: %w", err)
	}
	defer rd.close()
	rel := func(name string) string { return strings.TrimPrefix(name, devicesPrefix) }
	temps := make([][]string, len(jobs))
	defer func() { // what was not renamed (an error on the way)
		for _, ts := range temps {
			for _, t := range ts {
				if t != "" {
					rd.remove(t)
				}
			}
		}
	}()
	if err := parallel(ctx, len(jobs), d.workers(), func(i int) error {
		j := &jobs[i]
		if j.skip || len(j.names) == 0 {
			return nil
		}
		for _, name := range j.names {
			if !strings.HasPrefix(name, devicesPrefix) {
				return fmt.Errorf("publish director metadata of %s: %s is not under %s", j.id, name, devicesPrefix)
			}
		}
		temps[i] = make([]string, len(j.names))
		// A device with a timestamp has its directories; a new one (or
		// one whose directory went away) makes them.
		mkdirs := func() error {
			md := path.Dir(rel(j.names[0]))
			if err := rd.mkdir(path.Dir(md)); err != nil {
				return err
			}
			return rd.mkdir(md)
		}
		made := j.dev.version == 0
		if made {
			if err := mkdirs(); err != nil {
				return fmt.Errorf("publish director metadata of %s: %w", j.id, err)
			}
		}
		for k, name := range j.names {
			t, err := rd.create(rel(name), j.data[k])
			if err != nil && !made && errors.Is(err, os.ErrNotExist) {
				made = true
				if err = mkdirs(); err == nil {
					t, err = rd.create(rel(name), j.data[k])
				}
			}
			if err != nil {
				return fmt.Errorf("publish director metadata of %s: %w", j.id, err)
			}
			temps[i][k] = t
		}
		return nil
	}); err != nil {
		return err
	}
	phase("write_files")
	rename := func(timestamps bool) error {
		if err := syncAll(string(dir)); err != nil {
			return fmt.Errorf("publish director metadata: sync %s: %w", dir, err)
		}
		phase("write_sync")
		defer phase("write_rename")
		return parallel(ctx, len(jobs), d.workers(), func(i int) error {
			j := &jobs[i]
			if temps[i] == nil {
				return nil
			}
			for k, name := range j.names {
				if (k == len(j.names)-1) != timestamps || temps[i][k] == "" {
					continue
				}
				if err := rd.rename(temps[i][k], rel(name)); err != nil {
					return fmt.Errorf("publish director metadata of %s: %w", j.id, err)
				}
				temps[i][k] = ""
				if timestamps {
					done(j)
				}
			}
			return nil
		})
	}
	if err := rename(false); err != nil {
		return err
	}
	if err := rename(true); err != nil {
		return err
	}
	if err := syncAll(string(dir)); err != nil {
		return fmt.Errorf("publish director metadata: sync %s: %w", dir, err)
	}
	phase("write_sync")
	return nil
}

// devicesPrefix is where the devices' metadata lives in the store.
const devicesPrefix = "director/devices/"

// staleTemp is how old a temp file in a device directory must be for
// Open to remove it as the leftover of an interrupted publish. A publish
// renames its temp files within seconds (minutes on a very busy machine),
// so one of another process that is still under way is never touched.
const staleTemp = time.Hour

// isTemp reports whether name is a temp file of a publish: ".NAME.tmpN"
// (write) or ".NAME.tmp-N" (blob.Dir's Put), where NAME is a name a device
// directory publishes. A published name never starts with '.'.
func isTemp(name string) bool {
	rest, ok := strings.CutPrefix(name, ".")
	if !ok {
		return false
	}
	i := strings.LastIndex(rest, ".tmp")
	if i < 0 {
		return false
	}
	base := rest[:i]
	return base == "timestamp.json" || versioned(base, "targets") || versioned(base, "snapshot") || versioned(base, "root")
}

// sweep removes the temp files an interrupted publish (a crash between
// writing them and renaming them into place) left in a directory store's
// device directories, if they are older than staleTemp. Nothing else is
// touched; errors are logged, never fatal.
func (d *Director) sweep() {
	dir, ok := d.st.(blob.Dir)
	if !ok {
		return
	}
	start := time.Now()
	devices := filepath.Join(string(dir), filepath.FromSlash(devicesPrefix))
	ids, err := os.ReadDir(devices)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			d.opt.Log.Warn("director: cannot look for temp files of an interrupted publish", "err", err)
		}
		return
	}
	cutoff := time.Now().Add(-staleTemp)
	removed := 0
	for _, e := range ids {
		if !e.IsDir() || !manifests.ValidDeviceID(e.Name()) {
			continue
		}
		md := filepath.Join(devices, e.Name(), "metadata")
		files, err := os.ReadDir(md)
		if err != nil {
			continue
		}
		for _, f := range files {
			if !f.Type().IsRegular() || !isTemp(f.Name()) {
				continue
			}
			fi, err := f.Info()
			if err != nil || !fi.ModTime().Before(cutoff) {
				continue
			}
			if err := os.Remove(filepath.Join(md, f.Name())); err != nil {
				d.opt.Log.Warn("director: cannot remove a temp file of an interrupted publish", "err", err)
				continue
			}
			removed++
		}
	}
	if removed > 0 {
		d.opt.Log.Info("director: removed temp files of an interrupted publish", "files", removed, "devices", len(ids), "took", time.Since(start).Round(time.Millisecond))
	}
}
