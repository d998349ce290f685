package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestEncodeApply(t *testing.T) {
	dir := t.TempDir()
	p := func(name string) string { return filepath.Join(dir, name) }
	base := bytes.Repeat([]byte("firmware image v1 "), 5000)
	target := append(bytes.Repeat([]byte("firmware image v2 "), 100), base...)
	os.WriteFile(p("base"), base, 0o644)
	os.WriteFile(p("target"), target, 0o644)
	ctx := context.Background()
	if err := run(ctx, []string{"encode", p("base"), p("target"), p("d")}); err != nil {
		t.Fatal(err)
	}
	if err := run(ctx, []string{"apply", p("base"), p("d"), p("out")}); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(p("out")); !bytes.Equal(got, target) {
		t.Fatal("apply did not rebuild the target")
	}
	if err := run(ctx, []string{"header", p("d")}); err != nil {
		t.Fatal(err)
	}
	// A failed apply leaves no output behind.
	if err := run(ctx, []string{"apply", p("target"), p("d"), p("out2")}); err == nil || !strings.Contains(err.Error(), "base") {
		t.Fatalf("apply to the wrong base: %v", err)
	}
	if _, err := os.Stat(p("out2")); !os.IsNotExist(err) {
		t.Error("output of a failed apply was kept")
	}
	if err := run(ctx, []string{"frobnicate"}); err == nil {
		t.Error("unknown command accepted")
	}
}
