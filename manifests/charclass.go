package manifests

// The identifier rules below are simple character classes. They are
// checked by hand rather than with regexp so that the device agent, which
// links this package, does not carry the regexp engine (about 150 KB of
// its size budget).

// alnum is [A-Za-z0-9].
func alnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

// inClass reports whether c is alphanumeric or one of extra.
func inClass(c byte, extra string) bool {
	if alnum(c) {
		return true
	}
	for i := 0; i < len(extra); i++ {
		if extra[i] == c {
			return true
		}
	}
	return false
}

// nameOf reports whether s is an alphanumeric byte followed by at most
// maxRest bytes that are alphanumeric or in extra
// (^[A-Za-z0-9][A-Za-z0-9EXTRA]{0,maxRest}$).
func nameOf(s, extra string, maxRest int) bool {
	if len(s) == 0 || len(s) > maxRest+1 || !alnum(s[0]) {
		return false
	}
	return allOf(s[1:], extra)
}

// runOf reports whether s has min to max bytes, each alphanumeric or in
// extra (^[A-Za-z0-9EXTRA]{min,max}$).
func runOf(s, extra string, min, max int) bool {
	return len(s) >= min && len(s) <= max && allOf(s, extra)
}

func allOf(s, extra string) bool {
	for i := 0; i < len(s); i++ {
		if !inClass(s[i], extra) {
			return false
		}
	}
	return true
}

// canonicalInteger reports whether s is -?(0|[1-9][0-9]*).
func canonicalInteger(s string) bool {
	if len(s) > 0 && s[0] == '-' {
		s = s[1:]
	}
	if len(s) == 0 || s[0] == '0' && len(s) > 1 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
