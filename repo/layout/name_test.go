package layout

import (
	"errors"
	"strings"
	"testing"
)

func TestCheckTargetPath(t *testing.T) {
	for _, tt := range []struct {
		path string
		ok   bool
		says string
	}{
		{"hw1/1.0/fw.img", true, ""},
		{"acme-gw-v2/2.4.1+rc~1/fw_a-b,c=d@e.img", true, ""},
		{"hw1/1.0/" + strings.Repeat("a", MaxTargetName), true, ""},
		{"hw1/1.0/" + strings.Repeat("a", MaxTargetName+1), false, "at most 174"},
		{"hw1/1.0/x\\y.img", false, `"\\" is not allowed`},
		{"hw1/1.0/x%2e.img", false, `"%" is not allowed`},
		{"hw1/1.0/x\ny.img", false, "a newline"},
		{"hw1/1.0/x\x7fy.img", false, "control character 0x7f"},
		{"hw1/1.0/x\x00y.img", false, "control character 0x00"},
		{"hw1/1.0/x y.img", false, "a space"},
		{"hw1/1.0/x?y.img", false, `"?"`},
		{"hw1/1.0/x#y.img", false, `"#"`},
		{"hw1/1.0/ü.img", false, "non-ASCII"},
		{"hw1/1.0/.hidden", false, "starts with '.'"},
		{"hw1/../fw.img", false, "starts with '.'"},
		{"/hw1/fw.img", false, "empty part"},
		{"hw1//fw.img", false, "empty part"},
		{"hw1/fw.img/", false, "empty part"},
		{"", false, "empty"},
		{strings.Repeat("a/", 600) + "x", false, "fit a repository file name"},
	} {
		err := CheckTargetPath(tt.path)
		if tt.ok {
			if err != nil {
				t.Errorf("CheckTargetPath(%q) = %v, want ok", tt.path, err)
			}
			continue
		}
		if !errors.Is(err, ErrInvalidName) || !strings.Contains(err.Error(), tt.says) {
			t.Errorf("CheckTargetPath(%q) = %v, want ErrInvalidName saying %q", tt.path, err, tt.says)
		}
		if err != nil && strings.ContainsAny(err.Error(), "\n\x00\x7f") {
			t.Errorf("CheckTargetPath(%q): the message prints a control character raw: %q", tt.path, err)
		}
	}
}

func FuzzCheckTargetPath(f *testing.F) {
	f.Add("hw1/1.0/fw.img")
	f.Add("x\\y")
	f.Fuzz(func(t *testing.T, p string) {
		if CheckTargetPath(p) != nil {
			return
		}
		// Accepted names are plain: no element is hidden or escaped, and
		// the hashed name fits.
		for _, e := range strings.Split(p, "/") {
			if e == "" || e[0] == '.' || strings.ContainsAny(e, "\\%?# \n") {
				t.Fatalf("accepted %q", p)
			}
		}
	})
}

func TestVersioned(t *testing.T) {
	for _, tt := range []struct {
		name    string
		version int64
		role    string
		ok      bool
	}{
		{"1.root.json", 1, "root", true},
		{"12.bins-3f.json", 12, "bins-3f", true},
		{"010.root.json", 0, "", false},
		{"0.root.json", 0, "", false},
		{"0x10.root.json", 0, "", false},
		{"root.json", 0, "", false},
		{"1.root.json.sigstore.json", 1, "root.json.sigstore", true},
	} {
		v, r, ok := ParseVersioned(tt.name)
		if v != tt.version || r != tt.role || ok != tt.ok {
			t.Errorf("ParseVersioned(%q) = %d %q %v, want %d %q %v", tt.name, v, r, ok, tt.version, tt.role, tt.ok)
		}
		if ok && Versioned(v, r) != tt.name {
			t.Errorf("Versioned(%d, %q) = %q", v, r, Versioned(v, r))
		}
	}
	if !Immutable("metadata/3.snapshot.json") || !Immutable("targets/hw/ab.img") || Immutable("metadata/timestamp.json") || Immutable("metadata/root.json") {
		t.Error("Immutable")
	}
}
