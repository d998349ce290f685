package bootenv

// fw_env.config, libubootenv's description of where the environment lives.

import (
	"errors"
	"fmt"
	"strings"
)

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
	// Copies are the environment's one or two copies, in fw_env.config
	// order: with two, the first is copy 0 for U-Boot's flags counter.
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
// lines mean redundant copies. Unlike libubootenv, which silently skips it,
// a line whose offset or size does not parse is an error.
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
