package inventory

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
)

// The two PostgreSQL connection string forms libpq (and pgx) accept: a URL
// whose scheme is postgres or postgresql in any case, and keyword=value
// pairs ("host=db user=fwrepo password='…' dbname=fleet").
var (
	pgKeywords = map[string]bool{
		"host": true, "hostaddr": true, "port": true, "dbname": true, "user": true, "password": true,
		"passfile": true, "connect_timeout": true, "sslmode": true, "sslcert": true, "sslkey": true,
		"sslrootcert": true, "sslpassword": true, "sslsni": true, "application_name": true,
		"target_session_attrs": true, "options": true, "service": true, "servicefile": true,
		"krbsrvname": true, "min_read_buffer_size": true,
	}
	// kvPassword matches a password (or sslpassword) value of a
	// keyword=value string, quoted or not.
	kvPassword = regexp.MustCompile(`(?i)(\b(?:ssl)?password\s*=\s*)('(?:[^'\\]|\\.)*'?|\S*)`)
	// urlPassword matches the password of a URL's user info, also in a URL
	// that does not parse.
	urlPassword = regexp.MustCompile(`(://[^:/@?#]*:)([^@]*)(@)`)
	// queryPassword matches password= in a URL's query.
	queryPassword = regexp.MustCompile(`(?i)([?&](?:ssl)?password=)([^&#]*)`)
)

// pgScheme returns the URL scheme of dsn, lower-cased, when it is one.
func pgScheme(dsn string) (string, bool) {
	scheme, _, ok := strings.Cut(dsn, "://")
	s := strings.ToLower(scheme)
	return s, ok && (s == "postgres" || s == "postgresql")
}

// isKeyValue reports whether dsn is a keyword=value connection string:
// its first word is a libpq keyword followed by '='.
func isKeyValue(dsn string) bool {
	k, _, ok := strings.Cut(strings.TrimSpace(dsn), "=")
	return ok && pgKeywords[strings.ToLower(strings.TrimSpace(k))]
}

// IsPostgres reports whether dsn names a PostgreSQL database (a
// postgres:// or postgresql:// URL in any case, or a keyword=value
// connection string) rather than an SQLite file.
func IsPostgres(dsn string) bool {
	_, url := pgScheme(dsn)
	return url || isKeyValue(dsn)
}

// normalizeDSN lower-cases a URL's scheme: pgx recognises only
// "postgres://" and "postgresql://".
func normalizeDSN(dsn string) string {
	if s, ok := pgScheme(dsn); ok {
		return s + dsn[len(s):]
	}
	return dsn
}

// checkSQLitePath refuses a name that looks like a connection string or a
// URL: opening it would create an SQLite file named after it (and after
// the password in it).
func checkSQLitePath(path string) error {
	if strings.Contains(path, "://") || strings.ContainsAny(path, "=?#") || strings.HasPrefix(path, "file:") {
		// Not quoted: it may hold a password in a form not recognised.
		return fmt.Errorf("the inventory database is neither a PostgreSQL URL (postgres://…), a PostgreSQL keyword=value string (host=… dbname=…), nor an SQLite file name; refusing to create a file named like a connection string (want %s, or a path without '=', '?', '#' or '://')",
			pgURLForm)
	}
	return nil
}

// RedactDSN returns dsn with any password replaced by "xxxxx", for logs and
// error messages. Both forms are redacted, and so is a string of neither
// form that carries something like a password.
func RedactDSN(dsn string) string {
	if _, ok := pgScheme(dsn); ok {
		if u, err := url.Parse(normalizeDSN(dsn)); err == nil {
			dsn = u.Redacted()
		}
	}
	dsn = urlPassword.ReplaceAllString(dsn, "${1}xxxxx${3}")
	dsn = queryPassword.ReplaceAllString(dsn, "${1}xxxxx")
	return kvPassword.ReplaceAllString(dsn, "${1}xxxxx")
}

// passwords returns the passwords dsn holds, as written and as decoded.
func passwords(dsn string) []string {
	var out []string
	add := func(p string) {
		if p == "" {
			return
		}
		out = append(out, p)
		if d, err := url.PathUnescape(p); err == nil && d != p {
			out = append(out, d)
		}
		if strings.HasPrefix(p, "'") {
			q := strings.TrimSuffix(strings.TrimPrefix(p, "'"), "'")
			out = append(out, q, strings.NewReplacer(`\'`, `'`, `\\`, `\`).Replace(q))
		}
	}
	for _, m := range urlPassword.FindAllStringSubmatch(dsn, -1) {
		add(m[2])
	}
	for _, m := range queryPassword.FindAllStringSubmatch(dsn, -1) {
		add(m[2])
	}
	for _, m := range kvPassword.FindAllStringSubmatch(dsn, -1) {
		add(m[2])
	}
	return out
}

// redactedError is an error whose message had dsn's passwords removed; it
// still unwraps to the original for errors.Is and errors.As.
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

// redactErr removes dsn's passwords from err's message.
func redactErr(err error, dsn string) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	for _, p := range passwords(dsn) {
		msg = strings.ReplaceAll(msg, p, "xxxxx")
	}
	if msg == err.Error() {
		return err
	}
	var re *redactedError
	if errors.As(err, &re) {
		return &redactedError{msg: msg, err: re.err}
	}
	return &redactedError{msg: msg, err: err}
}
