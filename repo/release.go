package repo

import (
	"context"
	"os"
	"path/filepath"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/fwctl/fwctl/repo/blob"
	"github.com/fwctl/fwctl/repo/upload"
)

// ReleaseOptions control Release.
type ReleaseOptions struct {
	// Out is the output repository directory (default
	// WORKSPACE/repository); with Store set, it only names the store.
	Out string
	// Store, when set, is object storage to release to: Release publishes
	// into a local staging directory seeded from it (upload.StageFrom),
	// then uploads that, timestamp.json last.
	Store blob.Store
	// RekorURL, when set, records new images and the new targets version
	// in that Rekor log, and publishes the proofs beside them.
	RekorURL string
	// Expiry overrides the workspace's expiry for the roles given.
	Expiry map[string]time.Duration
	// Progress, when set, is told about each file written or uploaded.
	Progress func(msg string)
	// Rerun is the command that finishes an interrupted upload, for the
	// *upload.Error that says so.
	Rerun string
	// Attest, when set, writes the in-toto attestations (SBOM, SLSA
	// provenance) of new releases; they become targets (attestations.go).
	Attest Attestor
}

// ReleaseResult reports what Release did.
type ReleaseResult struct {
	*PublishResult
	Logged []Logged       `json:"logged,omitempty"`
	Upload *upload.Result `json:"upload,omitempty"`
}

// Release runs a whole publish in the order that is a security invariant,
// so no caller can reorder it: log the new images to Rekor (their proofs
// become targets), attest new releases (their bundles become targets), sign and write the repository (every file nothing
// references yet first, timestamp.json last), log the new targets version
// and publish its proof, and, for object storage, upload the staged
// repository with timestamp.json last. A failure at any step leaves the
// previous release visible to devices; running Release again finishes the
// job.
func (ws *Workspace) Release(ctx context.Context, opt ReleaseOptions) (*ReleaseResult, error) {
	out := opt.Out
	if out == "" {
		out = filepath.Join(ws.Dir, "repository")
	}
	dir := out
	if opt.Store != nil {
		var err error
		if dir, err = upload.StageFrom(ctx, opt.Store); err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
	}
	res := &ReleaseResult{}
	if opt.RekorURL != "" {
		logged, err := ws.LogTargets(ctx, opt.RekorURL)
		if err != nil {
			return nil, err
		}
		res.Logged = logged
	}
	if opt.Attest != nil {
		logged, err := ws.AttestTargets(ctx, opt.Attest)
		if err != nil {
			return nil, err
		}
		res.Logged = append(res.Logged, logged...)
	}
	pub, err := ws.Publish(dir, PublishOptions{Expiry: opt.Expiry, Progress: opt.Progress})
	if err != nil {
		return nil, err
	}
	res.PublishResult = pub
	if opt.RekorURL != "" {
		l, err := ws.LogTargetsMetadata(ctx, opt.RekorURL, dir, pub.Versions[metadata.TARGETS])
		if err != nil {
			return nil, err
		}
		res.Logged = append(res.Logged, *l)
	}
	if opt.Store != nil {
		up, err := upload.Upload(ctx, dir, opt.Store, opt.Rerun, upload.Options{Progress: opt.Progress, SignTimestamp: ws.SignTimestamp})
		if err != nil {
			return nil, err
		}
		res.Upload = up
	}
	pub.Out = out
	return res, nil
}
