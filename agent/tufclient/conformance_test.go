package tufclient

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// Behaviour the tuf-conformance suite observes from outside: which
// delegated metadata a lookup requests, in which order, under which
// (quoted) names, and which files the metadata directory ends up with.

type edge struct {
	from, to    string
	terminating bool
	paths       []string
}

func TestDelegationRequestOrder(t *testing.T) {
	e := func(from, to string) edge { return edge{from: from, to: to, paths: []string{"*"}} }
	tests := []struct {
		name  string
		graph []edge
		want  []string
	}{
		{"single level", []edge{e("targets", "A"), e("targets", "B")}, []string{"A", "B"}},
		{"preorder", []edge{e("targets", "A"), e("targets", "B"), e("A", "C"), e("A", "D")}, []string{"A", "C", "D", "B"}},
		{"three levels", []edge{e("targets", "A"), e("targets", "B"), e("A", "C"), e("C", "D")}, []string{"A", "C", "D", "B"}},
		{"terminating", []edge{e("targets", "A"), e("targets", "B"), {from: "A", to: "C", terminating: true, paths: []string{"*"}}, e("A", "D")}, []string{"A", "C"}},
		{"terminating keeps descendants", []edge{e("targets", "A"), e("targets", "B"), {from: "A", to: "C", terminating: true, paths: []string{"*"}}, e("C", "D")}, []string{"A", "C", "D"}},
		{"unmatched paths skip a branch", []edge{{from: "targets", to: "A", paths: []string{"*.py"}}, e("targets", "B"), e("A", "C")}, []string{"B"}},
		{"cycle", []edge{e("targets", "A"), e("targets", "B"), e("B", "C"), e("C", "D"), e("D", "B")}, []string{"A", "B", "C", "D"}},
		{"diamond", []edge{e("targets", "A"), e("targets", "B"), e("B", "C"), e("A", "C")}, []string{"A", "C", "B"}},
		{"diamond, one path restricted", []edge{e("targets", "A"), e("targets", "B"), e("B", "C"), {from: "A", to: "C", paths: []string{"*.py"}}}, []string{"A", "B", "C"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSim(t)
			for _, d := range tt.graph {
				sg := s.delegate(d.from, metadata.DelegatedRole{Name: d.to, Terminating: d.terminating, Paths: d.paths})
				if !slices.Contains(s.signers[d.to], sg) {
					s.signers[d.to] = append(s.signers[d.to], sg) // signed for every delegation
				}
			}
			s.bump(true)
			s.publish()
			dir := t.TempDir()
			os.WriteFile(filepath.Join(dir, "root.json"), s.rootBytes(1), 0o644)
			c := s.client(dir)
			tr, err := c.Update(context.Background(), s.rootBytes(1))
			if err != nil {
				t.Fatal(err)
			}
			s.requests = nil
			if _, err := tr.GetTargetInfo("missingpath"); err == nil {
				t.Fatal("found a missing target")
			}
			var got []string
			for _, r := range s.requests {
				got = append(got, strings.TrimSuffix(strings.TrimPrefix(r, "/metadata/1."), ".json"))
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("requested %v, want %v", got, tt.want)
			}
		})
	}
}

func TestUnusualRoleNames(t *testing.T) {
	for name, quoted := range map[string]string{"?": "%3F", "#": "%23", "/delegatedrole": "%2Fdelegatedrole", "../delegatedrole": "..%2Fdelegatedrole"} {
		t.Run(name, func(t *testing.T) {
			s := newSim(t)
			s.delegate(metadata.TARGETS, metadata.DelegatedRole{Name: name, Paths: []string{"*"}})
			// the simulator stores files under the role name; serve
			// them under the quoted one as a repository would
			s.bump(true)
			s.publish()
			s.put("metadata/1."+quoted+".json", s.served["metadata/1."+name+".json"])
			dir := t.TempDir()
			os.WriteFile(filepath.Join(dir, "root.json"), s.rootBytes(1), 0o644)
			c := s.client(dir)
			tr, err := c.Update(context.Background(), s.rootBytes(1))
			if err != nil {
				t.Fatal(err)
			}
			s.requests = nil
			if _, err := tr.GetTargetInfo("nonexistent target"); err == nil {
				t.Fatal("found a missing target")
			}
			if want := "/metadata/1." + quoted + ".json"; !slices.Contains(s.requests, want) {
				t.Fatalf("requests %v, want %s", s.requests, want)
			}
			files, _ := filepath.Glob(filepath.Join(dir, "*"))
			if len(files) != 5 {
				t.Fatalf("metadata directory holds %v, want the 4 top-level roles and the delegated one", files)
			}
			for _, f := range files {
				if filepath.Dir(f) != dir {
					t.Fatalf("%s outside the metadata directory", f)
				}
			}
		})
	}
}
