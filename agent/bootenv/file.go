package bootenv

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/fwctl/fwctl/internal/atomicfile"
)

// File is a plain-text environment of KEY=VALUE lines for simulators and
// tests. It is written atomically (temp file, fsync, rename, fsync dir).
type File struct {
	Path string
}

// Load implements Env.
func (f File) Load() (map[string]string, error) {
	b, err := os.ReadFile(f.Path)
	if os.IsNotExist(err) {
		return map[string]string{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read boot environment: %w", err)
	}
	return parseLines(b, f.Path)
}

func parseLines(b []byte, name string) (map[string]string, error) {
	vars := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("%s:%d: %w: want KEY=VALUE, got %q", filepath.Base(name), n, ErrInvalid, line)
		}
		vars[k] = v
	}
	return vars, sc.Err()
}

// Save implements Env.
func (f File) Save(vars map[string]string) error {
	var buf bytes.Buffer
	for _, k := range sortedKeys(vars) {
		if strings.ContainsAny(k, "=\n") || strings.Contains(vars[k], "\n") {
			return fmt.Errorf("boot environment variable %q: %w: names may not contain '=' or newlines, values no newlines", k, ErrInvalid)
		}
		fmt.Fprintf(&buf, "%s=%s\n", k, vars[k])
	}
	return atomicfile.Write(f.Path, buf.Bytes(), 0o644)
}
