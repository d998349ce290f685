package attest

import (
	"strings"
	"time"
)

// ProvenanceFromEnv fills what a CI run tells about itself: GitHub Actions
// (GITHUB_ACTIONS=true) or GitLab CI (GITLAB_CI=true). Outside CI it returns
// an empty Provenance; flags fill it then (their values win over the
// environment's, see Merge).
func ProvenanceFromEnv(getenv func(string) string) Provenance {
	var p Provenance
	switch {
	case getenv("GITHUB_ACTIONS") == "true":
		server := strings.TrimSuffix(getenv("GITHUB_SERVER_URL"), "/")
		repo := server + "/" + getenv("GITHUB_REPOSITORY")
		p.SourceRepo = "git+" + repo
		p.SourceRevision = getenv("GITHUB_SHA")
		if ref := getenv("GITHUB_WORKFLOW_REF"); ref != "" {
			p.BuilderID = server + "/" + ref
		} else {
			p.BuilderID = repo + "/.github/workflows/" + getenv("GITHUB_WORKFLOW")
		}
		if id := getenv("GITHUB_RUN_ID"); id != "" {
			p.InvocationID = repo + "/actions/runs/" + id + "/attempts/" + getenv("GITHUB_RUN_ATTEMPT")
		}
	case getenv("GITLAB_CI") == "true":
		p.SourceRepo = "git+" + getenv("CI_PROJECT_URL")
		p.SourceRevision = getenv("CI_COMMIT_SHA")
		p.BuilderID = strings.TrimSuffix(getenv("CI_SERVER_URL"), "/") + "/" + getenv("CI_PROJECT_PATH") + "/-/runners/" + getenv("CI_RUNNER_ID")
		p.InvocationID = getenv("CI_JOB_URL")
		if t, err := time.Parse(time.RFC3339, getenv("CI_JOB_STARTED_AT")); err == nil {
			p.StartedOn = t
		}
	}
	return p
}

// Merge returns p with every field that o sets taken from o.
func (p Provenance) Merge(o Provenance) Provenance {
	if o.BuilderID != "" {
		p.BuilderID = o.BuilderID
	}
	if o.SourceRepo != "" {
		p.SourceRepo = o.SourceRepo
	}
	if o.SourceRevision != "" {
		p.SourceRevision = o.SourceRevision
	}
	if o.InvocationID != "" {
		p.InvocationID = o.InvocationID
	}
	if !o.StartedOn.IsZero() {
		p.StartedOn = o.StartedOn
	}
	p.Inputs = append(p.Inputs, o.Inputs...)
	return p
}
