package fwrepocli

import (
	"context"
	"encoding/json"
	"log/slog"
	"time"

	"github.com/fwctl/fwctl/internal/duration"
	"github.com/fwctl/fwctl/repo/blob"
)

// warnNoResign says, when fwrepo serves without --timestamp-key, that
// nobody will re-sign timestamp.json and when devices will start refusing
// the repository: the expiry fwctl publish gave it (24 h by default).
func warnNoResign(ctx context.Context, log *slog.Logger, store blob.Store, now time.Time) {
	b, err := blob.ReadAll(ctx, store, "metadata/timestamp.json")
	var ts struct {
		Signed struct {
			Expires time.Time `json:"expires"`
		} `json:"signed"`
	}
	if err == nil {
		err = json.Unmarshal(b, &ts)
	}
	const fix = "pass --timestamp-key (the online timestamp key fwctl init wrote under keys/) so fwrepo re-signs it, or publish again before then"
	switch {
	case err != nil:
		log.Warn("serving without --timestamp-key: nobody re-signs timestamp.json, and it cannot be read now", "err", err, "fix", fix)
	case !ts.Signed.Expires.After(now):
		log.Warn("serving without --timestamp-key: timestamp.json has expired, devices refuse this repository", "expired", ts.Signed.Expires.UTC().Format(time.RFC3339), "fix", fix)
	default:
		log.Warn("serving without --timestamp-key: nobody re-signs timestamp.json, devices refuse this repository once it expires",
			"expires", ts.Signed.Expires.UTC().Format(time.RFC3339), "in", duration.Format(ts.Signed.Expires.Sub(now).Round(time.Minute)), "fix", fix)
	}
}
