package agent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"

	"github.com/fwctl/fwctl/agent/slot"
	"github.com/fwctl/fwctl/agent/tufclient"
	"github.com/fwctl/fwctl/delta"
)

// writeDelta downloads delta d and applies it while it streams: the base is
// read from the running slot, the result is written into sl, which is
// opened (and begin run) only when the first rebuilt byte is written.
// Nothing is buffered beyond the decoder's bounded window.
func (a *Agent) writeDelta(ctx context.Context, up *tufclient.Trusted, d *Release, rel *Release, running slot.Slot, baseLen int64, sl slot.Slot, begin func() error) error {
	base, err := os.Open(running.Path)
	if err != nil {
		return fmt.Errorf("open running slot as delta base: %w", err)
	}
	defer base.Close()
	w := &checkpointWriter{next: 1<<63 - 1, open: func() (*slot.Writer, error) {
		if err := begin(); err != nil {
			return nil, err
		}
		return sl.Create()
	}}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pr, pw := io.Pipe()
	dl := make(chan error, 1)
	go func() {
		err := a.client.ResumeTarget(ctx, up, d.tf, pw, sha256.New(), 0, a.Progress)
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
	abort := func() {
		if w.w != nil {
			w.w.Abort()
		}
	}
	if derr != nil {
		abort()
		return classify(fmt.Errorf("download delta %s: %w", d.Target, derr))
	}
	if aerr != nil {
		abort()
		return fmt.Errorf("apply delta %s: %w", d.Target, aerr)
	}
	if got := hex.EncodeToString(hdr.ResultSHA256[:]); got != rel.SHA256 {
		abort()
		return fmt.Errorf("delta %s rebuilds %s, want %s", d.Target, got, rel.SHA256)
	}
	if w.w == nil {
		if _, err := w.Write(nil); err != nil {
			return err
		}
	}
	return w.w.Commit()
}
