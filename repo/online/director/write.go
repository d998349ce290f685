package director

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/fwctl/fwctl/repo/blob"
)

// write stores every job's files: all versioned files first, then the
// timestamps, so that no timestamp names a file that is not there. In a
// directory store the versioned files are written without a per-file
// fsync and made durable by one sync of the file system before any
// timestamp is written; each timestamp is then written to a temp file,
// fsynced and renamed into place, and one more sync makes the renames
// durable. A wave of 10,000 devices otherwise spends its time in 60,000
// fsyncs (Put's file and directory fsync per file). Other stores write
// every file by Put.
func (d *Director) write(ctx context.Context, jobs []job) error {
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
	if err := parallel(ctx, len(jobs), d.workers(), func(i int) error {
		j := &jobs[i]
		for k := 0; !j.skip && k < len(j.names)-1; k++ {
			if err := writeFile(dir, j.names[k], j.data[k], false); err != nil {
				return fmt.Errorf("publish director metadata of %s: %w", j.id, err)
			}
		}
		return nil
	}); err != nil {
		return err
	}
	if err := syncAll(string(dir)); err != nil {
		return fmt.Errorf("publish director metadata: sync %s: %w", dir, err)
	}
	if err := parallel(ctx, len(jobs), d.workers(), func(i int) error {
		j := &jobs[i]
		if j.skip {
			return nil
		}
		last := len(j.names) - 1
		if err := writeFile(dir, j.names[last], j.data[last], true); err != nil {
			return fmt.Errorf("publish director metadata of %s: %w", j.id, err)
		}
		done(j)
		return nil
	}); err != nil {
		return err
	}
	// The renames of the timestamps (each file's bytes were fsynced before
	// its rename, so a crash leaves the old or the new one) are made
	// durable before Assign returns.
	if err := syncAll(string(dir)); err != nil {
		return fmt.Errorf("publish director metadata: sync %s: %w", dir, err)
	}
	return nil
}

// writeFile writes name in dir by temp file and rename (a reader never
// sees part of it); with fsync the file's bytes are durable before the
// rename, else the caller syncs before relying on it. The directory is not
// fsynced: the caller's syncAll makes the renames durable.
func writeFile(dir blob.Dir, name string, data []byte, fsync bool) error {
	p := filepath.Join(string(dir), filepath.FromSlash(name))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(p), "."+filepath.Base(p)+".tmp*")
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil && fsync {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(f.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(f.Name(), p)
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return err
}
