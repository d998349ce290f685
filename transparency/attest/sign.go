package attest

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/sigstore/cosign/v2/pkg/cosign"
	cbundle "github.com/sigstore/cosign/v2/pkg/cosign/bundle"
	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	"github.com/sigstore/rekor/pkg/client"
	genclient "github.com/sigstore/rekor/pkg/generated/client"
	"github.com/sigstore/rekor/pkg/generated/client/entries"
	"github.com/sigstore/rekor/pkg/generated/models"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/sigstore/sigstore/pkg/signature/dsse"
	"google.golang.org/protobuf/encoding/protojson"
)

// keySigner adapts any crypto.Signer (a file, PKCS#11 or TPM key) to
// sigstore's signature.Signer: ECDSA over SHA-256 of the message.
type keySigner struct{ key crypto.Signer }

func (k keySigner) PublicKey(...signature.PublicKeyOption) (crypto.PublicKey, error) {
	return k.key.Public(), nil
}

func (k keySigner) SignMessage(r io.Reader, _ ...signature.SignOption) ([]byte, error) {
	h := sha256.New()
	if _, err := io.Copy(h, r); err != nil {
		return nil, err
	}
	return k.key.Sign(rand.Reader, h.Sum(nil), crypto.SHA256)
}

// proofWait bounds how long Sign waits for the log to return an inclusion
// proof for a new entry.
const proofWait = 30 * time.Second

// Signed is an attestation signed and (with a log) recorded.
type Signed struct {
	// Bundle is the Sigstore bundle v0.3 JSON with the DSSE envelope.
	Bundle []byte
	// LogIndex is the entry's index in the log, -1 without a log.
	LogIndex int64
}

// Sign wraps statement in a DSSE envelope signed with key (pubPEM is its
// public key), records it in the Rekor log at rekorURL as a dsse entry when
// rekorURL is not empty, and returns the Sigstore bundle that
//
//	cosign verify-blob-attestation --new-bundle-format --key release.pub \
//	  --trusted-root trusted_root.json --bundle B --type cyclonedx IMAGE
//
// accepts (add --insecure-ignore-tlog=true without a log).
func Sign(ctx context.Context, key crypto.Signer, pubPEM, statement []byte, rekorURL string) (*Signed, error) {
	env, err := dsse.WrapSigner(keySigner{key}, PayloadType).SignMessage(bytes.NewReader(statement))
	if err != nil {
		return nil, fmt.Errorf("attest: sign: %w", err)
	}
	out := &Signed{LogIndex: -1}
	var entry *models.LogEntryAnon
	if rekorURL != "" {
		rc, err := client.GetRekorClient(rekorURL, client.WithUserAgent("fwctl"))
		if err != nil {
			return nil, fmt.Errorf("attest: rekor client for %s: %w", rekorURL, err)
		}
		if entry, err = cosign.TLogUploadDSSEEnvelope(ctx, rc, env, pubPEM); err != nil {
			return nil, fmt.Errorf("attest: log to %s: %w", rekorURL, err)
		}
		if entry, err = waitProof(ctx, rc, entry); err != nil {
			return nil, fmt.Errorf("attest: log to %s: %w", rekorURL, err)
		}
		out.LogIndex = *entry.LogIndex
	}
	pub, err := cryptoutils.UnmarshalPEMToPublicKey(pubPEM)
	if err != nil {
		return nil, fmt.Errorf("attest: release key: %w", err)
	}
	if out.Bundle, err = cbundle.MakeNewBundle(pub, entry, statement, env, pubPEM, nil); err != nil {
		return nil, fmt.Errorf("attest: bundle: %w", err)
	}
	return out, nil
}

// waitProof returns e once the log gives its inclusion proof (Rekor v1
// normally answers with it).
func waitProof(ctx context.Context, rc *genclient.Rekor, e *models.LogEntryAnon) (*models.LogEntryAnon, error) {
	deadline := time.Now().Add(proofWait)
	for e.Verification == nil || e.Verification.InclusionProof == nil {
		if time.Now().After(deadline) || e.LogIndex == nil {
			return nil, fmt.Errorf("entry has no inclusion proof after %s", proofWait)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
		resp, err := rc.Entries.GetLogEntryByIndexContext(ctx, entries.NewGetLogEntryByIndexParams().WithLogIndex(*e.LogIndex))
		if err != nil {
			return nil, err
		}
		for _, le := range resp.Payload {
			e = &le
		}
	}
	return e, nil
}

// ErrVerify means an attestation bundle does not verify.
var ErrVerify = errors.New("attestation does not verify")

// Verify checks an attestation bundle offline: its DSSE signature against
// the release public key pubPEM and that artifactSHA256 is one of the
// statement's subjects. It returns the statement. (The log entry inside is
// for auditors and cosign; Verify does not need the network.)
func Verify(bundleJSON, pubPEM, artifactSHA256 []byte) (*Statement, error) {
	var b protobundle.Bundle
	if err := protojson.Unmarshal(bundleJSON, &b); err != nil {
		return nil, fmt.Errorf("%w: not a Sigstore bundle: %v", ErrVerify, err)
	}
	env := b.GetDsseEnvelope()
	if env == nil || len(env.GetSignatures()) == 0 {
		return nil, fmt.Errorf("%w: bundle holds no signed DSSE envelope", ErrVerify)
	}
	if env.GetPayloadType() != PayloadType {
		return nil, fmt.Errorf("%w: payload type %q, want %q", ErrVerify, env.GetPayloadType(), PayloadType)
	}
	pub, err := cryptoutils.UnmarshalPEMToPublicKey(pubPEM)
	if err != nil {
		return nil, fmt.Errorf("attest: release key: %w", err)
	}
	v, err := signature.LoadVerifier(pub, crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("attest: release key: %w", err)
	}
	// Re-encode the envelope in DSSE's JSON form for the sigstore verifier.
	type sig struct {
		Sig string `json:"sig"`
	}
	ej := struct {
		PayloadType string `json:"payloadType"`
		Payload     []byte `json:"payload"`
		Signatures  []sig  `json:"signatures"`
	}{PayloadType: env.GetPayloadType(), Payload: env.GetPayload()}
	for _, s := range env.GetSignatures() {
		ej.Signatures = append(ej.Signatures, sig{Sig: encodeStd(s.GetSig())})
	}
	raw, err := json.Marshal(ej)
	if err != nil {
		return nil, err
	}
	if err := dsse.WrapVerifier(v).VerifySignature(bytes.NewReader(raw), nil); err != nil {
		return nil, fmt.Errorf("%w: signature: %v (signed by another key, or altered)", ErrVerify, err)
	}
	st, err := ParseStatement(env.GetPayload())
	if err != nil {
		return nil, err
	}
	for _, s := range st.Subjects {
		if bytes.Equal(s.SHA256, artifactSHA256) {
			return st, nil
		}
	}
	return nil, fmt.Errorf("%w: the statement is about other artifacts, not sha256 %x", ErrVerify, artifactSHA256)
}

func encodeStd(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
