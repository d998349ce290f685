package manifests

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"unicode/utf8"
)

// maxCanonicalDepth bounds nesting so hostile input cannot exhaust the stack.
const maxCanonicalDepth = 32

// The only number form canonical JSON allows is -?(0|[1-9][0-9]*)
// (canonicalInteger).

// Canonicalize returns the canonical encoding of the JSON value in b, the
// bytes a device manifest signature covers:
//
//   - no insignificant whitespace;
//   - object members sorted by the UTF-8 bytes of their names, duplicate
//     names refused;
//   - numbers only as integers without exponent, fraction or leading zeros
//     ("-0" refused);
//   - strings escaped as encoding/json does without HTML escaping ('"', '\\',
//     control characters, U+2028 and U+2029), everything else literal UTF-8;
//   - input must be valid UTF-8 and at most 32 levels deep.
//
// Canonicalize(Canonicalize(b)) equals Canonicalize(b). It is the TUF/OLPC
// idea restricted to what a device manifest needs, so that an implementation
// in another language can reproduce it without a JSON library's quirks.
func Canonicalize(b []byte) ([]byte, error) {
	if !utf8.Valid(b) {
		return nil, errors.New("canonical JSON: input is not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var out bytes.Buffer
	if err := canonValue(dec, &out, 0); err != nil {
		return nil, fmt.Errorf("canonical JSON: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("canonical JSON: data after the top-level value")
	}
	return out.Bytes(), nil
}

func canonValue(dec *json.Decoder, out *bytes.Buffer, depth int) error {
	if depth > maxCanonicalDepth {
		return fmt.Errorf("nested deeper than %d levels", maxCanonicalDepth)
	}
	tok, err := dec.Token()
	if err != nil {
		if err == io.EOF {
			return io.ErrUnexpectedEOF
		}
		return err
	}
	switch v := tok.(type) {
	case json.Delim:
		switch v {
		case '{':
			return canonObject(dec, out, depth)
		case '[':
			return canonArray(dec, out, depth)
		}
		return fmt.Errorf("unexpected %q", rune(v))
	case string:
		return canonString(out, v)
	case json.Number:
		if !canonicalInteger(string(v)) || v == "-0" {
			return fmt.Errorf("number %s: only integers without exponent or leading zeros are allowed", v)
		}
		out.WriteString(string(v))
	case bool:
		if v {
			out.WriteString("true")
		} else {
			out.WriteString("false")
		}
	case nil:
		out.WriteString("null")
	default:
		return fmt.Errorf("unexpected token %v", tok)
	}
	return nil
}

func canonObject(dec *json.Decoder, out *bytes.Buffer, depth int) error {
	members := map[string][]byte{}
	var names []string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		name, ok := tok.(string)
		if !ok {
			return fmt.Errorf("object member name %v is not a string", tok)
		}
		if _, dup := members[name]; dup {
			return fmt.Errorf("duplicate object member %q", name)
		}
		var v bytes.Buffer
		if err := canonValue(dec, &v, depth+1); err != nil {
			return err
		}
		members[name] = v.Bytes()
		names = append(names, name)
	}
	if _, err := dec.Token(); err != nil { // '}'
		return err
	}
	slices.Sort(names)
	out.WriteByte('{')
	for i, name := range names {
		if i > 0 {
			out.WriteByte(',')
		}
		if err := canonString(out, name); err != nil {
			return err
		}
		out.WriteByte(':')
		out.Write(members[name])
	}
	out.WriteByte('}')
	return nil
}

func canonArray(dec *json.Decoder, out *bytes.Buffer, depth int) error {
	out.WriteByte('[')
	for i := 0; dec.More(); i++ {
		if i > 0 {
			out.WriteByte(',')
		}
		if err := canonValue(dec, out, depth+1); err != nil {
			return err
		}
	}
	if _, err := dec.Token(); err != nil { // ']'
		return err
	}
	out.WriteByte(']')
	return nil
}

func canonString(out *bytes.Buffer, s string) error {
	enc := json.NewEncoder(out)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(s); err != nil {
		return err
	}
	out.Truncate(out.Len() - 1) // Encode's newline
	return nil
}
