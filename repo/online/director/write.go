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
// timestamp is written (each timestamp is then written by Put: temp file,
// fsync, rename); a wave of 10,000 devices otherwise spends its time in
// 60,000 fsyncs. Other stores write every file by Put.
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
			if err := writeUnsynced(dir, j.names[k], j.data[k]); err != nil {
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
	return parallel(ctx, len(jobs), d.workers(), func(i int) error {
		j := &jobs[i]
		if j.skip {
			return nil
		}
		last := len(j.names) - 1
		if err := d.st.Put(ctx, j.names[last], bytes.NewReader(j.data[last]), int64(len(j.data[last]))); err != nil {
			return fmt.Errorf("publish director metadata of %s: %w", j.id, err)
		}
		done(j)
		return nil
	})
}

// writeUnsynced writes name in dir by temp file and rename (a reader never
// sees part of it), without fsync: the caller syncs before relying on it.
func writeUnsynced(dir blob.Dir, name string, data []byte) error {
	p := filepath.Join(string(dir), filepath.FromSlash(name))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(p), "."+filepath.Base(p)+".tmp*")
	if err != nil {
		return err
	}
	_, err = f.Write(data)
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
