package tpm

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"testing"
)

func TestSigningKeyTPM(t *testing.T) {
	t.Parallel()
	sim, tp := open(t)
	ctx := context.Background()
	const h1, h2 Handle = 0x81000101, 0x81000102

	if _, _, err := tp.SigningKey(ctx, h1, false); !errors.Is(err, ErrNoKey) {
		t.Fatalf("SigningKey before creation = %v, want ErrNoKey", err)
	}
	k1, created, err := tp.SigningKey(ctx, h1, true)
	if err != nil || !created {
		t.Fatalf("create: created %v, %v", created, err)
	}
	again, created, err := tp.SigningKey(ctx, h1, true)
	if err != nil || created || again.KeyID() != k1.KeyID() {
		t.Fatalf("create again: created %v, same key %v, %v; want the existing key", created, err == nil && again.KeyID() == k1.KeyID(), err)
	}
	k2, _, err := tp.SigningKey(ctx, h2, true)
	if err != nil {
		t.Fatal(err)
	}
	if k2.KeyID() == k1.KeyID() {
		t.Fatal("two handles hold the same key")
	}
	// Each key signs with its own handle: signatures verify under its own
	// public key only.
	d := sha256.Sum256([]byte("timestamp.json"))
	for _, k := range []*SigningKey{k1, k2} {
		sig, err := k.Sign(rand.Reader, d[:], crypto.SHA256)
		if err != nil {
			t.Fatal(err)
		}
		if !ecdsa.VerifyASN1(k.Public().(*ecdsa.PublicKey), d[:], sig) {
			t.Fatalf("signature of key %#08x does not verify", uint32(k.Handle()))
		}
		other := k1
		if k == k1 {
			other = k2
		}
		if ecdsa.VerifyASN1(other.Public().(*ecdsa.PublicKey), d[:], sig) {
			t.Fatal("signature verifies under the other key")
		}
	}
	// Signing keys are not the device key.
	if _, err := tp.DeviceKey(ctx); !errors.Is(err, ErrNotProvisioned) {
		t.Fatalf("DeviceKey = %v, want ErrNotProvisioned", err)
	}

	// The key persists across a TPM restart.
	tp.Close()
	sim.Restart()
	tp = openSim(t, sim)
	k, created, err := tp.SigningKey(ctx, h1, false)
	if err != nil || created || k.KeyID() != k1.KeyID() {
		t.Fatalf("after restart: %v, created %v", err, created)
	}
	sig, err := k.Sign(rand.Reader, d[:], crypto.SHA256)
	if err != nil || !ecdsa.VerifyASN1(k1.Public().(*ecdsa.PublicKey), d[:], sig) {
		t.Fatalf("sign after restart: %v", err)
	}
}

func TestSigningKeyHandleTPM(t *testing.T) {
	t.Parallel()
	for _, h := range []Handle{DeviceKeyHandle, 0x01004650, 0x80000001, 0x82000000} {
		if err := CheckSigningKeyHandle(h); err == nil {
			t.Errorf("CheckSigningKeyHandle(%#08x) accepted", uint32(h))
		}
	}
	for _, h := range []Handle{0x81000000, 0x81000101, 0x817FFFFF, 0x81FFFFFF} {
		if err := CheckSigningKeyHandle(h); err != nil {
			t.Errorf("CheckSigningKeyHandle(%#08x): %v", uint32(h), err)
		}
	}
	_, tp := open(t)
	if _, _, err := tp.SigningKey(context.Background(), DeviceKeyHandle, true); err == nil {
		t.Error("SigningKey at the device key handle accepted")
	}
	if _, _, err := tp.SigningKey(context.Background(), 0x81800001, true); err == nil {
		t.Error("created a key in the platform range")
	}
	// A provisioned device key is not a signing key one can ask for.
	provision(t, tp)
	if _, _, err := tp.SigningKey(context.Background(), DeviceKeyHandle, false); err == nil {
		t.Error("SigningKey returned the device key")
	}
}
