package manifests

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// ErrDuplicateKey is wrapped by RejectDuplicateKeys when an object names a
// member twice.
var ErrDuplicateKey = errors.New("JSON object has a duplicate member")

// maxStrictDepth bounds nesting, as maxCanonicalDepth does for Canonicalize.
const maxStrictDepth = 64

// RejectDuplicateKeys reports an error if data is not one valid JSON value,
// or if any object in it names a member twice (after unescaping:
// "manifest" and "\u006danifest" are the same name). encoding/json keeps
// the last of two members and other parsers the first, so a signed
// document with a duplicate can be read two ways: whoever parses signed
// JSON calls this first and refuses it. Names that differ only in case are
// distinct, as JSON says; callers that decode into structs (which match
// case-insensitively) also check the exact member names. It never panics.
func RejectDuplicateKeys(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	type frame struct {
		keys      map[string]bool // nil for an array
		expectKey bool
	}
	var stack []frame
	values := 0
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			if values != 1 || len(stack) != 0 {
				return errors.New("invalid JSON: want exactly one value")
			}
			return nil
		}
		if err != nil {
			return fmt.Errorf("invalid JSON: %w", err)
		}
		if len(stack) == 0 {
			if values++; values > 1 {
				return errors.New("invalid JSON: data after the top-level value")
			}
		}
		top := len(stack) - 1
		switch t := tok.(type) {
		case json.Delim:
			switch t {
			case '{', '[':
				if len(stack) >= maxStrictDepth {
					return fmt.Errorf("invalid JSON: nested deeper than %d levels", maxStrictDepth)
				}
				f := frame{}
				if t == '{' {
					f = frame{keys: map[string]bool{}, expectKey: true}
				}
				stack = append(stack, f)
				continue
			default: // '}' or ']': the value of the enclosing member ends
				stack = stack[:top]
				top--
			}
		case string:
			if top >= 0 && stack[top].keys != nil && stack[top].expectKey {
				if stack[top].keys[t] {
					return fmt.Errorf("%w: %q", ErrDuplicateKey, clip(t))
				}
				stack[top].keys[t] = true
				stack[top].expectKey = false
				continue
			}
		}
		if top >= 0 && stack[top].keys != nil {
			stack[top].expectKey = true // a member's value ended
		}
	}
}
