package director

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"sync"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/fwctl/fwctl/manifests"
	"github.com/fwctl/fwctl/repo/blob"
	"github.com/fwctl/fwctl/repo/layout"
	"github.com/fwctl/fwctl/signer"
)

// job is one device's publish: a new assignment (a, custom), nothing
// (a == nil: empty targets), the same assignment again (keep), or a
// re-signed timestamp alone (tsOnly).
type job struct {
	id     string
	a      *Assignment
	custom json.RawMessage // canonical {"director": …} of a
	keep   bool
	tsOnly bool

	dev  *device // loaded state
	skip bool
	// files to write, in order (timestamp last), and the state after.
	names []string
	data  [][]byte
	next  *device
}

func (j *job) base() string { return manifests.DirectorDevice(j.id) }

// publish signs and writes jobs. force publishes even an unchanged
// assignment (Refresh).
func (d *Director) publish(ctx context.Context, jobs []job, force bool) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.key == nil {
		return errors.New("director: closed")
	}
	if err := d.checkKey(ctx); err != nil {
		return err
	}
	ids := make([]string, len(jobs))
	for i := range jobs {
		ids[i] = jobs[i].id
	}
	if err := d.loadMany(ctx, ids); err != nil {
		return err
	}
	now, start := d.opt.Now().UTC(), time.Now()
	for i := range jobs {
		j := &jobs[i]
		j.dev = d.devices[j.id]
		if j.keep && j.a != nil {
			c, err := validate(j.a)
			if err != nil {
				return err
			}
			j.custom = c
		}
		switch {
		case j.tsOnly || j.keep || force:
		case j.a == nil:
			j.skip = j.dev.assigned == nil
		default:
			j.skip = j.dev.assigned != nil && sameAssignment(j.dev.assigned, j.a)
		}
	}
	// Signing is CPU work: one worker per CPU.
	if err := parallel(ctx, len(jobs), runtime.NumCPU(), func(i int) error {
		j := &jobs[i]
		if j.skip {
			return nil
		}
		return d.sign(j, now)
	}); err != nil {
		return err
	}
	signed := time.Now()
	var phases []any
	err := d.write(ctx, jobs, &phases)
	n := 0
	for i := range jobs {
		if !jobs[i].skip {
			n++
		}
	}
	d.opt.Log.Info("director published", append([]any{"devices", n, "of", len(jobs), "sign", signed.Sub(start), "write", time.Since(signed), "err", err}, phases...)...)
	return err
}

func sameAssignment(a, b *Assignment) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return bytes.Equal(x, y)
}

// parallel runs f(0..n-1) on up to w goroutines and returns the first error.
func parallel(ctx context.Context, n, w int, f func(i int) error) error {
	if w < 1 {
		w = 1
	}
	var (
		next  int
		mu    sync.Mutex
		first error
		wg    sync.WaitGroup
	)
	for range min(w, n) {
		wg.Go(func() {
			for {
				mu.Lock()
				i := next
				next++
				stop := first != nil
				mu.Unlock()
				if i >= n || stop {
					return
				}
				err := ctx.Err()
				if err == nil {
					err = f(i)
				}
				if err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	return first
}

// Wire structs of the signed documents. Their fields are in the byte order
// of their JSON names, every string they hold is printable ASCII without
// '"' or '\\' (device IDs, target paths, hex, dates) and custom is already
// canonical, so encoding/json without HTML escaping writes exactly TUF's
// canonical form: what is written is what is signed.
type targetsSigned struct {
	Type        string                `json:"_type"`
	Director    json.RawMessage       `json:"director"`
	Expires     string                `json:"expires"`
	SpecVersion string                `json:"spec_version"`
	Targets     map[string]targetFile `json:"targets"`
	Version     int64                 `json:"version"`
}

type targetFile struct {
	Custom json.RawMessage   `json:"custom"`
	Hashes map[string]string `json:"hashes"`
	Length int64             `json:"length"`
}

type metaFile struct {
	Hashes  map[string]string `json:"hashes,omitempty"`
	Length  int64             `json:"length,omitempty"`
	Version int64             `json:"version"`
}

type metaSigned struct {
	Type        string              `json:"_type"`
	Expires     string              `json:"expires"`
	Meta        map[string]metaFile `json:"meta"`
	SpecVersion string              `json:"spec_version"`
	Version     int64               `json:"version"`
}

const tufTime = "2006-01-02T15:04:05Z"

func encode(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// envelope signs canonical bytes and wraps them as a metadata file.
func (d *Director) envelope(signed []byte) ([]byte, error) {
	sig, err := signer.TUF(d.key).SignMessage(bytes.NewReader(signed))
	if err != nil {
		return nil, fmt.Errorf("sign director metadata: %w", err)
	}
	out := make([]byte, 0, len(signed)+len(d.keyID)+2*len(sig)+64)
	out = append(out, `{"signatures":[{"keyid":"`...)
	out = append(out, d.keyID...)
	out = append(out, `","sig":"`...)
	out = hex.AppendEncode(out, sig)
	out = append(out, `"}],"signed":`...)
	out = append(out, signed...)
	out = append(out, '}')
	return out, nil
}

// sign prepares j's files and the device state after them.
func (d *Director) sign(j *job, now time.Time) error {
	cur := j.dev
	next := *cur
	next.keyID = d.keyID
	next.tsVersion = cur.tsVersion + 1
	next.tsExpires = now.Add(d.opt.TimestampLifetime).Truncate(time.Second)
	base := j.base()
	var snap []byte
	if j.tsOnly {
		if cur.snapshot == nil {
			return fmt.Errorf("director: %s: no snapshot to re-sign a timestamp for", j.id)
		}
		snap = cur.snapshot
	} else {
		next.version = cur.version + 1
		next.tgExpires = now.Add(d.opt.TargetsLifetime).Truncate(time.Second)
		next.assigned = j.a
		next.unbound = false
		exp := next.tgExpires.UTC().Format(tufTime)
		bind, err := manifests.MarshalBinding(j.id)
		if err != nil {
			return err
		}
		tg := targetsSigned{Type: metadata.TARGETS, Director: bind, Expires: exp, SpecVersion: metadata.SPECIFICATION_VERSION,
			Targets: map[string]targetFile{}, Version: next.version}
		if a := j.a; a != nil {
			tg.Targets[a.TargetName] = targetFile{Custom: j.custom, Hashes: a.Hashes, Length: a.Length}
		}
		signed, err := encode(tg)
		if err != nil {
			return err
		}
		targets, err := d.envelope(signed)
		if err != nil {
			return err
		}
		// The targets' length and hash chain them to the snapshot as the
		// timestamp chains the snapshot: the set is bound to the device.
		tsum := sha256.Sum256(targets)
		sn := metaSigned{Type: metadata.SNAPSHOT, Expires: exp, SpecVersion: metadata.SPECIFICATION_VERSION,
			Meta: map[string]metaFile{"targets.json": {Version: next.version, Length: int64(len(targets)),
				Hashes: map[string]string{"sha256": hex.EncodeToString(tsum[:])}}}, Version: next.version}
		if signed, err = encode(sn); err != nil {
			return err
		}
		if snap, err = d.envelope(signed); err != nil {
			return err
		}
		v := strconv.FormatInt(next.version, 10)
		j.names = append(j.names, base+"/"+v+".targets.json", base+"/"+v+".snapshot.json")
		j.data = append(j.data, targets, snap)
		next.snapshot = snap
	}
	sum := sha256.Sum256(snap)
	ts := metaSigned{Type: metadata.TIMESTAMP, Expires: next.tsExpires.UTC().Format(tufTime), SpecVersion: metadata.SPECIFICATION_VERSION,
		Meta: map[string]metaFile{"snapshot.json": {Version: next.version, Length: int64(len(snap)),
			Hashes: map[string]string{"sha256": hex.EncodeToString(sum[:])}}}, Version: next.tsVersion}
	signed, err := encode(ts)
	if err != nil {
		return err
	}
	tsb, err := d.envelope(signed)
	if err != nil {
		return err
	}
	j.names = append(j.names, base+"/timestamp.json")
	j.data = append(j.data, tsb)
	j.next = &next
	return nil
}

// loadMany loads the states of ids not loaded yet (d.mu held).
func (d *Director) loadMany(ctx context.Context, ids []string) error {
	var todo []string
	for _, id := range ids {
		if d.devices[id] == nil {
			todo = append(todo, id)
		}
	}
	out := make([]*device, len(todo))
	err := parallel(ctx, len(todo), d.workers(), func(i int) error {
		dev, err := d.read(ctx, todo[i])
		out[i] = dev
		return err
	})
	if err != nil {
		return err
	}
	for i, id := range todo {
		d.devices[id] = out[i]
	}
	return nil
}

func (d *Director) preload(ctx context.Context, ids []string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.loadMany(ctx, ids)
}

// load returns the state of one device (d.mu held).
func (d *Director) load(ctx context.Context, id string) (*device, error) {
	if err := d.loadMany(ctx, []string{id}); err != nil {
		return nil, err
	}
	return d.devices[id], nil
}

// read reads one device's published state from the store. A device
// without metadata has version 0.
func (d *Director) read(ctx context.Context, id string) (*device, error) {
	base := manifests.DirectorDevice(id)
	b, err := blob.ReadLimited(ctx, d.st, base+"/timestamp.json", layout.MaxTimestampLength)
	if errors.Is(err, blob.ErrNotExist) {
		return &device{}, nil
	}
	if err != nil {
		return nil, err
	}
	var ts struct {
		Signatures []struct {
			KeyID string `json:"keyid"`
		} `json:"signatures"`
		Signed struct {
			Expires time.Time           `json:"expires"`
			Meta    map[string]metaFile `json:"meta"`
			Version int64               `json:"version"`
		} `json:"signed"`
	}
	if err := json.Unmarshal(b, &ts); err != nil {
		return nil, fmt.Errorf("director: %s/timestamp.json: %w", base, err)
	}
	dev := &device{tsVersion: ts.Signed.Version, tsExpires: ts.Signed.Expires, version: ts.Signed.Meta["snapshot.json"].Version}
	if len(ts.Signatures) > 0 {
		dev.keyID = ts.Signatures[0].KeyID
	}
	v := strconv.FormatInt(dev.version, 10)
	if dev.snapshot, err = blob.ReadLimited(ctx, d.st, base+"/"+v+".snapshot.json", layout.MaxSnapshotLength); err != nil {
		return nil, fmt.Errorf("director: %s: %w", id, err)
	}
	tb, err := blob.ReadLimited(ctx, d.st, base+"/"+v+".targets.json", layout.MaxTargetsLength)
	if err != nil {
		return nil, fmt.Errorf("director: %s: %w", id, err)
	}
	var tg struct {
		Signed struct {
			Director json.RawMessage `json:"director"`
			Expires  time.Time       `json:"expires"`
			Targets  map[string]struct {
				Custom json.RawMessage   `json:"custom"`
				Hashes map[string]string `json:"hashes"`
				Length int64             `json:"length"`
			} `json:"targets"`
		} `json:"signed"`
	}
	if err := json.Unmarshal(tb, &tg); err != nil {
		return nil, fmt.Errorf("director: %s/%s.targets.json: %w", base, v, err)
	}
	dev.tgExpires = tg.Signed.Expires
	// Format 1 (no device binding): Refresh re-publishes it as format 2.
	_, berr := manifests.ParseBinding(tg.Signed.Director)
	dev.unbound = berr != nil
	for name, tf := range tg.Signed.Targets {
		ma, err := manifests.ParseAssignment(tf.Custom)
		if err != nil {
			return nil, fmt.Errorf("director: %s/%s.targets.json: %w", base, v, err)
		}
		dev.assigned = &Assignment{DeviceID: id, Hardware: ma.Hardware, TargetName: name, Length: tf.Length,
			Hashes: tf.Hashes, Counter: ma.Counter, Maintenance: ma.Maintenance, Custom: ma.Custom}
	}
	return dev, nil
}
