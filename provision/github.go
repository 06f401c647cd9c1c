package provision

import (
	"errors"
	"fmt"
	"net/http"
	"path"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/net/publicsuffix"

	"github.com/cork-sh/cork/policy"
	"github.com/cork-sh/cork/resolve"
)

// GitHub profile constants.
const (
	// GitHubSlot is the slot of the GitHub token.
	GitHubSlot = "github"
	// GHTokenEnv and GitHubTokenEnv hold the github.com token: on the host
	// the real one (GH_TOKEN first, as gh reads them), in the sandbox both
	// hold the placeholder.
	GHTokenEnv     = "GH_TOKEN"
	GitHubTokenEnv = "GITHUB_TOKEN"
	// GHEnterpriseTokenEnv and GitHubEnterpriseTokenEnv are their
	// counterparts for a GitHub Enterprise Server host (GitHub.Host).
	GHEnterpriseTokenEnv     = "GH_ENTERPRISE_TOKEN"
	GitHubEnterpriseTokenEnv = "GITHUB_ENTERPRISE_TOKEN"
	// GHHostEnv tells gh in the sandbox which host to use by default.
	GHHostEnv = "GH_HOST"
	// GitHubBasicUser is the user name git sends with a token as password.
	GitHubBasicUser = "x-access-token"
)

// gitHubDotCom is the default GitHub.Host.
const gitHubDotCom = "github.com"

// gitHubTokenLen is the length of a classic token (ghp_ and 36 more), used
// when there is no real token to imitate.
const gitHubTokenLen = 40

var gitHubTokenPrefixes = []string{"ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"}

// gitHubRefreshReason answers the sandbox's attempts at an OAuth exchange.
const gitHubRefreshReason = "GitHub OAuth token exchange happens on the host, not in the sandbox"

// GitHub provisions gh and git over HTTPS for github.com, or for a GitHub
// Enterprise Server host (see docs/AGENTS.md). Its zero value is ready to
// use: github.com, no restriction beyond the hosts. It is a value; Provision
// does not modify it.
//
// The real token: on github.com GH_TOKEN from the host env, else
// GITHUB_TOKEN; on an Enterprise host GH_ENTERPRISE_TOKEN, else
// GITHUB_ENTERPRISE_TOKEN; else, only with Options.ForwardHostCredentials,
// gh's stored login for the host (ghLogin: hosts.yml, or the keyring
// through `gh auth token`), which goes into the provisioned env as
// CORK_GITHUB_TOKEN (CORK_GITHUB_ENTERPRISE_TOKEN for an Enterprise host),
// with hosts.yml as a Source so that a refresh on the host reaches the
// proxy. With forwarding and no token anywhere, Provision fails with one
// line naming what it tried. Without forwarding, slot "github" names the
// first variable of the pair, so that resolution reports it missing.
//
// The sandbox gets the placeholder (the real token's prefix — ghp_, gho_,
// github_pat_, ... — and length; ghp_ and 36 characters without one) in
// GH_TOKEN and GITHUB_TOKEN (an Enterprise host: GH_ENTERPRISE_TOKEN,
// GITHUB_ENTERPRISE_TOKEN and GH_HOST), and a git credential helper for
// https://HOST, set through GIT_CONFIG_COUNT / GIT_CONFIG_KEY_n /
// GIT_CONFIG_VALUE_n, that first clears any inherited helper for that URL
// and then answers user x-access-token with the placeholder as password.
// The profile owns the GIT_CONFIG_* variables: another profile setting them
// differently conflicts in Build, and a later --env GIT_CONFIG_COUNT
// replaces these entries.
//
// Routes on github.com: api.github.com and uploads.github.com, scheme token
// on Authorization (gh sends "token <T>"; since the proxy swaps the
// placeholder in place, a client sending "Bearer <T>" works the same), and
// github.com, scheme basic with user x-access-token (git). Allowed without
// credentials: codeload.github.com and *.githubusercontent.com (which
// covers objects.githubusercontent.com). On an Enterprise host, the API
// (HOST/api/v3, HOST/api/graphql), uploads (HOST/api/uploads) and git are
// all on HOST: one route, scheme basic, which also swaps the placeholder
// in place in a value that is not Basic (gh's "token <T>"); *.HOST (the
// subdomains of subdomain isolation: raw, codeload, media, ...) is allowed
// without credentials. Blocked: HOST/login/oauth/access_token.
//
// ReadOnly and PushBranches narrow the routes: methods on the API hosts,
// and Route.Push on the git route, which the proxy enforces by reading the
// ref updates of each git-receive-pack request (docs/POLICY.md).
type GitHub struct {
	// Host is the GitHub host: "" or "github.com" for github.com, else a
	// GitHub Enterprise Server host name such as "ghe.example.com" (no
	// scheme, port or path; not a public suffix such as "com" or
	// "github.io", since *.Host is allowed).
	Host string
	// ReadOnly limits the API hosts (api.github.com, uploads.github.com)
	// to GET and HEAD, and lets git fetch but push no ref (Route.Push
	// with nothing allowed). GraphQL is POST: gh commands that use it are
	// refused. Not with an Enterprise Host, whose API and git share one
	// host: fetching is a POST too, so methods cannot tell reads from
	// writes there.
	ReadOnly bool
	// PushBranches, when not empty, are the only branches git may push
	// (glob patterns on the name after refs/heads/, see policy.Push);
	// tags and deletions are refused. Not with ReadOnly.
	PushBranches []string
}

var _ Profile = GitHub{}

// Name returns "github".
func (GitHub) Name() string { return "github" }

// host is g.Host in lower case, github.com when empty.
func (g GitHub) host() string {
	if g.Host == "" {
		return gitHubDotCom
	}
	return strings.ToLower(strings.TrimSuffix(g.Host, "."))
}

// Validate checks the profile's options, naming the field.
func (g GitHub) Validate() error {
	var errs []error
	if g.Host != "" {
		h := g.host()
		if p, err := policy.ParseHostPattern(h); err != nil || strings.ContainsAny(h, "*:/") || p.String() != h {
			errs = append(errs, fmt.Errorf("host: %q is not a host name (want e.g. ghe.example.com, without scheme, port or path)", g.Host))
		} else if strings.HasSuffix(h, "."+gitHubDotCom) {
			errs = append(errs, fmt.Errorf("host: %q is part of github.com, not an Enterprise host (leave the host out for github.com)", g.Host))
		} else if suffix, icann := publicsuffix.PublicSuffix(h); suffix == h && (icann || strings.Contains(h, ".")) {
			// *.HOST is allowed whole: under a public suffix, that is
			// anyone's hosts.
			errs = append(errs, fmt.Errorf("host: %q is a public suffix, not a GitHub Enterprise Server host name (want e.g. ghe.example.com)", g.Host))
		}
	}
	if g.ReadOnly && len(g.PushBranches) > 0 {
		errs = append(errs, errors.New("read_only: not with push_branches (read-only pushes nothing)"))
	}
	if g.ReadOnly && g.host() != gitHubDotCom {
		errs = append(errs, fmt.Errorf("read_only: not with an Enterprise host (%s): its API and git share the host, and a fetch is a POST like an API write; restrict pushes with push_branches", g.host()))
	}
	for i, b := range g.PushBranches {
		if _, err := path.Match(b, ""); err != nil || b == "" || strings.HasPrefix(b, "refs/") {
			errs = append(errs, fmt.Errorf("push_branches[%d]: %q is not a branch pattern (want e.g. agent/*, without refs/heads/)", i, b))
		}
	}
	return errors.Join(errs...)
}

// Provision adds the GitHub env and egress rules to plan.
func (g GitHub) Provision(opts Options, plan *Plan) error {
	if err := g.Validate(); err != nil {
		return err
	}
	host := g.host()
	enterprise := host != gitHubDotCom
	envPair := [2]string{GHTokenEnv, GitHubTokenEnv}
	if enterprise {
		envPair = [2]string{GHEnterpriseTokenEnv, GitHubEnterpriseTokenEnv}
	}

	tokenEnv, real := envPair[0], opts.HostEnv[envPair[0]]
	if real == "" && opts.HostEnv[envPair[1]] != "" {
		tokenEnv, real = envPair[1], opts.HostEnv[envPair[1]]
	}
	if real == "" && opts.ForwardHostCredentials {
		tok, src, err := ghLogin(opts, host)
		if errors.Is(err, errNoGHLogin) {
			return fmt.Errorf("no token for %s: %s and %s are unset and %v (run `gh auth login --hostname %s` on the host, or set %s)",
				host, envPair[0], envPair[1], err, host, envPair[0])
		}
		if err != nil {
			return fmt.Errorf("no token for %s: %s and %s are unset, and gh's login: %w", host, envPair[0], envPair[1], err)
		}
		tokenEnv, real = ghLoginEnv(host), tok
		plan.ProvisionedEnv[tokenEnv] = resolve.NewSecret(tok)
		plan.Sources = append(plan.Sources, *src)
	}
	ph, err := placeholderOr(opts.Rand, real, gitHubTokenPrefixes, "ghp_", gitHubTokenLen-len("ghp_"))
	if err != nil {
		return err
	}

	plan.Env[envPair[0]] = ph
	plan.Env[envPair[1]] = ph
	if enterprise {
		plan.Env[GHHostEnv] = host
	}
	helperKey := "credential.https://" + host + ".helper"
	gitConfig(plan.Env, [][2]string{
		// An empty helper clears the helpers configured before it (a
		// system keychain, say) for this URL.
		{helperKey, ""},
		{helperKey, gitCredentialHelper(GitHubBasicUser, ph)},
	})

	e := &plan.Egress
	e.TokenEnvMap[GitHubSlot] = tokenEnv
	e.Slots[GitHubSlot] = policy.Slot{Placeholder: ph}
	git := policy.Route{Host: host, Slot: GitHubSlot, Header: "Authorization", Scheme: policy.SchemeBasic, BasicUser: GitHubBasicUser}
	var apiMethods []string
	switch {
	case g.ReadOnly:
		git.Push = &policy.Push{}
		apiMethods = []string{http.MethodGet, http.MethodHead}
	case len(g.PushBranches) > 0:
		git.Push = &policy.Push{Branches: slices.Clone(g.PushBranches)}
	}
	if enterprise {
		e.Routes = append(e.Routes, git)
		e.Allow = append(e.Allow, policy.Allow{Host: "*." + host})
	} else {
		e.Routes = append(e.Routes,
			policy.Route{Host: "api.github.com", Slot: GitHubSlot, Header: "Authorization", Scheme: policy.SchemeToken, Methods: apiMethods},
			policy.Route{Host: "uploads.github.com", Slot: GitHubSlot, Header: "Authorization", Scheme: policy.SchemeToken, Methods: slices.Clone(apiMethods)},
			git,
		)
		e.Allow = append(e.Allow, policy.AllowHosts("codeload.github.com", "*.githubusercontent.com")...)
	}
	e.Block = append(e.Block, policy.Block{Host: host, Path: "/login/oauth/access_token", Reason: gitHubRefreshReason})
	// The exchange of the GitHub token for a Copilot session token would
	// hand the sandbox a real credential that scrubbing (the slot's own
	// value only) lets through; the same block as the copilot profile's,
	// so that the two merge.
	if enterprise {
		e.Block = append(e.Block, policy.Block{Host: host, Path: "/api/v3/copilot_internal/v2/token", Reason: copilotTokenReason})
	} else {
		e.Block = append(e.Block, policy.Block{Host: "api.github.com", Path: "/copilot_internal/v2/token", Reason: copilotTokenReason})
	}
	return nil
}

// gitConfig sets git configuration entries through the environment
// (GIT_CONFIG_COUNT, GIT_CONFIG_KEY_n, GIT_CONFIG_VALUE_n), which git reads
// after every config file.
func gitConfig(env map[string]string, entries [][2]string) {
	env["GIT_CONFIG_COUNT"] = strconv.Itoa(len(entries))
	for i, kv := range entries {
		env["GIT_CONFIG_KEY_"+strconv.Itoa(i)] = kv[0]
		env["GIT_CONFIG_VALUE_"+strconv.Itoa(i)] = kv[1]
	}
}

// gitCredentialHelper is a shell helper that answers git's "get" with user
// and password and ignores "store" and "erase". Both must be free of shell
// and git-credential metacharacters: they are a fixed user name and a
// placeholder of alphanumerics, '_' and '-'.
func gitCredentialHelper(user, password string) string {
	return fmt.Sprintf(`!f() { test "$1" = get || return 0; echo username=%s; echo password=%s; }; f`, user, password)
}
