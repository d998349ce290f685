package inventory

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/fwctl/fwctl/repo/inventory/rollout"
)

// Operator roles: a viewer reads the fleet; an operator also changes it
// (tags, devices, rollouts).
const (
	RoleViewer   = "viewer"
	RoleOperator = "operator"
)

// Errors of operator tokens.
var (
	// ErrBadToken means a presented token is not one of the stored ones
	// (never issued, revoked, or mistyped).
	ErrBadToken = errors.New("operator token not recognised (revoked or mistyped?)")
	// ErrTokenExists means a token of that name exists.
	ErrTokenExists = errors.New("a token of that name exists")
	// ErrUnknownToken means no token has that name.
	ErrUnknownToken = errors.New("no token of that name")
)

// tokenPrefix starts every operator token, so that one found in a log or a
// repository is recognisable.
const tokenPrefix = "fwop_"

// Token is a stored operator token (never the token itself: only its
// SHA-256 is kept, which for 256 random bits is as strong as a slow hash).
type Token struct {
	Name      string     `json:"name"`
	Role      string     `json:"role"`
	CreatedAt time.Time  `json:"created_at"`
	LastUsed  *time.Time `json:"last_used,omitempty"`
}

// Allows reports whether the token's role may do what needs role.
func (t *Token) Allows(role string) bool {
	return t.Role == RoleOperator || role == RoleViewer && t.Role == RoleViewer
}

func tokenHash(tok string) string {
	h := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(h[:])
}

// ValidTokenName reports whether n is an acceptable token name.
func ValidTokenName(n string) bool {
	if n == "" || len(n) > 64 {
		return false
	}
	for _, r := range n {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-' || r == '@') {
			return false
		}
	}
	return true
}

// CreateToken creates an operator token called name with role and returns
// the token, which is shown only here.
func (d *DB) CreateToken(ctx context.Context, name, role string) (string, *Token, error) {
	if role != RoleViewer && role != RoleOperator {
		return "", nil, fmt.Errorf("role %q: want %s or %s", role, RoleViewer, RoleOperator)
	}
	if !ValidTokenName(name) {
		return "", nil, fmt.Errorf("token name %q: want 1-64 letters, digits, '.', '_', '-', '@'", name)
	}
	if name == rollout.Anonymous {
		return "", nil, fmt.Errorf("token name %q is reserved for changes made without a token ('fwrepo rollout' on the database): choose another name", name)
	}
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", nil, err
	}
	tok := tokenPrefix + base64.RawURLEncoding.EncodeToString(b[:])
	now := d.Now().UTC()
	res, err := d.db.ExecContext(ctx, d.q("INSERT INTO tokens (name, role, hash, created_at) VALUES (?, ?, ?, ?) ON CONFLICT (name) DO NOTHING"),
		name, role, tokenHash(tok), now.UnixNano())
	if err != nil {
		return "", nil, fmt.Errorf("create token %s: %w", name, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return "", nil, fmt.Errorf("%w: %q (revoke it first, or choose another name)", ErrTokenExists, name)
	}
	return tok, &Token{Name: name, Role: role, CreatedAt: now}, nil
}

// Tokens lists the operator tokens by name.
func (d *DB) Tokens(ctx context.Context) ([]*Token, error) {
	rows, err := d.db.QueryContext(ctx, "SELECT name, role, created_at, last_used FROM tokens ORDER BY name")
	if err != nil {
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	defer rows.Close()
	out := []*Token{}
	for rows.Next() {
		t, err := scanToken(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

func scanToken(row interface{ Scan(...any) error }) (*Token, error) {
	var (
		t       Token
		created int64
		used    sql.NullInt64
	)
	if err := row.Scan(&t.Name, &t.Role, &created, &used); err != nil {
		return nil, err
	}
	t.CreatedAt = time.Unix(0, created).UTC()
	if used.Valid {
		u := time.Unix(0, used.Int64).UTC()
		t.LastUsed = &u
	}
	return &t, nil
}

// RevokeToken deletes the token called name.
func (d *DB) RevokeToken(ctx context.Context, name string) error {
	res, err := d.db.ExecContext(ctx, d.q("DELETE FROM tokens WHERE name = ?"), name)
	if err != nil {
		return fmt.Errorf("revoke token %s: %w", name, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("%w: %q ('fwrepo token list' shows them)", ErrUnknownToken, name)
	}
	return nil
}

// Authenticate returns the stored token tok is, or ErrBadToken. It notes
// the use at most once a minute per token.
func (d *DB) Authenticate(ctx context.Context, tok string) (*Token, error) {
	if !strings.HasPrefix(tok, tokenPrefix) || len(tok) > 128 {
		return nil, ErrBadToken
	}
	h := tokenHash(tok)
	t, err := scanToken(d.db.QueryRowContext(ctx, d.q("SELECT name, role, created_at, last_used FROM tokens WHERE hash = ?"), h))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrBadToken
	}
	if err != nil {
		return nil, fmt.Errorf("look up token: %w", err)
	}
	now := d.Now().UTC()
	if t.LastUsed == nil || now.Sub(*t.LastUsed) > time.Minute {
		_, _ = d.db.ExecContext(ctx, d.q("UPDATE tokens SET last_used = ? WHERE hash = ?"), now.UnixNano(), h)
	}
	return t, nil
}
