package test

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/fwctl/fwctl/agent"
	"github.com/fwctl/fwctl/internal/testenv"
	"github.com/fwctl/fwctl/repo"
	"github.com/fwctl/fwctl/repo/verify"
	"github.com/fwctl/fwctl/tlog"
	"github.com/fwctl/fwctl/transparency"
	"github.com/fwctl/fwctl/transparency/rekortest"
)

// publishLogged records the staged images in the log and publishes.
func (r *release) publishLogged(rekorURL string) {
	r.t.Helper()
	if _, err := r.ws.LogTargets(context.Background(), rekorURL); err != nil {
		r.t.Fatal(err)
	}
	res, err := r.ws.Publish(r.pub, repo.PublishOptions{})
	if err != nil {
		r.t.Fatal(err)
	}
	if _, err := r.ws.LogTargetsMetadata(context.Background(), rekorURL, r.pub, res.Versions[metadata.TARGETS]); err != nil {
		r.t.Fatal(err)
	}
}

// setProof makes the staged target at path name bundle as its proof, as
// someone holding the targets key could.
func (r *release) setProof(t *testing.T, path string, bundle []byte) {
	t.Helper()
	bpath := path + ".forged" + repo.BundleSuffix
	if err := r.ws.PutFile(bpath, bundle); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(r.ws.Dir, "staged", "targets.json")
	md, err := metadata.Targets().FromFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var custom map[string]map[string]any
	json.Unmarshal(*md.Signed.Targets[path].Custom, &custom)
	custom["fw"]["tlog"] = bpath
	b, _ := json.Marshal(custom)
	raw := json.RawMessage(b)
	md.Signed.Targets[path].Custom = &raw
	if err := md.ToFile(p, true); err != nil {
		t.Fatal(err)
	}
}

func (r *release) bundleOf(t *testing.T, path string) *tlog.Bundle {
	t.Helper()
	b, err := tlog.ParseBundle(mustRead(t, filepath.Join(r.ws.Dir, "targets", filepath.FromSlash(path+repo.BundleSuffix))))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestTransparency(t *testing.T) {
	rekorURL, logPub := rekortest.Need(t)
	ctx := context.Background()

	r := newRelease(t)
	v1 := r.add("1.0.0", 1, 30_000)
	r.publishLogged(rekorURL)
	r.add("2.0.0", 2, 30_000)
	r.publishLogged(rekorURL)
	audit := func() *repo.AuditReport {
		t.Helper()
		rep, err := r.ws.Audit(ctx, repo.AuditOptions{Repo: r.pub, TrustedRoot: r.rootJSON(), RekorURL: rekorURL,
			LogKeyPEM: logPub, StateDir: filepath.Join(r.ws.Dir, "transparency")})
		if err != nil {
			t.Fatal(err)
		}
		return rep
	}

	t.Run("audit clean", func(t *testing.T) {
		rep := audit()
		if len(rep.Findings) != 0 || rep.Targets != 2 || rep.Metadata != 2 {
			t.Fatalf("audit of two logged releases: %+v", rep)
		}
	})

	t.Run("audit over HTTP", func(t *testing.T) {
		// The same repository served by fwrepo's handler audits alike.
		src, err := verify.NewHTTPSource(r.serve(), verify.HTTPOptions{})
		if err != nil {
			t.Fatal(err)
		}
		rep, err := r.ws.Audit(ctx, repo.AuditOptions{Source: src, TrustedRoot: r.rootJSON(), RekorURL: rekorURL,
			LogKeyPEM: logPub, StateDir: filepath.Join(r.ws.Dir, "transparency")})
		if err != nil {
			t.Fatal(err)
		}
		if len(rep.Findings) != 0 || rep.Targets != 2 || rep.Metadata != 2 {
			t.Fatalf("audit over HTTP of two logged releases: %+v", rep)
		}
	})

	relPub := filepath.Join(r.ws.Dir, "release.pub")
	logPubFile := filepath.Join(t.TempDir(), "log.pub")
	os.WriteFile(logPubFile, logPub, 0o644)
	policy := func(d *device) {
		withConfig(t, d, func(m map[string]any) {
			m["transparency"] = map[string]any{"require": true, "log_public_key": logPubFile, "release_public_key": relPub}
		})
	}

	t.Run("cosign verify-blob accepts the bundles", func(t *testing.T) {
		cosign := filepath.Join(rekortest.ToolsDir(), "cosign")
		if _, err := os.Stat(cosign); err != nil {
			testenv.Missing(t, "cosign", "run scripts/cosign.sh to build it into "+rekortest.ToolsDir())
		}
		tr, err := transparency.TrustedRoot(rekorURL, logPub, time.Now().Add(-time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, "trusted_root.json"), tr, 0o644)
		img := filepath.Join(dir, "v1.img")
		os.WriteFile(img, v1, 0o644)
		bundle := filepath.Join(r.ws.Dir, "targets", hw, "1.0.0", "firmware.img"+repo.BundleSuffix)
		out, err := exec.Command(cosign, "verify-blob", "--new-bundle-format", "--trusted-root", filepath.Join(dir, "trusted_root.json"),
			"--key", relPub, "--bundle", bundle, img).CombinedOutput()
		if err != nil {
			t.Fatalf("cosign verify-blob: %v\n%s", err, out)
		}
	})

	t.Run("device requires and verifies proofs", func(t *testing.T) {
		d := newDevice(t, r.serve(), hw)
		policy(d)
		d.provision(r.rootJSON())
		d.mustInstall(mustRead(t, targetFile(t, r, "2.0.0")))

		// An image published without a log entry is refused.
		r.add("3.0.0", 3, 30_000)
		r.publish()
		err := attack(t, d, agent.ErrNoLogProof)
		if !strings.Contains(err.Error(), "names no log proof") {
			t.Fatalf("error %v", err)
		}

		// A proof for a different image is refused.
		r.setProof(t, hw+"/3.0.0/firmware.img", mustRead(t, filepath.Join(r.ws.Dir, "targets", hw, "2.0.0", "firmware.img"+repo.BundleSuffix)))
		r.publish()
		err = attack(t, d, agent.ErrNoLogProof)
		if !errors.Is(err, tlog.ErrWrongImage) && !strings.Contains(err.Error(), "different image") {
			t.Fatalf("proof for another image: %v", err)
		}

		// A forged checkpoint and a truncated inclusion proof are refused.
		r.add("4.0.0", 4, 30_000)
		r.publishLogged(rekorURL)
		good := r.bundleOf(t, hw+"/4.0.0/firmware.img")
		forged := *good
		forged.Entries = append([]tlog.Entry(nil), good.Entries...)
		p := *forged.Entries[0].Proof
		lines := strings.SplitN(string(good.Entries[0].Proof.Checkpoint), "\n", 3)
		lines[1] = "999999" // claim another tree size, keep the signature
		p.Checkpoint = []byte(strings.Join(lines, "\n"))
		forged.Entries[0].Proof = &p
		b, _ := forged.Marshal()
		r.setProof(t, hw+"/4.0.0/firmware.img", b)
		r.publish()
		err = attack(t, d, agent.ErrNoLogProof)
		if !errors.Is(err, tlog.ErrBadCheckpoint) && !errors.Is(err, tlog.ErrBadProof) && !strings.Contains(err.Error(), "checkpoint") {
			t.Fatalf("forged checkpoint: %v", err)
		}

		truncated := *good
		truncated.Entries = append([]tlog.Entry(nil), good.Entries...)
		tp := *truncated.Entries[0].Proof
		if len(tp.Hashes) == 0 {
			t.Fatal("inclusion proof has no hashes to truncate")
		}
		tp.Hashes = tp.Hashes[:len(tp.Hashes)-1]
		truncated.Entries[0].Proof = &tp
		b, _ = truncated.Marshal()
		r.setProof(t, hw+"/4.0.0/firmware.img", b)
		r.publish()
		err = attack(t, d, agent.ErrNoLogProof)
		if !strings.Contains(err.Error(), "inclusion proof") {
			t.Fatalf("truncated proof: %v", err)
		}

		// With its genuine proof restored, v4 installs.
		gb, _ := good.Marshal()
		r.setProof(t, hw+"/4.0.0/firmware.img", gb)
		r.publish()
		d.mustInstall(mustRead(t, targetFile(t, r, "4.0.0")))
	})

	t.Run("audit finds a key used behind our back", func(t *testing.T) {
		key, pub, err := r.ws.ReleaseKey()
		if err != nil {
			t.Fatal(err)
		}
		secret := make([]byte, 1000)
		rand.Read(secret)
		d := sha256.Sum256(secret)
		sig, err := key.Sign(rand.Reader, d[:], crypto256{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := transparency.Upload(ctx, rekorURL, d[:], sig, pub); err != nil {
			t.Fatal(err)
		}
		rep := audit()
		found := false
		for _, f := range rep.Findings {
			found = found || f.Kind == "unannounced" && strings.Contains(f.Detail, hexs(d[:]))
		}
		if !found {
			t.Fatalf("audit did not report the unannounced entry: %+v", rep.Findings)
		}
	})
}

type crypto256 struct{}

func (crypto256) HashFunc() crypto.Hash { return crypto.SHA256 }

func hexs(b []byte) string { return hex.EncodeToString(b) }
