package main

import (
	"flag"
	"slices"

	"github.com/cork-sh/cork/provision"
)

// gitHubFlags are `cork run`'s options of the github profile.
type gitHubFlags struct {
	host         *string
	readOnly     *bool
	pushBranches listFlag
}

func newGitHubFlags(fs *flag.FlagSet) *gitHubFlags {
	g := &gitHubFlags{}
	g.host = fs.String("github-host", "", "--agent github: a GitHub Enterprise Server `HOST` instead of github.com\n"+
		"(API at https://HOST/api/v3, git at https://HOST; token from GH_ENTERPRISE_TOKEN, GITHUB_ENTERPRISE_TOKEN or gh's login for HOST)")
	g.readOnly = fs.Bool("github-read-only", false, "--agent github: the GitHub API takes only GET and HEAD, and git may fetch but push nothing;\n"+
		"gh commands that use GraphQL (POST /graphql, e.g. gh repo view, gh pr list) are refused too\n"+
		"(not --read-only: that is the local backend's read-only path)")
	fs.Var(&g.pushBranches, "push-branch", "--agent github: git may push only to branches matching `PATTERN` (repeatable; a glob on the\n"+
		"name after refs/heads/, e.g. 'agent/*'); tags and deletions are refused. git pushes only: the API can still change refs")
	return g
}

// set reports whether any github flag was given.
func (g *gitHubFlags) set() bool {
	return *g.host != "" || *g.readOnly || len(g.pushBranches) > 0
}

// profile applies the flags to the github profile, checking that they go
// together; agents are the --agent names.
func (g *gitHubFlags) profile(agents []string) (provision.GitHub, error) {
	if g.set() && !slices.Contains(agents, (provision.GitHub{}).Name()) {
		return provision.GitHub{}, usageErrorf("--github-host, --github-read-only and --push-branch: only with --agent github")
	}
	if *g.readOnly && len(g.pushBranches) > 0 {
		return provision.GitHub{}, usageErrorf("--github-read-only and --push-branch: give one (read-only pushes nothing)")
	}
	if *g.readOnly && *g.host != "" {
		return provision.GitHub{}, usageErrorf("--github-read-only: not with --github-host: on GitHub Enterprise Server the API and git share the host, " +
			"and a fetch is a POST like an API write; use --push-branch to restrict pushes")
	}
	p := provision.GitHub{Host: *g.host, ReadOnly: *g.readOnly, PushBranches: g.pushBranches}
	if err := (provision.GitHub{Host: p.Host}).Validate(); err != nil {
		return provision.GitHub{}, usageErrorf("--github-%v", err)
	}
	for _, b := range p.PushBranches {
		if err := (provision.GitHub{PushBranches: []string{b}}).Validate(); err != nil {
			return provision.GitHub{}, usageErrorf("--push-branch: %q is not a branch pattern (want e.g. 'agent/*', without refs/heads/)", b)
		}
	}
	return p, nil
}
