package layout

import (
	"errors"
	"fmt"
	"strings"
)

// Name limits. A stored file name element may have at most MaxElement
// bytes (NAME_MAX on Linux file systems), and a repository file name at
// most MaxName bytes (an S3 object key's limit), prefix included.
const (
	MaxElement = 255
	MaxName    = 1024
	// hashedPrefix is what a consistent snapshot puts before a target's
	// file name: 64 hex digits of SHA-256 and a dot.
	hashedPrefix = 65
	// tempOverhead is what an atomic write adds to a name for its
	// temporary file: ".NAME.tmp-" and up to 10 digits.
	tempOverhead = 16
	// MaxTargetName is the longest last element of a target path: the
	// temporary file of its hashed file name must fit MaxElement.
	MaxTargetName = MaxElement - tempOverhead - hashedPrefix
)

// ErrInvalidName is wrapped by every refusal of a target path.
var ErrInvalidName = errors.New("invalid target name")

// NameRule says in one sentence which target names are accepted, for
// messages and documentation.
const NameRule = "letters, digits and . _ - + ~ @ = , (ASCII) in /-separated parts, none empty or starting with '.', the file name at most 174 bytes"

// CheckTargetPath checks a target path ("HARDWARE/VERSION/NAME", or any
// path a delegated role signs) against the one naming rule every part of
// fwctl shares: relative, '/'-separated elements of the characters
// NameRule lists, none empty, none starting with '.' (which also rules out
// "." and "..", and the hidden temporary and lock files stores use), the
// last one short enough that its consistent-snapshot name SHA256.NAME fits
// one file name element, and the whole repository file name at most
// MaxName bytes. Names outside the rule would be escaped differently by
// URLs, file systems and object stores (a backslash, '%', '?', '#',
// spaces), print misleadingly (control characters, newlines), or fail at
// publish instead of when staged (too long).
func CheckTargetPath(p string) error {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("%w %q: %s; use %s", ErrInvalidName, p, fmt.Sprintf(format, args...), NameRule)
	}
	if p == "" {
		return fail("it is empty")
	}
	if n := len(TargetsDir) + 1 + hashedPrefix + len(p); n > MaxName {
		return fail("%d bytes, at most %d fit a repository file name", len(p), MaxName-len(TargetsDir)-1-hashedPrefix)
	}
	elems := strings.Split(p, "/")
	for i, e := range elems {
		if e == "" {
			return fail("it has an empty part (a leading, trailing or doubled '/')")
		}
		if e[0] == '.' {
			return fail("part %q starts with '.'", e)
		}
		for _, c := range []byte(e) {
			if !nameByte(c) {
				return fail("%s is not allowed", describe(c))
			}
		}
		limit := MaxElement - tempOverhead
		if i == len(elems)-1 {
			limit = MaxTargetName
		}
		if len(e) > limit {
			return fail("part %.20q… is %d bytes, at most %d fit a file name once published as SHA256.NAME", e, len(e), limit)
		}
	}
	return nil
}

func nameByte(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("._-+~@=,", c) >= 0
}

// describe names a refused byte so that the message itself stays
// printable.
func describe(c byte) string {
	switch {
	case c == '\n':
		return "a newline"
	case c < 0x20 || c == 0x7f:
		return fmt.Sprintf("control character 0x%02x", c)
	case c >= 0x80:
		return "a non-ASCII byte"
	case c == ' ':
		return "a space"
	}
	return fmt.Sprintf("%q", string(c))
}

// CheckFile checks a repository file name ("metadata/3.snapshot.json",
// "targets/hw1/1.0/SHA256.fw.img"): the name rule's characters in
// relative, '/'-separated elements, none empty or starting with '.', each
// at most MaxElement bytes, the whole at most MaxName. The blob stores,
// the HTTP source and fwrepo's server accept exactly these names, so a
// file one of them holds is one the others serve.
func CheckFile(name string) error {
	fail := func(why string) error {
		return fmt.Errorf("%w: repository file name %q: %s", ErrInvalidName, name, why)
	}
	if name == "" || len(name) > MaxName {
		return fail(fmt.Sprintf("want 1 to %d bytes", MaxName))
	}
	for _, e := range strings.Split(name, "/") {
		switch {
		case e == "":
			return fail("empty element")
		case e[0] == '.':
			return fail("element starts with '.'")
		case len(e) > MaxElement:
			return fail(fmt.Sprintf("element longer than %d bytes", MaxElement))
		}
		for _, c := range []byte(e) {
			if !nameByte(c) {
				return fail(describe(c) + " is not allowed")
			}
		}
	}
	return nil
}
