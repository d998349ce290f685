package agent

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/fwctl/fwctl/internal/duration"
)

// durationKeys are the config members that hold a Duration (a test holds
// the list to the Config type).
var durationKeys = map[string]bool{"poll_interval": true, "poll_jitter": true, "stall_timeout": true,
	"retry_backoff": true, "interval": true, "timeout": true, "rate_window": true, "rate_grace": true, "max_metadata_age": true}

// locateConfigError names the member and line a config decoding error is
// about: "line 5: poll_interval: invalid duration ...". encoding/json says
// neither for a value its Unmarshaler refused, nor the line for anything.
func locateConfigError(b []byte, err error) error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return fmt.Errorf("line %d: %w", lineAt(b, syn.Offset), err)
	case errors.As(err, &typ):
		return fmt.Errorf("line %d: %s: want a %s, got a JSON %s", lineAt(b, typ.Offset), typ.Field, typ.Type, typ.Value)
	}
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		name, _ = strconv.Unquote(name)
		if path, line, ok := findInJSON(b, func(path string, key bool, _ any) bool {
			return key && (path == name || strings.HasSuffix(path, "."+name))
		}); ok {
			return fmt.Errorf("line %d: %s: unknown setting (check its spelling against the README's device configuration)", line, path)
		}
		return err
	}
	if path, line, ok := findInJSON(b, func(path string, key bool, v any) bool {
		s, isString := v.(string)
		if key || !durationKeys[lastKey(path)] || !isString {
			return false
		}
		_, perr := duration.Parse(s)
		return perr != nil
	}); ok {
		return fmt.Errorf("line %d: %s: %w", line, path, err)
	}
	return err
}

// locateFields adds the line to each of Validate's errors ("field: what")
// whose field the file sets.
func locateFields(b []byte, err error) error {
	j, ok := err.(interface{ Unwrap() []error })
	if !ok {
		return err
	}
	var out []error
	for _, e := range j.Unwrap() {
		field, _, _ := strings.Cut(e.Error(), ":")
		if _, line, ok := findInJSON(b, func(p string, key bool, _ any) bool { return key && p == field }); ok {
			e = fmt.Errorf("line %d: %w", line, e)
		}
		out = append(out, e)
	}
	return errors.Join(out...)
}

func lastKey(path string) string {
	if i := strings.LastIndexByte(path, '.'); i >= 0 {
		return path[i+1:]
	}
	return path
}

func lineAt(b []byte, off int64) int {
	off = min(max(off, 0), int64(len(b)))
	return bytes.Count(b[:off], []byte("\n")) + 1
}

// findInJSON walks b's tokens and returns the path ("report.interval",
// "health_checks[0].timeout") and line of the first key or scalar value
// that match accepts.
func findInJSON(b []byte, match func(path string, key bool, v any) bool) (string, int, bool) {
	type frame struct {
		obj     bool
		wantKey bool
		key     string
		idx     int
	}
	var stack []frame
	path := func() string {
		var sb strings.Builder
		for _, f := range stack {
			if f.obj {
				if sb.Len() > 0 {
					sb.WriteByte('.')
				}
				sb.WriteString(f.key)
			} else {
				fmt.Fprintf(&sb, "[%d]", f.idx)
			}
		}
		return sb.String()
	}
	done := func() { // a value ended
		if n := len(stack); n > 0 {
			if stack[n-1].obj {
				stack[n-1].wantKey = true
			} else {
				stack[n-1].idx++
			}
		}
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	for {
		tok, err := dec.Token()
		if err != nil {
			return "", 0, false
		}
		line := lineAt(b, dec.InputOffset())
		d, isDelim := tok.(json.Delim)
		if n := len(stack); n > 0 && stack[n-1].obj && stack[n-1].wantKey && !isDelim {
			stack[n-1].key, stack[n-1].wantKey = fmt.Sprint(tok), false
			if match(path(), true, nil) {
				return path(), line, true
			}
			continue
		}
		switch {
		case isDelim && (d == '{' || d == '['):
			stack = append(stack, frame{obj: d == '{', wantKey: d == '{'})
		case isDelim:
			stack = stack[:len(stack)-1]
			done()
		default:
			if match(path(), false, tok) {
				return path(), line, true
			}
			done()
		}
	}
}
