// Package transparency records firmware releases in a Rekor v1
// transparency log and reads the log back, on the release side: upload a
// hashedrekord entry, fetch consistency proofs and checkpoints, search the
// entries made with a key (for audits), and write the Sigstore bundle and
// trusted root that the real cosign verify-blob accepts.
//
// Verification is not here: it is the pure, device-side package
// tlog, which this package's results are built for. This package
// must never be imported by the agent (it pulls in the Rekor client).
package transparency

import (
	"cmp"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"path"
	"slices"
	"time"

	"github.com/sigstore/rekor/pkg/client"
	"github.com/sigstore/rekor/pkg/generated/client/entries"
	"github.com/sigstore/rekor/pkg/generated/client/index"
	"github.com/sigstore/rekor/pkg/generated/client/pubkey"
	rekortlog "github.com/sigstore/rekor/pkg/generated/client/tlog"
	"github.com/sigstore/rekor/pkg/generated/models"

	"github.com/fwctl/fwctl/tlog"
)

// Entry is a Rekor log entry: what a device verifies, plus the entry's UUID.
type Entry struct {
	// UUID is Rekor's identifier for the entry.
	UUID string
	tlog.Entry
}

// proofWait bounds how long Upload waits for an inclusion proof when the
// log answers before integrating the entry.
const proofWait = 30 * time.Second

func newClient(rekorURL string) (*rekorClient, error) {
	if err := checkURL(rekorURL); err != nil {
		return nil, err
	}
	c, err := client.GetRekorClient(rekorURL, client.WithUserAgent("fwctl"))
	if err != nil {
		return nil, fmt.Errorf("rekor client for %s: %w", rekorURL, err)
	}
	return &rekorClient{c.Entries, c.Index, c.Pubkey, c.Tlog}, nil
}

type rekorClient struct {
	entries entries.ClientService
	index   index.ClientService
	pubkey  pubkey.ClientService
	tlog    rekortlog.ClientService
}

// Upload records a signature over an artifact in the log as a hashedrekord
// v0.0.1 entry: artifactSHA256 is the artifact's SHA-256, sig a DER
// signature over it, pubPEM the PEM public key that verifies it. It returns
// the entry with its SET, inclusion proof and checkpoint. Uploading the same
// signature again returns the existing entry.
func Upload(ctx context.Context, rekorURL string, artifactSHA256, sig, pubPEM []byte) (*Entry, error) {
	if len(artifactSHA256) != 32 {
		return nil, fmt.Errorf("upload to %s: artifact digest is %d bytes, want a SHA-256 (32)", rekorURL, len(artifactSHA256))
	}
	c, err := newClient(rekorURL)
	if err != nil {
		return nil, err
	}
	proposed := &models.Hashedrekord{
		APIVersion: ptr("0.0.1"),
		Spec: models.HashedrekordV001Schema{
			Data: &models.HashedrekordV001SchemaData{Hash: &models.HashedrekordV001SchemaDataHash{
				Algorithm: ptr(models.HashedrekordV001SchemaDataHashAlgorithmSha256),
				Value:     ptr(hex.EncodeToString(artifactSHA256)),
			}},
			Signature: &models.HashedrekordV001SchemaSignature{
				Content:   sig,
				PublicKey: &models.HashedrekordV001SchemaSignaturePublicKey{Content: pubPEM},
			},
		},
	}
	var e *Entry
	created, err := c.entries.CreateLogEntryContext(ctx, entries.NewCreateLogEntryParams().WithProposedEntry(proposed))
	var conflict *entries.CreateLogEntryConflict
	switch {
	case errors.As(err, &conflict):
		e, err = c.byUUID(ctx, path.Base(conflict.Location.String()))
	case err != nil:
		err = fmt.Errorf("upload to %s: %w", rekorURL, err)
	default:
		e, err = single(created.Payload)
	}
	if err != nil {
		return nil, err
	}
	// Rekor v1 normally answers with the proof; wait for it otherwise.
	deadline := time.Now().Add(proofWait)
	for e.Proof == nil {
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("upload to %s: entry %d has no inclusion proof after %s", rekorURL, e.LogIndex, proofWait)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("upload to %s: waiting for inclusion proof: %w", rekorURL, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
		if e, err = c.byUUID(ctx, e.UUID); err != nil {
			return nil, err
		}
	}
	return e, nil
}

// GetEntry fetches the entry at logIndex with a fresh inclusion proof.
func GetEntry(ctx context.Context, rekorURL string, logIndex int64) (*Entry, error) {
	c, err := newClient(rekorURL)
	if err != nil {
		return nil, err
	}
	resp, err := c.entries.GetLogEntryByIndexContext(ctx, entries.NewGetLogEntryByIndexParams().WithLogIndex(logIndex))
	if err != nil {
		return nil, fmt.Errorf("get entry %d from %s: %w", logIndex, rekorURL, err)
	}
	return single(resp.Payload)
}

func (c *rekorClient) byUUID(ctx context.Context, uuid string) (*Entry, error) {
	resp, err := c.entries.GetLogEntryByUUIDContext(ctx, entries.NewGetLogEntryByUUIDParams().WithEntryUUID(uuid))
	if err != nil {
		return nil, fmt.Errorf("get entry %s: %w", uuid, err)
	}
	return single(resp.Payload)
}

// single converts Rekor's {uuid: entry} answer through the device's own
// parser, so that both sides read the same bytes the same way.
func single(le models.LogEntry) (*Entry, error) {
	if len(le) != 1 {
		return nil, fmt.Errorf("rekor answered with %d entries, want 1", len(le))
	}
	raw, err := json.Marshal(le)
	if err != nil {
		return nil, fmt.Errorf("encode rekor entry: %w", err)
	}
	te, err := tlog.ParseRekorEntry(raw)
	if err != nil {
		return nil, err
	}
	e := &Entry{Entry: *te}
	for uuid := range le {
		e.UUID = uuid
	}
	return e, nil
}

// LogPublicKey fetches the log's public key (PEM), to be pinned once and
// shipped to devices; never trust it fresh from the network afterwards.
func LogPublicKey(ctx context.Context, rekorURL string) ([]byte, error) {
	c, err := newClient(rekorURL)
	if err != nil {
		return nil, err
	}
	resp, err := c.pubkey.GetPublicKeyContext(ctx, pubkey.NewGetPublicKeyParams())
	if err != nil {
		return nil, fmt.Errorf("get log public key from %s: %w", rekorURL, err)
	}
	return []byte(resp.Payload), nil
}

// Checkpoint fetches the log's current signed checkpoint (a note that
// tlog.VerifyCheckpoint checks).
func Checkpoint(ctx context.Context, rekorURL string) ([]byte, error) {
	c, err := newClient(rekorURL)
	if err != nil {
		return nil, err
	}
	resp, err := c.tlog.GetLogInfoContext(ctx, rekortlog.NewGetLogInfoParams())
	if err != nil {
		return nil, fmt.Errorf("get log info from %s: %w", rekorURL, err)
	}
	if resp.Payload == nil || resp.Payload.SignedTreeHead == nil {
		return nil, fmt.Errorf("get log info from %s: no signed checkpoint", rekorURL)
	}
	return []byte(*resp.Payload.SignedTreeHead), nil
}

// ConsistencyProof fetches the proof that the tree of lastSize extends the
// tree of firstSize (for tlog.Consistent and tlog.Advance).
func ConsistencyProof(ctx context.Context, rekorURL string, firstSize, lastSize int64) ([][]byte, error) {
	if firstSize < 0 || lastSize < firstSize {
		return nil, fmt.Errorf("consistency proof from size %d to %d: sizes out of order", firstSize, lastSize)
	}
	if firstSize == 0 || firstSize == lastSize {
		return nil, nil // nothing to prove; Rekor refuses these requests
	}
	c, err := newClient(rekorURL)
	if err != nil {
		return nil, err
	}
	resp, err := c.tlog.GetLogProofContext(ctx, rekortlog.NewGetLogProofParams().WithFirstSize(&firstSize).WithLastSize(lastSize))
	if err != nil {
		return nil, fmt.Errorf("consistency proof from size %d to %d from %s: %w", firstSize, lastSize, rekorURL, err)
	}
	hashes := make([][]byte, len(resp.Payload.Hashes))
	for i, h := range resp.Payload.Hashes {
		if hashes[i], err = hex.DecodeString(h); err != nil {
			return nil, fmt.Errorf("consistency proof from %s: hash %d: %w", rekorURL, i, err)
		}
	}
	return hashes, nil
}

// searchBatch is the most UUIDs Rekor returns in one retrieve request.
const searchBatch = 10

// SearchByKey returns every entry in the log made with the PEM public key
// pubPEM, ordered by log index. An audit compares their digests
// (tlog.ParseHashedRekord(e.Body)) with the published releases: an entry
// that matches none reveals a misused key.
func SearchByKey(ctx context.Context, rekorURL string, pubPEM []byte) ([]*Entry, error) {
	c, err := newClient(rekorURL)
	if err != nil {
		return nil, err
	}
	q := &models.SearchIndex{PublicKey: &models.SearchIndexPublicKey{
		Format:  ptr(models.SearchIndexPublicKeyFormatX509),
		Content: pubPEM,
	}}
	found, err := c.index.SearchIndexContext(ctx, index.NewSearchIndexParams().WithQuery(q))
	if err != nil {
		return nil, fmt.Errorf("search %s by public key: %w", rekorURL, err)
	}
	uuids := found.Payload
	var out []*Entry
	for len(uuids) > 0 {
		n := min(len(uuids), searchBatch)
		resp, err := c.entries.SearchLogQueryContext(ctx, entries.NewSearchLogQueryParams().
			WithEntry(&models.SearchLogQuery{EntryUUIDs: uuids[:n]}))
		if err != nil {
			return nil, fmt.Errorf("retrieve entries from %s: %w", rekorURL, err)
		}
		for _, le := range resp.Payload {
			e, err := single(le)
			if err != nil {
				return nil, fmt.Errorf("retrieve entries from %s: %w", rekorURL, err)
			}
			out = append(out, e)
		}
		uuids = uuids[n:]
	}
	slices.SortFunc(out, func(a, b *Entry) int { return cmp.Compare(a.LogIndex, b.LogIndex) })
	return out, nil
}

func ptr[T any](v T) *T { return &v }

func checkURL(rekorURL string) error {
	u, err := url.Parse(rekorURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("rekor URL %q: want http(s)://host[:port]", rekorURL)
	}
	return nil
}
