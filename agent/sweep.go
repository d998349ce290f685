package agent

import (
	"os"
	"path/filepath"
	"strings"
	"time"
)

// staleAfter is how old a temp file must be before the sweep removes it: a
// younger one may belong to another fwagent process still writing it (the
// daemon and a boot-time 'fwagent confirm' can overlap).
const staleAfter = time.Minute

// sweepTemp removes temp files that a killed or power-cut fwagent left in
// its state directory: atomicfile's ".NAME.tmp-*" (state.json, the root
// chain, the trust files) and go-tuf's "tuf_tmp*" in the metadata
// directory. It removes nothing else: downloads stream into the slot, so an
// interrupted install's checkpoint is the slot itself plus the "written"
// offset in state.json, and both stay. It runs once per Agent (process).
func (a *Agent) sweepTemp() {
	if a.swept {
		return
	}
	a.swept = true
	cutoff := a.Now().Add(-staleAfter)
	n := 0
	for _, dir := range []string{a.cfg.StateDir, a.rootsDir(), a.client.MetadataDir, filepath.Join(a.cfg.StateDir, "trust")} {
		ents, _ := os.ReadDir(dir) // a missing directory (before provisioning) is fine
		for _, e := range ents {
			if !e.Type().IsRegular() || !isOurTemp(e.Name()) {
				continue
			}
			fi, err := e.Info()
			if err != nil || fi.ModTime().After(cutoff) {
				continue
			}
			p := filepath.Join(dir, e.Name())
			if err := os.Remove(p); err != nil {
				a.log.Warn("cannot remove stale temp file", "path", p, "err", err)
				continue
			}
			a.log.Debug("removed stale temp file", "path", p, "modified", fi.ModTime())
			n++
		}
	}
	if n > 0 {
		a.log.Info("removed temp files left by an interrupted run", "count", n, "dir", a.cfg.StateDir)
	}
}

// isOurTemp reports whether name is a temp file the agent or go-tuf creates.
func isOurTemp(name string) bool {
	return strings.HasPrefix(name, "tuf_tmp") ||
		(strings.HasPrefix(name, ".") && strings.Contains(name, ".tmp-"))
}
