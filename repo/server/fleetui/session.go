package fleetui

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"sync"
	"time"
)

// session is one logged-in browser. The operator token stays on the
// server (it is checked again on every request, so that a revoked token
// ends its sessions at once); the browser holds only the session ID.
type session struct {
	token   string
	op      *Operator
	csrf    string
	expires time.Time
	flash   string
}

// sessions is the in-memory session table, bounded by max.
type sessions struct {
	mu  sync.Mutex
	m   map[string]*session
	max int
}

func randomID() string {
	var b [32]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// add stores s under a new ID and returns it; ok is false when the table
// is full of unexpired sessions.
func (t *sessions) add(s *session, now time.Time) (string, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m == nil {
		t.m = map[string]*session{}
	}
	if len(t.m) >= t.max {
		for id, o := range t.m {
			if !now.Before(o.expires) {
				delete(t.m, id)
			}
		}
		if len(t.m) >= t.max {
			return "", false
		}
	}
	id := randomID()
	t.m[id] = s
	return id, true
}

// get returns the unexpired session id names (nil: none).
func (t *sessions) get(id string, now time.Time) *session {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.m[id]
	if s == nil {
		return nil
	}
	if !now.Before(s.expires) {
		delete(t.m, id)
		return nil
	}
	return s
}

func (t *sessions) drop(id string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.m, id)
}

// takeFlash returns and clears s's message.
func (t *sessions) takeFlash(s *session) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	f := s.flash
	s.flash = ""
	return f
}

func (t *sessions) setFlash(s *session, msg string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s.flash = msg
}

// sameToken compares two CSRF tokens in constant time; empty never matches.
func sameToken(a, b string) bool {
	return a != "" && len(a) == len(b) && subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}
