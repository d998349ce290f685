package bootenv

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"maps"
	"os"
	"path/filepath"
	"strings"

	"github.com/fwctl/fwctl/internal/atomicfile"
)

// ErrTooLarge reports variables that do not fit in the environment's fixed
// size. The environment on disk is left unchanged.
var ErrTooLarge = errors.New("bootenv: variables do not fit in the environment")

// UBoot is a U-Boot environment read and written in the format of U-Boot,
// fw_printenv/fw_setenv (libubootenv) and mkenvimage: a little-endian CRC32
// of the data area, a flags byte when there are two copies, then
// NUL-terminated "name=value" strings ending with an empty string.
//
// With two copies, Save writes the copy that is not current with a flags
// counter one higher, so a write torn by power loss leaves the previous copy
// valid and current. With one copy on a plain file, Save replaces the file
// atomically; a single copy on a block device is overwritten in place and is
// not safe against power loss (U-Boot's own limitation): use two copies.
type UBoot struct {
	cfg UBootConfig
}

// NewUBoot returns the environment described by cfg. The configuration is
// checked when it is used; OpenUBoot checks it up front.
func NewUBoot(cfg UBootConfig) *UBoot {
	cfg.Copies = append([]UBootCopy(nil), cfg.Copies...)
	cfg.Defaults = maps.Clone(cfg.Defaults)
	return &UBoot{cfg: cfg}
}

// OpenUBoot reads a libubootenv fw_env.config (for example
// /etc/fw_env.config) and returns its environment. defaults is returned by
// Load when no copy is valid; nil means an empty environment.
func OpenUBoot(configPath string, defaults map[string]string) (*UBoot, error) {
	b, err := os.ReadFile(configPath)
	if err != nil {
		return nil, fmt.Errorf("read U-Boot environment config: %w", err)
	}
	cfg, err := ParseFwEnvConfig(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", configPath, err)
	}
	cfg.Defaults = defaults
	return NewUBoot(cfg), nil
}

func (u *UBoot) lock() (unlock func()) {
	if u.cfg.LockFile == "" {
		return lockEnv(DefaultLockFile)
	}
	return lockEnv(u.cfg.LockFile)
}

func (u *UBoot) redundant() bool { return len(u.cfg.Copies) == 2 }

// headerLen is the CRC, plus the flags byte for redundant copies.
func headerLen(redundant bool) int {
	if redundant {
		return 5
	}
	return 4
}

// Load implements Env. It returns the current valid copy, or a copy of the
// defaults when no copy is valid (blank, missing or corrupted storage).
func (u *UBoot) Load() (map[string]string, error) {
	defer u.lock()()
	st, err := u.state()
	if err != nil {
		return nil, err
	}
	if st.current < 0 {
		if st.defaults == nil {
			return map[string]string{}, nil
		}
		return maps.Clone(st.defaults), nil
	}
	return st.vars, nil
}

// ubootState is what Load and Save learn from reading every copy.
type ubootState struct {
	current  int // index of the copy in use, -1 if none is valid
	vars     map[string]string
	defaults map[string]string
	// next is the copy Save writes and nextFlags its flags byte: the copy
	// that is not current, with a counter one higher. With no valid copy,
	// libubootenv takes copy 0 as current, and so do we.
	next      int
	nextFlags byte
}

func (u *UBoot) state() (ubootState, error) {
	if err := u.cfg.check(); err != nil {
		return ubootState{}, err
	}
	red := u.redundant()
	var valid [2]bool
	var flags [2]byte
	var vars [2]map[string]string
	for i, c := range u.cfg.Copies {
		b, err := readCopy(c)
		if err != nil {
			return ubootState{}, err
		}
		if b == nil {
			continue // missing or short: blank
		}
		v, f, err := parseUBootEnv(b, red)
		valid[i], flags[i], vars[i] = err == nil, f, v
	}
	st := ubootState{current: -1, defaults: u.cfg.Defaults}
	if red {
		st.current = currentCopy(valid, flags)
	} else if valid[0] {
		st.current = 0
	}
	if st.current >= 0 {
		st.vars = vars[st.current]
	}
	if red {
		cur := max(st.current, 0)
		st.next, st.nextFlags = 1-cur, flags[cur]+1
	}
	return st, nil
}

// CurrentCopy reports which copy of a redundant environment Load reads and
// fw_printenv would read: 0 or 1, or -1 when neither copy is valid (blank or
// torn storage). A single-copy environment reports 0 when valid. Power-loss
// tests use it to tell which copy a save in flight was writing.
func (u *UBoot) CurrentCopy() (int, error) {
	unlock := u.lock()
	defer unlock()
	st, err := u.state()
	return st.current, err
}

// currentCopy chooses between two redundant copies as libubootenv does for
// block devices and files (incremental flags): the only valid copy, or the
// one with the higher flags counter, where 0 follows 255; on a tie, copy 0.
// It returns -1 when neither copy is valid.
func currentCopy(valid [2]bool, flags [2]byte) int {
	switch {
	case valid[0] && !valid[1]:
		return 0
	case !valid[0] && valid[1]:
		return 1
	case !valid[0] && !valid[1]:
		return -1
	case flags[0] == 0xff && flags[1] == 0:
		return 1
	case flags[1] == 0xff && flags[0] == 0:
		return 0
	case flags[1] > flags[0]:
		return 1
	}
	return 0
}

// readCopy returns the bytes of one copy, or nil when the file is missing or
// too short to hold it (blank storage).
func readCopy(c UBootCopy) ([]byte, error) {
	f, err := os.Open(c.Path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read U-Boot environment: %w", err)
	}
	defer f.Close()
	off, err := resolveOffset(f, c)
	if err != nil {
		return nil, err
	}
	b := make([]byte, c.Size)
	_, err = f.ReadAt(b, off)
	if errors.Is(err, io.EOF) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read U-Boot environment from %s at %#x: %w", c.Path, off, err)
	}
	return b, nil
}

// resolveOffset turns a negative offset into one from the device start.
func resolveOffset(f *os.File, c UBootCopy) (int64, error) {
	if c.Offset >= 0 {
		return c.Offset, nil
	}
	end, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return 0, fmt.Errorf("%s: size for negative offset %d: %w", c.Path, c.Offset, err)
	}
	if end+c.Offset < 0 {
		return 0, fmt.Errorf("%w: %s: offset %d is before the start of a %d-byte device", ErrInvalid, c.Path, c.Offset, end)
	}
	return end + c.Offset, nil
}

// parseUBootEnv decodes one copy of a U-Boot environment (its whole size,
// header included). It returns the variables and, for a redundant copy, its
// flags byte. A CRC mismatch or a data area without a terminating NUL gives
// an error wrapping ErrInvalid. Entries without '=' or with an empty name
// are skipped, as libubootenv does; a repeated name keeps its last value.
func parseUBootEnv(b []byte, redundant bool) (map[string]string, byte, error) {
	h := headerLen(redundant)
	if len(b) < h+1 {
		return nil, 0, fmt.Errorf("%w: U-Boot environment of %d bytes is shorter than its header", ErrInvalid, len(b))
	}
	var flags byte
	if redundant {
		flags = b[4]
	}
	data := b[h:]
	want, got := binary.LittleEndian.Uint32(b), crc32.ChecksumIEEE(data)
	if want != got {
		return nil, flags, fmt.Errorf("%w: U-Boot environment CRC is %#08x, stored %#08x (blank or corrupted)", ErrInvalid, got, want)
	}
	vars := map[string]string{}
	for len(data) > 0 && data[0] != 0 {
		entry, rest, ok := bytes.Cut(data, []byte{0})
		if !ok {
			return nil, flags, fmt.Errorf("%w: U-Boot environment: last variable is not NUL-terminated", ErrInvalid)
		}
		if k, v, ok := strings.Cut(string(entry), "="); ok && k != "" {
			vars[k] = v
		}
		data = rest
	}
	return vars, flags, nil
}

// encodeUBootEnv builds one copy of size bytes holding vars, sorted by name
// and zero-padded as fw_setenv writes them, with the given flags byte for a
// redundant copy.
func encodeUBootEnv(vars map[string]string, size int, redundant bool, flags byte) ([]byte, error) {
	h := headerLen(redundant)
	if size < h+1 || size > maxEnvSize {
		return nil, fmt.Errorf("%w: environment size %d out of range", ErrInvalid, size)
	}
	b := make([]byte, size)
	data := b[h:h]
	for _, k := range sortedKeys(vars) {
		v := vars[k]
		if k == "" || strings.ContainsAny(k, "=\x00") || strings.Contains(v, "\x00") {
			return nil, fmt.Errorf("U-Boot variable %q: %w: names must be non-empty without '=' or NUL, values without NUL", k, ErrInvalid)
		}
		data = append(data, k...)
		data = append(data, '=')
		data = append(data, v...)
		data = append(data, 0)
	}
	// One more NUL ends the list.
	if need := len(data) + 1; need > size-h {
		return nil, fmt.Errorf("%w: need %d bytes of data, the U-Boot environment holds %d (size %d minus %d-byte header); remove variables or enlarge CONFIG_ENV_SIZE", ErrTooLarge, need, size-h, size, h)
	}
	if redundant {
		b[4] = flags
	}
	binary.LittleEndian.PutUint32(b, crc32.ChecksumIEEE(b[h:]))
	return b, nil
}

// Save implements Env. With two copies it writes the copy that is not
// current, so an interrupted write leaves the previous environment in use.
func (u *UBoot) Save(vars map[string]string) error {
	defer u.lock()()
	st, err := u.state()
	if err != nil {
		return err
	}
	red := u.redundant()
	c := u.cfg.Copies[st.next]
	b, err := encodeUBootEnv(vars, int(c.Size), red, st.nextFlags)
	if err != nil {
		return err
	}
	if !red {
		if ok, err := replaceSmallFile(c, b); ok || err != nil {
			return err
		}
	}
	return writeCopy(c, b)
}

// maxRewrite bounds the plain files Save rewrites whole to replace a single
// copy atomically; larger ones (disk images) are written in place.
const maxRewrite = 1 << 20

// replaceSmallFile atomically rewrites a small plain file with b at c's
// offset. It reports false when c is not such a file.
func replaceSmallFile(c UBootCopy, b []byte) (bool, error) {
	fi, err := os.Lstat(c.Path) // a symlink is written through, not replaced
	switch {
	case errors.Is(err, os.ErrNotExist):
		if isDevPath(c.Path) {
			return false, nil // let writeCopy report the missing device
		}
	case err != nil:
		return true, fmt.Errorf("write U-Boot environment: %w", err)
	case !fi.Mode().IsRegular() || fi.Size() > maxRewrite:
		return false, nil
	}
	if c.Offset < 0 || c.Offset+c.Size > maxRewrite {
		return false, nil
	}
	var old []byte
	perm := os.FileMode(0o644)
	if err == nil {
		perm = fi.Mode().Perm()
		if old, err = os.ReadFile(c.Path); err != nil {
			return true, fmt.Errorf("write U-Boot environment: %w", err)
		}
	}
	n := max(len(old), int(c.Offset+c.Size))
	whole := make([]byte, n)
	copy(whole, old)
	copy(whole[c.Offset:], b)
	if err := atomicfile.Write(c.Path, whole, perm); err != nil {
		return true, fmt.Errorf("write U-Boot environment: %w", err)
	}
	return true, nil
}

// writeCopy writes b at c's offset in place, without truncating, and
// fsyncs. It creates a missing plain file, never a missing device node.
func writeCopy(c UBootCopy, b []byte) error {
	flag := os.O_RDWR
	_, statErr := os.Stat(c.Path)
	created := errors.Is(statErr, os.ErrNotExist) && !isDevPath(c.Path)
	if created {
		flag |= os.O_CREATE
	}
	f, err := os.OpenFile(c.Path, flag, 0o644)
	if err != nil {
		return fmt.Errorf("write U-Boot environment: %w", err)
	}
	off, err := resolveOffset(f, c)
	if err == nil {
		_, err = f.WriteAt(b, off)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && created {
		err = atomicfile.SyncDir(filepath.Dir(c.Path))
	}
	if err != nil {
		return fmt.Errorf("write U-Boot environment to %s at %#x: %w", c.Path, c.Offset, err)
	}
	return nil
}

// isDevPath reports a path under /dev, where a missing node means a missing
// device, never a file to create.
func isDevPath(p string) bool {
	return strings.HasPrefix(filepath.Clean(p), "/dev/")
}
