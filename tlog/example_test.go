package tlog_test

import (
	"crypto/sha256"
	"fmt"
	"os"

	"github.com/fwctl/fwctl/tlog"
)

// A device checks an image against the bundle shipped with it, then keeps
// the newest checkpoint it has seen.
func ExampleVerifyBundle() {
	read := func(name string) []byte {
		data, err := os.ReadFile("testdata/" + name)
		if err != nil {
			panic(err)
		}
		return data
	}
	releaseKey, err := tlog.ParsePublicKey(read("release.pub")) // pinned at manufacture
	if err != nil {
		panic(err)
	}
	logKey, err := tlog.ParsePublicKey(read("rekor.pub")) // pinned at manufacture
	if err != nil {
		panic(err)
	}
	digest := sha256.Sum256(read("image-1.bin")) // computed while streaming the image

	bundle, err := tlog.ParseBundle(read("image-1.sigstore.json"))
	if err != nil {
		panic(err)
	}
	cp, err := tlog.VerifyBundle(bundle, digest[:], releaseKey, logKey)
	if err != nil {
		fmt.Println("refuse image:", err)
		return
	}
	var last *tlog.Checkpoint // loaded from the device's state, if any
	last, err = tlog.Advance(last, cp, nil)
	if err != nil {
		fmt.Println("refuse checkpoint:", err)
		return
	}
	fmt.Println("accepted; log size", last.Size)
	// Output: accepted; log size 2
}
