package director

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sync"
	"time"

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
	temps := make([][]string, len(jobs))
	defer func() { // what was not renamed (an error on the way)
		for _, ts := range temps {
			for _, t := range ts {
				if t != "" {
					os.Remove(t)
				}
			}
		}
	}()
	if err := parallel(ctx, len(jobs), d.workers(), func(i int) error {
		j := &jobs[i]
		if j.skip || len(j.names) == 0 {
			return nil
		}
		temps[i] = make([]string, len(j.names))
		if err := os.MkdirAll(filepath.Join(string(dir), filepath.FromSlash(path.Dir(j.names[0]))), 0o755); err != nil {
			return fmt.Errorf("publish director metadata of %s: %w", j.id, err)
		}
		for k, name := range j.names {
			t, err := writeTemp(dir, name, j.data[k])
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
				if err := os.Rename(temps[i][k], filepath.Join(string(dir), filepath.FromSlash(name))); err != nil {
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

// writeTemp writes data to a new temp file beside name in dir (its
// directory exists), without fsync, and returns the temp file's path.
func writeTemp(dir blob.Dir, name string, data []byte) (string, error) {
	p := filepath.Join(string(dir), filepath.FromSlash(name))
	f, err := os.CreateTemp(filepath.Dir(p), "."+filepath.Base(p)+".tmp*")
	if err != nil {
		return "", err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(0o644)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", err
	}
	return f.Name(), nil
}
