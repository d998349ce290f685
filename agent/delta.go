package agent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"

	"github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/updater"

	"github.com/fwctl/fwctl/agent/slot"
	"github.com/fwctl/fwctl/delta"
	"github.com/fwctl/fwctl/manifests"
)

// findDelta returns a delta target among offered that rebuilds rel from the
// image the running slot holds, if the repository offers one.
func (a *Agent) findDelta(offered map[string]*metadata.TargetFiles, rel *Release, running *SlotState) *Release {
	if running == nil || running.SHA256 == "" || running.Status != SlotGood {
		return nil
	}
	for path, tf := range offered {
		r, fw, err := releaseOf(path, tf)
		if err != nil || fw.Kind != manifests.KindDelta || !fw.ForHardware(a.cfg.Hardware) {
			continue
		}
		if fw.Image.SHA256 == rel.SHA256 && fw.Image.Length == rel.Length &&
			fw.Base.SHA256 == running.SHA256 && fw.Base.Length == running.Length {
			return r
		}
	}
	return nil
}

// writeDelta downloads delta d and applies it while it streams: the base is
// read from the running slot, the result is written into sl. Nothing is
// buffered beyond the decoder's bounded window.
func (a *Agent) writeDelta(ctx context.Context, up *updater.Updater, d *Release, rel *Release, running slot.Slot, baseLen int64, sl slot.Slot) error {
	base, err := os.Open(running.Path)
	if err != nil {
		return fmt.Errorf("open running slot as delta base: %w", err)
	}
	defer base.Close()
	w, err := sl.Create()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pr, pw := io.Pipe()
	dl := make(chan error, 1)
	go func() {
		err := a.client.Resume(ctx, up, d.tf, pw, sha256.New(), 0, a.Progress)
		pw.CloseWithError(err)
		dl <- err
	}()
	hdr, aerr := delta.Apply(ctx, base, baseLen, pr, w)
	if aerr == nil {
		// Read whatever follows the last block, so the download's own
		// length and hash check completes.
		_, aerr = io.Copy(io.Discard, pr)
	}
	if aerr != nil {
		cancel()
		pr.CloseWithError(aerr)
	}
	derr := <-dl
	if derr != nil {
		w.Abort()
		return classify(fmt.Errorf("download delta %s: %w", d.Target, derr))
	}
	if aerr != nil {
		w.Abort()
		return fmt.Errorf("apply delta %s: %w", d.Target, aerr)
	}
	if got := hex.EncodeToString(hdr.ResultSHA256[:]); got != rel.SHA256 {
		w.Abort()
		return fmt.Errorf("delta %s rebuilds %s, want %s", d.Target, got, rel.SHA256)
	}
	return w.Commit()
}
