package packaging

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/goreleaser/nfpm/v2"
	"github.com/goreleaser/nfpm/v2/deb"
	"github.com/goreleaser/nfpm/v2/files"
)

const (
	maintainer = "fwctl maintainers <fwctl@example.com>"
	homepage   = "https://github.com/fwctl/fwctl"
	license    = "Apache-2.0"
)

// Package is one built package file.
type Package struct {
	Name string `json:"name"`
	Path string `json:"path"`
}

// fwrepoPostinst creates the fwrepo user (sysusers.d) and its directories,
// and tells systemd about the unit; it enables and starts nothing.
const fwrepoPostinst = `#!/bin/sh
set -e
if [ "$1" = configure ]; then
  if command -v systemd-sysusers >/dev/null 2>&1; then
    systemd-sysusers /usr/lib/sysusers.d/fwrepo.conf
  elif ! getent passwd fwrepo >/dev/null; then
    adduser --system --group --home /var/lib/fwrepo --no-create-home fwrepo
  fi
  install -d -o fwrepo -g fwrepo -m 0750 /var/lib/fwrepo /var/lib/fwrepo/repo
fi
if [ -d /run/systemd/system ]; then systemctl daemon-reload >/dev/null || true; fi
`

const reloadSystemd = `#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then systemctl daemon-reload >/dev/null || true; fi
`

// Debs writes fwctl_V_ARCH.deb, fwrepo_… and fwagent_… into outDir.
func Debs(src Sources, outDir string) ([]Package, error) {
	if err := src.check(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp("", "fwctl-deb-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	scripts := map[string]string{"fwrepo.postinst": fwrepoPostinst, "reload": reloadSystemd}
	for name, body := range scripts {
		if err := os.WriteFile(filepath.Join(tmp, name), []byte(body), 0o755); err != nil {
			return nil, err
		}
	}
	env := filepath.Join(tmp, "fwrepo.env")
	if err := os.WriteFile(env, []byte(fwrepoEnv), 0o600); err != nil {
		return nil, err
	}
	ex := func(p ...string) string { return filepath.Join(append([]string{src.Examples}, p...)...) }
	specs := []struct {
		name, desc string
		depends    []string
		contents   files.Contents
		postinst   string
	}{
		{"fwctl", "sign and publish firmware releases (release side of fwctl)\n" +
			" fwctl creates signing workspaces, records firmware images with their\n hardware, version and security counter, and publishes a signed TUF\n repository that fwrepo serves and fwagent verifies.",
			[]string{"libc6"}, files.Contents{
				bin(src, "fwctl"),
				tree(ex("ci"), "/usr/share/doc/fwctl/examples/ci"),
			}, ""},
		{"fwrepo", "serve a signed fwctl firmware repository to devices\n" +
			" fwrepo serves the repository fwctl publishes, re-signs its timestamp\n with an online key, and keeps the device inventory.",
			nil, files.Contents{
				bin(src, "fwrepo"),
				file(ex("systemd", "fwrepo.service"), "/lib/systemd/system/fwrepo.service", 0o644),
				file(ex("systemd", "fwrepo.sysusers.conf"), "/usr/lib/sysusers.d/fwrepo.conf", 0o644),
				{Source: env, Destination: "/etc/fwrepo/fwrepo.env", Type: files.TypeConfigNoReplace,
					FileInfo: &files.ContentFileInfo{Mode: 0o600}},
			}, filepath.Join(tmp, "fwrepo.postinst")},
		{"fwagent", "install signed firmware updates on an A/B device (fwctl agent)\n" +
			" fwagent verifies release metadata against the root pinned at\n provisioning, installs into the inactive slot and lets the bootloader\n try it; fwagent confirm makes it permanent, else the device falls back.",
			nil, files.Contents{
				bin(src, "fwagent"),
				file(ex("systemd", "fwagent.service"), "/lib/systemd/system/fwagent.service", 0o644),
				file(ex("systemd", "fwagent-confirm.service"), "/lib/systemd/system/fwagent-confirm.service", 0o644),
				file(ex("systemd", "fwagent-confirm.timer"), "/lib/systemd/system/fwagent-confirm.timer", 0o644),
				tree(ex("config"), "/usr/share/doc/fwagent/examples/config"),
				{Destination: "/etc/fwagent", Type: files.TypeDir, FileInfo: &files.ContentFileInfo{Mode: 0o755}},
			}, filepath.Join(tmp, "reload")},
	}
	var out []Package
	for _, s := range specs {
		if !src.wants(s.name) {
			continue
		}
		man, err := manPages(src.Man, s.name, filepath.Join(tmp, "man-"+s.name))
		if err != nil {
			return nil, err
		}
		var contents files.Contents
		for _, c := range s.contents {
			if c.Type == files.TypeTree {
				if _, err := os.Stat(c.Source); err != nil {
					return nil, fmt.Errorf("package %s: %w", s.name, err)
				}
			}
			contents = append(contents, c)
		}
		info := &nfpm.Info{
			Name: s.name, Arch: src.Arch, Platform: "linux", Version: PackageVersion(src.Version),
			VersionSchema: "none", Section: "admin", Priority: "optional",
			Maintainer: maintainer, Homepage: homepage, License: license, Vendor: "fwctl",
			Description: s.desc, MTime: src.mtime(),
			Overridables: nfpm.Overridables{
				Depends:  s.depends,
				Contents: append(contents, man...),
				Scripts:  nfpm.Scripts{PostInstall: s.postinst},
			},
		}
		if s.postinst == "" {
			info.Scripts = nfpm.Scripts{}
		}
		p, err := writeDeb(info, outDir)
		if err != nil {
			return nil, fmt.Errorf("package %s: %w", s.name, err)
		}
		out = append(out, Package{Name: s.name, Path: p})
	}
	return out, nil
}

const fwrepoEnv = `# fwrepo.service settings (EnvironmentFile=). Root-only: it may hold a
# passphrase. After a change: systemctl restart fwrepo (or reload, for a
# rotated timestamp key).
#
# The published repository (fwctl publish --out), a directory or
# s3://BUCKET/PREFIX, and the listen address:
#FWREPO_DIR=/var/lib/fwrepo/repo
#FWREPO_ADDR=127.0.0.1:8080
#
# More flags, e.g. the online timestamp key and the device inventory:
#FWREPO_OPTS=--timestamp-key /etc/fwrepo/timestamp.json --db /var/lib/fwrepo/inventory.db
#FWREPO_PASSPHRASE=
#
# Object storage credentials for an s3:// FWREPO_DIR:
#AWS_ACCESS_KEY_ID=
#AWS_SECRET_ACCESS_KEY=
#AWS_ENDPOINT_URL=
`

func bin(src Sources, name string) *files.Content {
	return file(filepath.Join(src.Bin, name), "/usr/bin/"+name, 0o755)
}

func file(from, to string, mode os.FileMode) *files.Content {
	return &files.Content{Source: from, Destination: to, FileInfo: &files.ContentFileInfo{Mode: mode}}
}

func tree(from, to string) *files.Content {
	return &files.Content{Source: from, Destination: to, Type: files.TypeTree}
}

// manPages gzips the man pages of program (PROGRAM.1, PROGRAM-*.1) into
// dir, as Debian installs them, and lists them for the package.
func manPages(manDir, program, dir string) (files.Contents, error) {
	if manDir == "" {
		return nil, nil
	}
	pages, err := filepath.Glob(filepath.Join(manDir, program+"*.1"))
	if err != nil {
		return nil, err
	}
	var own []string
	for _, p := range pages {
		b := filepath.Base(p)
		if b == program+".1" || strings.HasPrefix(b, program+"-") {
			own = append(own, p)
		}
	}
	if len(own) == 0 {
		return nil, fmt.Errorf("no man page %s.1 in %s (run tools/fwdist docs first)", program, manDir)
	}
	sort.Strings(own)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var out files.Contents
	for _, p := range own {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		var z bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&z, gzip.BestCompression)
		zw.Write(b)
		if err := zw.Close(); err != nil {
			return nil, err
		}
		gz := filepath.Join(dir, filepath.Base(p)+".gz")
		if err := os.WriteFile(gz, z.Bytes(), 0o644); err != nil {
			return nil, err
		}
		out = append(out, file(gz, "/usr/share/man/man1/"+filepath.Base(gz), 0o644))
	}
	return out, nil
}

func writeDeb(info *nfpm.Info, outDir string) (string, error) {
	info = nfpm.WithDefaults(info)
	if err := nfpm.PrepareForPackager(info, "deb"); err != nil {
		return "", err
	}
	name := deb.Default.ConventionalFileName(info)
	path := filepath.Join(outDir, name)
	f, err := os.Create(path)
	if err != nil {
		return "", err
	}
	if err := deb.Default.Package(info, f); err != nil {
		f.Close()
		os.Remove(path)
		return "", err
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	return path, nil
}
