// Package fleetui is the fleet view fwrepo serves at /ui: devices (version,
// slot state, last report, identity strength), rollouts with per-wave
// progress, halts and failures with their reasons, and, for operators,
// the rollout actions (start, approve, pause, resume, abort).
//
// It is server-rendered HTML (html/template, which escapes every value:
// device reports and failure reasons are attacker-influenced text) with
// inline CSS, no script and no external asset, and a Content-Security-Policy
// that forbids both. It denies by default: every page needs a session made
// by logging in with an operator token (the same tokens as the operator
// API); sessions live in memory, expire, and are carried by an HttpOnly,
// SameSite=Strict cookie; every POST carries a per-session CSRF token and
// passes net/http's cross-origin protection; viewers see no buttons and are
// refused (403) if they post anyway. It reads and changes the fleet only
// through the small Fleet interface; FromService adapts fwrepo's rollout
// service (repo/server/operator) to it. It never signs anything itself.
package fleetui
