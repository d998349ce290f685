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

// UBootCopy locates one copy of a U-Boot environment: one line of
// fw_env.config.
type UBootCopy struct {
	// Path is a block device (/dev/mmcblk0), a partition, or a plain file.
	Path string
	// Offset is where the copy starts. A negative offset counts back from
	// the end of the device, as in libubootenv.
	Offset int64
	// Size is the whole copy including its CRC (and flags) header. It must
	// match U-Boot's CONFIG_ENV_SIZE.
	Size int64
	// SectorSize and Sectors describe flash erase blocks. They are kept for
	// reference; block devices and files need no erase.
	SectorSize, Sectors int64
}

// UBootConfig describes a U-Boot environment: one copy, or two redundant
// copies (U-Boot's CONFIG_SYS_REDUNDAND_ENVIRONMENT).
type UBootConfig struct {
	Copies []UBootCopy
	// Defaults is what Load returns when no copy is valid (blank or
	// corrupted storage), like U-Boot's built-in default environment.
	Defaults map[string]string
	// LockFile is flocked around every Load and Save; empty means
	// DefaultLockFile, shared with fw_printenv and fw_setenv.
	LockFile string
}

// DefaultLockFile is the lock file of libubootenv's fw_printenv/fw_setenv.
const DefaultLockFile = "/var/lock/fw_printenv.lock"

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

// ParseFwEnvConfig parses the text of a libubootenv fw_env.config:
//
//	# device   offset     env size   sector size  sectors
//	/dev/mmcblk0  0x3f0000  0x10000  0x10000  1
//	/dev/mmcblk0  0x400000  0x10000  0x10000  1
//
// Lines starting with '#' and lines with fewer than three fields are
// ignored, as libubootenv does. The offset takes a 0x (hex), 0 (octal) or
// decimal number; sizes are always hexadecimal, with or without 0x, as in
// libubootenv ("10000" is 64 KiB). The first two device lines are used; two
// lines mean redundant copies.
func ParseFwEnvConfig(b []byte) (UBootConfig, error) {
	var cfg UBootConfig
	for n, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 3 || strings.HasPrefix(f[0], "#") {
			continue
		}
		c, err := parseFwEnvLine(f)
		if err != nil {
			return UBootConfig{}, fmt.Errorf("line %d: %w: %w", n+1, ErrInvalid, err)
		}
		cfg.Copies = append(cfg.Copies, c)
		if len(cfg.Copies) == 2 {
			break
		}
	}
	if err := cfg.check(); err != nil {
		return UBootConfig{}, err
	}
	return cfg, nil
}

func parseFwEnvLine(f []string) (UBootCopy, error) {
	c := UBootCopy{Path: f[0]}
	var err error
	if c.Offset, err = parseCInt(f[1], 0); err != nil {
		return c, fmt.Errorf("offset %q: %w", f[1], err)
	}
	if c.Size, err = parseCInt(f[2], 16); err != nil {
		return c, fmt.Errorf("env size %q: %w (sizes are hexadecimal, as in libubootenv)", f[2], err)
	}
	// Like sscanf, later fields end at the first one that does not parse
	// (a trailing comment, say).
	if len(f) > 3 {
		if c.SectorSize, err = parseCInt(f[3], 16); err == nil && len(f) > 4 {
			c.Sectors, _ = parseCInt(f[4], 16)
		}
	}
	return c, nil
}

// parseCInt parses a number as C's strtoll does with the given base
// (0: 0x hex, leading 0 octal, else decimal; 16: optional 0x prefix).
func parseCInt(s string, base int) (int64, error) {
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	digits := "0123456789"
	switch {
	case (base == 0 || base == 16) && len(s) > 2 && (s[:2] == "0x" || s[:2] == "0X"):
		s, base = s[2:], 16
	case base == 0 && len(s) > 1 && s[0] == '0':
		s, base = s[1:], 8
	case base == 0:
		base = 10
	}
	if base == 16 {
		digits += "abcdef"
	}
	var v int64
	for _, r := range strings.ToLower(s) {
		d := strings.IndexRune(digits[:base], r)
		if d < 0 {
			return 0, fmt.Errorf("want a base-%d number", base)
		}
		if v > (1<<62)/int64(base) {
			return 0, errors.New("number too large")
		}
		v = v*int64(base) + int64(d)
	}
	if s == "" {
		return 0, errors.New("want a number")
	}
	if neg {
		v = -v
	}
	return v, nil
}

// minEnvSize leaves room for the header and the terminating empty string;
// maxEnvSize is far above any real CONFIG_ENV_SIZE and catches a decimal
// size misread as hex before it costs memory.
const (
	minEnvSize = 8
	maxEnvSize = 1 << 26
)

func (cfg UBootConfig) check() error {
	switch len(cfg.Copies) {
	case 1, 2:
	default:
		return fmt.Errorf("%w: want one or two environment copies (device, offset, size lines), found %d", ErrInvalid, len(cfg.Copies))
	}
	for i, c := range cfg.Copies {
		if c.Path == "" {
			return fmt.Errorf("%w: copy %d has no device path", ErrInvalid, i)
		}
		if c.Size < minEnvSize || c.Size > maxEnvSize {
			return fmt.Errorf("%w: copy %d (%s): env size %#x out of range; set it to U-Boot's CONFIG_ENV_SIZE, in hex", ErrInvalid, i, c.Path, c.Size)
		}
		if strings.HasPrefix(c.Path, "/dev/mtd") || strings.HasPrefix(c.Path, "/dev/ubi") {
			return fmt.Errorf("%w: copy %d: %s: raw MTD/UBI flash is not supported, only block devices and files", ErrInvalid, i, c.Path)
		}
	}
	if len(cfg.Copies) == 2 && cfg.Copies[0].Size != cfg.Copies[1].Size {
		return fmt.Errorf("%w: redundant copies must have the same size, found %#x and %#x", ErrInvalid, cfg.Copies[0].Size, cfg.Copies[1].Size)
	}
	return nil
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
	if !isDevPath(c.Path) {
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
