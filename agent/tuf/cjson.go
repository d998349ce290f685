package tuf

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
)

// decodeValue parses one JSON document into maps, slices, strings,
// json.Number, bools and nil, refusing trailing data.
func decodeValue(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("data after the JSON document")
	}
	return v, nil
}

// Canonical parses JSON b and returns its canonical form.
func Canonical(b []byte) ([]byte, error) {
	v, err := decodeValue(b)
	if err != nil {
		return nil, err
	}
	return encodeCanonical(v)
}

// encodeCanonical writes v, a value from decodeValue, as OLPC canonical
// JSON the way securesystemslib writes it (the bytes TUF signatures cover):
// object keys sorted by their bytes, no whitespace, strings with only '\'
// and '"' escaped and every other byte as is, integers only, written
// without sign on zero. Anything else (floats, exponents) is refused.
func encodeCanonical(v any) ([]byte, error) {
	var sb strings.Builder
	if err := writeCanonical(&sb, v, 0); err != nil {
		return nil, err
	}
	return []byte(sb.String()), nil
}

// maxDepth bounds nesting: metadata is a few levels deep, and a hostile
// document must not exhaust the stack.
const maxDepth = 512

func writeCanonical(sb *strings.Builder, v any, depth int) error {
	if depth > maxDepth {
		return errors.New("canonical JSON: nested too deeply")
	}
	switch v := v.(type) {
	case nil:
		sb.WriteString("null")
	case bool:
		if v {
			sb.WriteString("true")
		} else {
			sb.WriteString("false")
		}
	case string:
		writeCanonicalString(sb, v)
	case json.Number:
		s := string(v)
		if strings.ContainsAny(s, ".eE") {
			return fmt.Errorf("canonical JSON allows integers only, not %s", s)
		}
		if s == "-0" {
			s = "0"
		}
		sb.WriteString(s)
	case []any:
		sb.WriteByte('[')
		for i, e := range v {
			if i > 0 {
				sb.WriteByte(',')
			}
			if err := writeCanonical(sb, e, depth+1); err != nil {
				return err
			}
		}
		sb.WriteByte(']')
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		sb.WriteByte('{')
		for i, k := range keys {
			if i > 0 {
				sb.WriteByte(',')
			}
			writeCanonicalString(sb, k)
			sb.WriteByte(':')
			if err := writeCanonical(sb, v[k], depth+1); err != nil {
				return err
			}
		}
		sb.WriteByte('}')
	default:
		return fmt.Errorf("canonical JSON: unsupported value of type %T", v)
	}
	return nil
}

func writeCanonicalString(sb *strings.Builder, s string) {
	sb.WriteByte('"')
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' || s[i] == '"' {
			sb.WriteByte('\\')
		}
		sb.WriteByte(s[i])
	}
	sb.WriteByte('"')
}
