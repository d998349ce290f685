package bootenv

import (
	"bufio"
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/grubenv-fwctl from the current encoder")

// The vectors in testdata were written by the real tools (testdata/gen.sh);
// these tests need no tool installed.

func readVars(t *testing.T, name string) map[string]string {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	vars := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), "=")
		vars[k] = v
	}
	return vars
}

func readTestdata(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestGoldenUBootMkenvimage(t *testing.T) {
	want := readVars(t, "uboot-vars.txt")
	for _, tc := range []struct {
		file      string
		redundant bool
	}{{"uboot-single.bin", false}, {"uboot-redundant.bin", true}} {
		b := readTestdata(t, tc.file)
		vars, flags, err := parseUBootEnv(b, tc.redundant)
		if err != nil {
			t.Fatalf("%s: %v", tc.file, err)
		}
		assertVars(t, vars, want)
		if tc.redundant && flags != 1 {
			t.Errorf("%s: flags = %d, want 1 (mkenvimage -r)", tc.file, flags)
		}
		// mkenvimage -p 0 with sorted input writes exactly what we write.
		enc, err := encodeUBootEnv(want, len(b), tc.redundant, flags)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(enc, b) {
			t.Errorf("%s: our encoding differs from mkenvimage's", tc.file)
		}
	}
}

func TestGoldenUBootFwSetenv(t *testing.T) {
	b0, b1 := readTestdata(t, "uboot-fwsetenv-0.bin"), readTestdata(t, "uboot-fwsetenv-1.bin")
	v0, f0, err0 := parseUBootEnv(b0, true)
	v1, f1, err1 := parseUBootEnv(b1, true)
	if err0 != nil || err1 != nil {
		t.Fatalf("copies: %v, %v", err0, err1)
	}
	if f0 != 2 || f1 != 3 {
		t.Fatalf("flags = %d, %d; want 2, 3 after three fw_setenv writes", f0, f1)
	}
	assertVars(t, v0, map[string]string{"BOOT_ORDER": "A B", "BOOT_A_LEFT": "3"})
	assertVars(t, v1, map[string]string{"BOOT_ORDER": "B A", "BOOT_A_LEFT": "3"})
	if c := currentCopy([2]bool{true, true}, [2]byte{f0, f1}); c != 1 {
		t.Fatalf("current copy = %d, want 1", c)
	}
	for i, b := range [][]byte{b0, b1} {
		vars, flags, _ := parseUBootEnv(b, true)
		enc, err := encodeUBootEnv(vars, len(b), true, flags)
		if err != nil || !bytes.Equal(enc, b) {
			t.Errorf("copy %d: our encoding differs from fw_setenv's (err %v)", i, err)
		}
	}
}

func TestGoldenGrubEditenv(t *testing.T) {
	vars, err := parseGrubEnv(readTestdata(t, "grubenv"))
	if err != nil {
		t.Fatal(err)
	}
	assertVars(t, vars, map[string]string{
		"BOOT_ORDER": "A B", "BOOT_A_LEFT": "3", "path": `C:\boot`, "two": "line 1\nline 2",
	})
}

func TestGoldenGrubEncoding(t *testing.T) {
	vars := map[string]string{
		"BOOT_ORDER": "A B", "BOOT_A_LEFT": "3", "path": `C:\boot`, "two": "line 1\nline 2",
	}
	enc, err := encodeGrubEnv(vars)
	if err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "grubenv-fwctl")
	if *update {
		if err := os.WriteFile(golden, enc, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if want := readTestdata(t, "grubenv-fwctl"); !bytes.Equal(enc, want) {
		t.Fatalf("encoding changed; if intended, run go test -run GoldenGrub -update\n got %q\nwant %q", enc[:120], want[:120])
	}
}
