package test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestAgentDependencies holds DESIGN.md's line: the device agent links no
// cosign, Rekor client, cloud SDK, database driver or server framework.
func TestAgentDependencies(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "github.com/fwctl/fwctl/cmd/fwagent").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	forbidden := []string{
		"github.com/sigstore/cosign", "github.com/sigstore/rekor", "github.com/sigstore/sigstore-go",
		"github.com/sigstore/sigstore/pkg/signature/kms", "github.com/transparency-dev/trillian",
		"cloud.google.com/", "github.com/aws/", "github.com/Azure/", "google.golang.org/api",
		"database/sql", "github.com/lib/pq", "github.com/jackc/", "github.com/go-sql-driver/", "modernc.org/sqlite", "github.com/mattn/go-sqlite3",
		"github.com/gin-gonic/", "github.com/labstack/echo", "github.com/gofiber/", "github.com/go-chi/", "github.com/gorilla/mux",
		"google.golang.org/grpc", "github.com/miekg/pkcs11", "github.com/ThalesIgnite/crypto11",
		"github.com/fwctl/fwctl/repo", "github.com/fwctl/fwctl/signer", "github.com/fwctl/fwctl/transparency",
		"github.com/fwctl/fwctl/delta/zstdref", "github.com/DataDog/zstd", // cgo, release side only
	}
	for _, pkg := range strings.Fields(string(out)) {
		for _, f := range forbidden {
			if strings.HasPrefix(pkg, f) {
				t.Errorf("fwagent depends on %s (forbidden: %s)", pkg, f)
			}
		}
	}
}
