package main
import (
 _ "github.com/theupdateframework/go-tuf/v2/metadata"
 _ "github.com/theupdateframework/go-tuf/v2/metadata/updater"
 _ "github.com/spf13/cobra"
 _ "github.com/rogpeppe/go-internal/testscript"
 _ "github.com/klauspost/compress/zstd"
 _ "github.com/google/go-tpm/tpm2"
 _ "github.com/google/go-tpm/tpm2/transport/tcp"
 _ "golang.org/x/term"
 _ "github.com/transparency-dev/merkle/proof"
 _ "github.com/transparency-dev/merkle/rfc6962"
 _ "github.com/sigstore/rekor/pkg/client"
 _ "github.com/sigstore/rekor/pkg/generated/client/entries"
 _ "github.com/sigstore/rekor/pkg/types/hashedrekord/v0.0.1"
 _ "github.com/secure-systems-lab/go-securesystemslib/encrypted"
)
func main(){}
