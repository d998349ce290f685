package tpm_test

import (
	"context"
	"crypto"
	"crypto/sha256"
	"fmt"
	"log"

	"github.com/fwctl/fwctl/tpm"
)

// Provisioning at the factory, then what the agent does in the field.
func Example() {
	ctx := context.Background()
	rootDigest := sha256.Sum256([]byte("contents of the initial root.json"))

	// Factory: with the owner password, which then stays off the device.
	t, err := tpm.Open(ctx, "/dev/tpmrm0", tpm.WithOwnerAuth([]byte("factory secret")))
	if err != nil {
		log.Fatal(err)
	}
	report, err := t.ProvisionDevice(ctx, rootDigest)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(report.Details)
	t.Close()

	// Field: no owner password needed.
	t, err = tpm.Open(ctx, "/dev/tpmrm0")
	if err != nil {
		log.Fatal(err)
	}
	defer t.Close()
	if err := t.RaiseCounter(ctx, 40); err != nil { // after the new slot confirmed healthy
		log.Fatal(err)
	}
	key, err := t.DeviceKey(ctx)
	if err != nil {
		log.Fatal(err)
	}
	digest := sha256.Sum256([]byte("device manifest"))
	sig, err := key.Sign(nil, digest[:], crypto.SHA256)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s\n%x\n%s", key.KeyID(), sig, key.PublicKeyPEM())
}
