package exposure

import (
	"archive/zip"

	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// MaxFileSize bounds one OSV record or VEX document.
const MaxFileSize = 16 << 20

// Data is vulnerability data read from files: OSV records and VEX
// statements.
type Data struct {
	Records    []*Record
	Statements []Statement
}

// Load reads every path: an OSV record or VEX document (.json), a
// directory of them (recursively), or a zip of OSV records as osv.dev
// exports (all.zip). The first bad file ends it with an *InputError.
func Load(paths ...string) (*Data, error) {
	d := &Data{}
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		switch {
		case st.IsDir():
			var files []string
			err := filepath.WalkDir(p, func(path string, e fs.DirEntry, err error) error {
				if err != nil {
					return err
				}
				if !e.IsDir() && (strings.HasSuffix(path, ".json") || strings.HasSuffix(path, ".zip")) {
					files = append(files, path)
				}
				return nil
			})
			if err != nil {
				return nil, err
			}
			sort.Strings(files)
			for _, f := range files {
				if err := d.loadFile(f); err != nil {
					return nil, err
				}
			}
		default:
			if err := d.loadFile(p); err != nil {
				return nil, err
			}
		}
	}
	return d, nil
}

func (d *Data) loadFile(path string) error {
	if strings.HasSuffix(path, ".zip") {
		return d.loadZip(path)
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return &InputError{File: path, Err: err}
	}
	return d.add(path, b)
}

func (d *Data) loadZip(path string) error {
	z, err := zip.OpenReader(path)
	if err != nil {
		return &InputError{File: path, Err: fmt.Errorf("not a zip: %w", err)}
	}
	defer z.Close()
	for _, f := range z.File {
		if f.FileInfo().IsDir() || !strings.HasSuffix(f.Name, ".json") {
			continue
		}
		name := path + "!" + f.Name
		r, err := f.Open()
		if err != nil {
			return &InputError{File: name, Err: err}
		}
		b, err := io.ReadAll(io.LimitReader(r, MaxFileSize+1))
		r.Close()
		if err != nil {
			return &InputError{File: name, Err: err}
		}
		if err := d.add(name, b); err != nil {
			return err
		}
	}
	return nil
}

// add classifies one JSON file: OpenVEX (an @context naming openvex),
// CycloneDX (bomFormat), else an OSV record.
func (d *Data) add(name string, b []byte) error {
	if len(b) > MaxFileSize {
		return &InputError{File: name, Err: fmt.Errorf("larger than %d bytes", MaxFileSize)}
	}
	var probe struct {
		Context   string `json:"@context"`
		BOMFormat string `json:"bomFormat"`
	}
	if err := json.Unmarshal(b, &probe); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return &InputError{File: name, Err: fmt.Errorf("bad JSON at byte %d: %w", se.Offset, err)}
		}
		// A field of another type: let the format's parser say which.
	}
	switch {
	case strings.Contains(probe.Context, "openvex"):
		s, err := ParseOpenVEX(name, b)
		if err != nil {
			return err
		}
		d.Statements = append(d.Statements, s...)
	case probe.BOMFormat == "CycloneDX":
		s, err := ParseCycloneDXVEX(name, b)
		if err != nil {
			return err
		}
		d.Statements = append(d.Statements, s...)
	default:
		r, err := ParseOSV(name, b)
		if err != nil {
			return err
		}
		d.Records = append(d.Records, r)
	}
	return nil
}
