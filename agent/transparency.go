package agent

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"encoding/hex"
	"errors"
	"fmt"
	"os"

	"github.com/fwctl/fwctl/agent/tufclient"
	"github.com/fwctl/fwctl/manifests"
	"github.com/fwctl/fwctl/tlog"
)

// ErrNoLogProof means the device's policy requires a transparency-log proof
// for every image and the release has none, or it does not verify.
var ErrNoLogProof = errors.New("release is not provably in the transparency log")

// TransparencyConfig is the device's transparency policy.
type TransparencyConfig struct {
	// Require refuses any image without a valid inclusion proof.
	Require bool `json:"require"`
	// LogPublicKey is the PEM file of the Rekor log's public key.
	LogPublicKey string `json:"log_public_key,omitempty"`
	// ReleasePublicKey is the PEM file of the release key that signs
	// images for the log (ECDSA P-256).
	ReleasePublicKey string `json:"release_public_key,omitempty"`
}

// maxBundle bounds the size of a proof bundle the agent will download.
const maxBundle = 1 << 20

// checkTransparency enforces the policy for rel: it downloads the release's
// Sigstore bundle (itself a TUF target, so hash-checked against signed
// metadata) and verifies offline that the log recorded this image signed by
// the release key: signature, SET, inclusion proof and checkpoint, with no
// Rekor client. The checkpoint must not be older than the last one accepted.
func (a *Agent) checkTransparency(ctx context.Context, up *tufclient.Trusted, rel *Release, st *State) error {
	tc := a.cfg.Transparency
	if !tc.Require {
		return nil
	}
	refuse := func(format string, args ...any) error {
		return fmt.Errorf("%w: %w: %s", ErrRefused, ErrNoLogProof, fmt.Sprintf(format, args...))
	}
	logKey, err := readKey(tc.LogPublicKey)
	if err != nil {
		return fmt.Errorf("transparency.log_public_key: %w", err)
	}
	relKey, err := readKey(tc.ReleasePublicKey)
	if err != nil {
		return fmt.Errorf("transparency.release_public_key: %w", err)
	}
	fw, err := manifests.ParseCustom(*rel.tf.Custom)
	if err != nil {
		return err
	}
	if fw.Tlog == "" {
		return refuse("%s names no log proof (publish with 'fwctl publish --rekor URL')", rel.Target)
	}
	tf, err := up.GetTargetInfo(fw.Tlog)
	if err != nil {
		return refuse("proof %s is not in the signed metadata: %v", fw.Tlog, err)
	}
	if tf.Length > maxBundle {
		return refuse("proof %s is %d bytes, at most %d allowed", fw.Tlog, tf.Length, maxBundle)
	}
	tf.Path = fw.Tlog
	var buf bytes.Buffer
	if err := a.client.FetchTarget(ctx, up, tf, &buf, nil); err != nil {
		return classify(fmt.Errorf("download proof %s: %w", fw.Tlog, err))
	}
	b, err := tlog.ParseBundle(buf.Bytes())
	if err != nil {
		return refuse("%v", err)
	}
	digest, _ := hex.DecodeString(rel.SHA256)
	cp, err := tlog.VerifyBundle(b, digest, relKey, logKey)
	if err != nil {
		return refuse("%v", err)
	}
	if last := st.Checkpoint; last != nil && last.Origin == cp.Origin {
		if cp.Size < last.Size {
			return refuse("%v: proof is against tree size %d, the device has seen %d", tlog.ErrRollback, cp.Size, last.Size)
		}
		if cp.Size == last.Size && !bytes.Equal(cp.RootHash, last.RootHash) {
			return refuse("%v: two different trees of size %d", tlog.ErrInconsistent, cp.Size)
		}
	}
	if st.Checkpoint == nil || cp.Size >= st.Checkpoint.Size {
		st.Checkpoint = &Checkpoint{Origin: cp.Origin, Size: cp.Size, RootHash: cp.RootHash}
	}
	a.log.Info("transparency proof verified", "target", rel.Target, "log", cp.Origin, "tree_size", cp.Size)
	return nil
}

// Checkpoint is the last transparency-log checkpoint the device accepted.
type Checkpoint struct {
	Origin   string `json:"origin"`
	Size     uint64 `json:"size"`
	RootHash []byte `json:"root_hash"`
}

func readKey(path string) (*ecdsa.PublicKey, error) {
	if path == "" {
		return nil, errors.New("missing: the policy requires it")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return tlog.ParsePublicKey(b)
}
