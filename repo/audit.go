package repo

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/fwctl/fwctl/internal/atomicfile"
	"github.com/fwctl/fwctl/repo/layout"
	"github.com/fwctl/fwctl/repo/verify"
	"github.com/fwctl/fwctl/tlog"
	"github.com/fwctl/fwctl/transparency"
)

// Finding is one audit problem.
type Finding struct {
	Kind   string `json:"kind"` // missing-proof, bad-proof, not-in-log, inconsistent-log, unannounced
	Detail string `json:"detail"`
}

// AuditReport is the result of Audit.
type AuditReport struct {
	Targets     int       `json:"targets_checked"`
	Metadata    int       `json:"targets_versions_checked"`
	LogEntries  int       `json:"log_entries_by_release_key"`
	TreeSize    uint64    `json:"tree_size"`
	PrevSize    uint64    `json:"previous_tree_size,omitempty"`
	Findings    []Finding `json:"findings"`
	CheckedAt   time.Time `json:"checked_at"`
	Unannounced []string  `json:"unannounced_sha256,omitempty"`
}

// AuditOptions name what Audit checks against.
type AuditOptions struct {
	Repo        string        // published repository directory, when Source is nil
	Source      verify.Source // the published repository (a directory, bucket or URL)
	TrustedRoot []byte        // root.json the repository must verify from
	RekorURL    string
	LogKeyPEM   []byte // the log's public key, pinned by the auditor
	// StateDir keeps the last checkpoint seen, to prove the log only grew.
	StateDir string
}

// Audit checks a published repository against the transparency log: every
// firmware target and every signed targets version must carry a proof that
// verifies offline and is still in the log; the log's current checkpoint
// must be consistent with the one seen last time; and every entry the log
// holds for the release key must correspond to something published —
// anything else means the key was used behind the release process's back.
func (ws *Workspace) Audit(ctx context.Context, opt AuditOptions) (*AuditReport, error) {
	rep := &AuditReport{CheckedAt: time.Now().UTC(), Findings: []Finding{}}
	add := func(kind, format string, args ...any) {
		rep.Findings = append(rep.Findings, Finding{kind, fmt.Sprintf(format, args...)})
	}
	pub, err := ws.ReleasePublicKey()
	if err != nil {
		return nil, err
	}
	relKey, err := tlog.ParsePublicKey(pub)
	if err != nil {
		return nil, err
	}
	logKey, err := tlog.ParsePublicKey(opt.LogKeyPEM)
	if err != nil {
		return nil, fmt.Errorf("log key: %w", err)
	}
	src := opt.Source
	if src == nil {
		src = verify.DirSource(opt.Repo)
	}
	v, err := verify.Verify(ctx, src, opt.TrustedRoot, time.Now())
	if err != nil {
		return nil, fmt.Errorf("the repository itself does not verify: %w", err)
	}
	known := map[string]bool{}
	checkBundle := func(what string, b []byte, digest []byte) {
		bundle, err := tlog.ParseBundle(b)
		if err != nil {
			add("bad-proof", "%s: %v", what, err)
			return
		}
		if _, err := tlog.VerifyBundle(bundle, digest, relKey, logKey); err != nil {
			add("bad-proof", "%s: %v", what, err)
			return
		}
		for _, e := range bundle.Entries {
			cur, err := transparency.GetEntry(ctx, opt.RekorURL, e.LogIndex)
			if err != nil || !bytes.Equal(cur.Body, e.Body) {
				add("not-in-log", "%s: log index %d is not in the log as recorded (%v)", what, e.LogIndex, err)
			}
		}
	}
	for _, t := range v.Targets {
		if t.Firmware == nil {
			continue
		}
		rep.Targets++
		known[t.SHA256] = true
		if t.Firmware.Tlog == "" {
			add("missing-proof", "%s (%s) has no transparency proof", t.Path, t.Firmware.Version)
			continue
		}
		tf, ok := v.File(t.Firmware.Tlog)
		if !ok {
			add("missing-proof", "%s names proof %s, which is not a signed target", t.Path, t.Firmware.Tlog)
			continue
		}
		// Verify checked this file; read it again, no longer than signed.
		b, err := verify.ReadLimited(ctx, src, verify.TargetFile(tf), tf.Length, true)
		if err != nil {
			add("missing-proof", "%s: %v", t.Path, err)
			continue
		}
		d, _ := hex.DecodeString(t.SHA256)
		checkBundle(t.Path, b, d)
	}
	// Every targets version up to the verified one. A source cannot be
	// listed (HTTP), so ask for each; a version no longer published is
	// skipped, as it would be absent from a directory listing.
	for tv := int64(1); tv <= v.Versions[metadata.TARGETS]; tv++ {
		name := fmt.Sprintf("%d.targets.json", tv)
		b, err := verify.ReadLimited(ctx, src, "metadata/"+name, layout.MaxTargetsLength, false)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		rep.Metadata++
		d := sha256.Sum256(b)
		known[hex.EncodeToString(d[:])] = true
		bundle, err := verify.ReadLimited(ctx, src, "metadata/"+name+BundleSuffix, layout.MaxBundleLength, false)
		if errors.Is(err, fs.ErrNotExist) {
			add("missing-proof", "metadata/%s has no transparency proof", name)
			continue
		}
		if err != nil {
			return nil, err
		}
		checkBundle("metadata/"+name, bundle, d[:])
	}

	// The log only grows: check the current checkpoint against the last one.
	note, err := transparency.Checkpoint(ctx, opt.RekorURL)
	if err != nil {
		return nil, err
	}
	cur, err := tlog.VerifyCheckpoint(note, logKey)
	if err != nil {
		add("inconsistent-log", "current checkpoint: %v", err)
	} else {
		rep.TreeSize = cur.Size
		statePath := filepath.Join(opt.StateDir, "checkpoint")
		if old, err := os.ReadFile(statePath); err == nil {
			prev, err := tlog.VerifyCheckpoint(old, logKey)
			if err == nil {
				rep.PrevSize = prev.Size
				var hashes [][]byte
				if prev.Size != cur.Size && prev.Size > 0 {
					hashes, err = transparency.ConsistencyProof(ctx, opt.RekorURL, int64(prev.Size), int64(cur.Size))
				}
				if err == nil {
					err = tlog.Consistent(prev, cur, hashes)
				}
			}
			if err != nil {
				add("inconsistent-log", "checkpoint of size %d does not extend the one seen before: %v", cur.Size, err)
			}
		}
		if len(rep.Findings) == 0 || rep.Findings[len(rep.Findings)-1].Kind != "inconsistent-log" {
			if err := os.MkdirAll(opt.StateDir, 0o700); err != nil {
				return nil, err
			}
			if err := atomicfile.Write(statePath, note, 0o644); err != nil {
				return nil, err
			}
		}
	}

	// Everything the log holds for our key must be something we published.
	entries, err := transparency.SearchByKey(ctx, opt.RekorURL, pub)
	if err != nil {
		return nil, err
	}
	rep.LogEntries = len(entries)
	for _, e := range entries {
		hr, err := tlog.ParseHashedRekord(e.Body)
		if err != nil {
			continue
		}
		if d := hex.EncodeToString(hr.Digest); !known[d] {
			rep.Unannounced = append(rep.Unannounced, d)
			add("unannounced", "log index %d: the release key signed sha256 %s, which no published release or targets version contains", e.LogIndex, d)
		}
	}
	return rep, nil
}
