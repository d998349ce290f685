package bootenv

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/fwctl/fwctl/internal/atomicfile"
)

// GrubEnvSize is the size of the environment block grub-editenv creates and
// GRUB's save_env rewrites in place.
const GrubEnvSize = 1024

const grubSignature = "# GRUB Environment Block\n"

// GRUB is a GRUB environment block (grubenv), read and written as
// grub-editenv does: the signature line, then "name=value" lines in which a
// backslash or a newline in a value is preceded by a backslash, padded with
// '#' to GrubEnvSize bytes. Save rewrites the existing block in place, as
// GRUB's save_env does (GRUB can only overwrite blocks a file already has):
// one write of GrubEnvSize bytes at offset 0 and an fsync, with no
// truncation, allocation or directory change, so a power cut during it
// leaves no file-system damage (a rename over the file could leave an ext2
// boot partition with an unattached inode that fsck -p refuses to repair).
// Only a missing file or one of another size is created by temp file,
// fsync and rename. The agent's variables fit in the block's first
// 512-byte sector, so even a write torn at a sector boundary leaves the old
// block or the new one.
//
// Keep grubenv on a file system GRUB can write (ext4, vfat; not btrfs, zfs
// or LVM/RAID), or GRUB's own save_env will refuse to update it.
type GRUB struct {
	// Path is the environment block, typically /boot/grub/grubenv or
	// /boot/efi/EFI/<distro>/grubenv.
	Path string
}

// Load implements Env. A missing or empty file is an empty environment.
func (g GRUB) Load() (map[string]string, error) {
	b, err := os.ReadFile(g.Path)
	if errors.Is(err, os.ErrNotExist) || err == nil && len(b) == 0 {
		return map[string]string{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read GRUB environment: %w", err)
	}
	vars, err := parseGrubEnv(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", g.Path, err)
	}
	return vars, nil
}

// Save implements Env. It refuses, leaving the file untouched, when the
// variables do not fit in GrubEnvSize bytes. A symlink is followed and its
// target replaced (some distributions link /boot/grub2/grubenv to the EFI
// partition), and the file keeps its permissions.
func (g GRUB) Save(vars map[string]string) error {
	b, err := encodeGrubEnv(vars)
	if err != nil {
		return fmt.Errorf("%s: %w", g.Path, err)
	}
	path, perm := g.Path, os.FileMode(0o644)
	if p, err := filepath.EvalSymlinks(path); err == nil {
		path = p
	}
	fi, err := os.Stat(path)
	if err == nil && fi.Mode().IsRegular() && fi.Size() == GrubEnvSize {
		return rewriteGrubEnv(path, b)
	}
	if err == nil {
		perm = fi.Mode().Perm()
	}
	return atomicfile.Write(path, b, perm)
}

// rewriteGrubEnv overwrites the GrubEnvSize-byte block of the file at path
// in place and makes it durable.
func rewriteGrubEnv(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("rewrite GRUB environment: %w", err)
	}
	_, err = f.WriteAt(b, 0)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("rewrite GRUB environment %s: %w", path, err)
	}
	return nil
}

// parseGrubEnv decodes a GRUB environment block as GRUB does: after the
// signature, a line starting with '#' is a comment, any other runs from the
// name to the first '=' and from there to the next newline not preceded by a
// backslash; a backslash stands for the character after it. Parsing stops,
// as in GRUB, at a line without '=' or without its final newline. A
// repeated name keeps its last value. A missing signature gives an error
// wrapping ErrInvalid.
func parseGrubEnv(b []byte) (map[string]string, error) {
	if !bytes.HasPrefix(b, []byte(grubSignature)) {
		return nil, fmt.Errorf("%w: GRUB environment block must start with %q; recreate it with grub-editenv FILE create", ErrInvalid, strings.TrimSpace(grubSignature))
	}
	vars := map[string]string{}
	p := b[len(grubSignature):]
	for len(p) > 0 {
		if p[0] == '#' {
			_, p = grubLine(p)
			continue
		}
		name, rest, ok := bytes.Cut(p, []byte("="))
		if !ok {
			break
		}
		value, next := grubLine(rest)
		if next == nil {
			break
		}
		vars[string(name)] = unescapeGrub(value)
		p = next
	}
	return vars, nil
}

// grubLine splits p at its first newline not escaped by a backslash. It
// returns a nil rest when there is no such newline.
func grubLine(p []byte) (line, rest []byte) {
	for i := 0; i < len(p); i++ {
		switch p[i] {
		case '\\':
			i++
		case '\n':
			return p[:i], p[i+1:]
		}
	}
	return p, nil
}

func unescapeGrub(v []byte) string {
	var sb strings.Builder
	for i := 0; i < len(v); i++ {
		if v[i] == '\\' && i+1 < len(v) {
			i++
		}
		sb.WriteByte(v[i])
	}
	return sb.String()
}

// encodeGrubEnv builds a GrubEnvSize-byte environment block holding vars,
// sorted by name. It fails with ErrTooLarge when they do not fit, and with
// ErrInvalid for a name GRUB could not read back (empty, starting with '#',
// or holding '=', a newline or NUL) or a value holding NUL.
func encodeGrubEnv(vars map[string]string) ([]byte, error) {
	b := []byte(grubSignature)
	for _, k := range sortedKeys(vars) {
		v := vars[k]
		if k == "" || k[0] == '#' || strings.ContainsAny(k, "=\n\x00") || strings.Contains(v, "\x00") {
			return nil, fmt.Errorf("GRUB variable %q: %w: names must be non-empty, not start with '#', and hold no '=', newline or NUL; values no NUL", k, ErrInvalid)
		}
		b = append(b, k...)
		b = append(b, '=')
		for i := 0; i < len(v); i++ {
			if v[i] == '\\' || v[i] == '\n' {
				b = append(b, '\\')
			}
			b = append(b, v[i])
		}
		b = append(b, '\n')
	}
	if len(b) > GrubEnvSize {
		return nil, fmt.Errorf("%w: the GRUB environment block holds %d bytes, these variables need %d; remove or shorten some", ErrTooLarge, GrubEnvSize, len(b))
	}
	return append(b, bytes.Repeat([]byte("#"), GrubEnvSize-len(b))...), nil
}
