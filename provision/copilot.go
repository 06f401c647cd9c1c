package provision

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/cork-sh/cork/policy"
	"github.com/cork-sh/cork/resolve"
)

// Copilot profile constants.
const (
	// CopilotSlot is the slot of the GitHub token the Copilot CLI sends.
	CopilotSlot = "copilot"
	// CopilotTokenEnv is the Copilot CLI's own token variable, the first
	// it reads (then GH_TOKEN, GITHUB_TOKEN, gh's login). On the host it is
	// the first source of the real token; in the sandbox it holds the
	// placeholder, so that GH_TOKEN stays free for the github profile.
	CopilotTokenEnv = "COPILOT_GITHUB_TOKEN"
	// CopilotAutoUpdateEnv "false" stops the CLI downloading new versions
	// of itself: cork runs the version it was given.
	CopilotAutoUpdateEnv = "COPILOT_AUTO_UPDATE"
)

// copilotAPIHosts are the Copilot API hosts the CLI sends the GitHub token
// to: the one /copilot_internal/user names in endpoints.api for the
// account's plan, and the default.
var copilotAPIHosts = []string{
	"api.githubcopilot.com",
	"api.individual.githubcopilot.com",
	"api.business.githubcopilot.com",
	"api.enterprise.githubcopilot.com",
}

// copilotReadOnlyPaths are the paths of a Copilot API host that the CLI
// uses (docs/AGENTS.md, "GitHub Copilot CLI"), and its methods there (nil:
// any, as MCP's streamable HTTP uses POST, GET and DELETE): the only ones
// that pass when its GitHub token is read-only elsewhere (narrowCopilot).
var copilotReadOnlyPaths = []policy.Allow{
	{Path: "/models", Methods: []string{http.MethodGet, http.MethodHead}},
	{Path: "/chat/completions", Methods: []string{http.MethodPost}},
	{Path: "/mcp/readonly"},
	{Path: "/agents/swe/internal/memory/v0/enabled", Methods: []string{http.MethodGet, http.MethodHead}},
}

// narrowCopilot limits the Copilot API hosts to copilotReadOnlyPaths when
// the slot they carry has a route limited by methods (the github
// profile's read-only API, the token being shared: share.go). The same
// GitHub token acts on repositories there too: GitHub's MCP server
// (/mcp/, /mcp/x/TOOLSET) has tools that push files, create branches and
// merge pull requests, and /agents/swe starts the Copilot coding agent,
// which pushes. Build calls it once the profiles are merged.
func narrowCopilot(e *EgressPlan) {
	limited := map[string]bool{}
	for _, r := range e.Routes {
		if len(r.Methods) > 0 {
			limited[r.Slot] = true
		}
	}
	for _, r := range e.Routes {
		if !limited[r.Slot] || len(r.Methods) > 0 || !slices.Contains(copilotAPIHosts, hostKey(r.Host)) {
			continue
		}
		for _, a := range copilotReadOnlyPaths {
			a.Host = r.Host
			a.Methods = slices.Clone(a.Methods)
			if !slices.ContainsFunc(e.Allow, func(x policy.Allow) bool { return sameAllow(x, a) }) {
				e.Allow = append(e.Allow, a)
			}
		}
	}
}

// copilotTokenPrefixes are the GitHub token kinds the Copilot CLI accepts
// (OAuth, user-to-server, fine-grained, installation); it refuses classic
// tokens (ghp_) and anything else it does not recognise.
var copilotTokenPrefixes = []string{"gho_", "ghu_", "ghs_", "github_pat_"}

// copilotTokenLen is the length of an OAuth token (gho_ and 36 more), used
// when there is no real token to imitate.
const copilotTokenLen = 40

// Reasons the sandbox's requests to the blocked endpoints are answered
// with.
const (
	copilotLoginReason = "sign in on the host (gh auth login, or set COPILOT_GITHUB_TOKEN); cork keeps the token out of the sandbox"
	copilotTokenReason = "a Copilot session token would be a real credential in the sandbox; the Copilot CLI sends the GitHub token itself"
)

// copilotBlocks are the endpoints that would hand the sandbox a real
// credential: the OAuth device flow and code exchange of `copilot login`
// (the second exactly as the github profile blocks it, so that the two
// merge), and the exchange of a GitHub token for a Copilot session token,
// which the proxy's response scrubbing (the slot's own value only) would
// let through.
var copilotBlocks = []policy.Block{
	{Host: "github.com", Path: "/login/device/code", Reason: copilotLoginReason},
	{Host: "github.com", Path: "/login/oauth/access_token", Reason: gitHubRefreshReason},
	{Host: "api.github.com", Path: "/copilot_internal/v2/token", Reason: copilotTokenReason},
}

// Copilot provisions the GitHub Copilot CLI (`copilot`, npm
// @github/copilot; see docs/AGENTS.md). Its zero value is ready to use.
//
// The real token is the first of COPILOT_GITHUB_TOKEN, GH_TOKEN and
// GITHUB_TOKEN in the host env (the CLI's own order), else, with
// Options.ForwardHostCredentials, gh's stored login for github.com
// (ghLogin: hosts.yml, or the keyring through `gh auth token`), which goes
// into the provisioned env as CORK_GITHUB_TOKEN, as the github profile puts
// it, with hosts.yml as a Source. A classic personal access token (ghp_) is
// an error: the CLI refuses it. With forwarding and no token anywhere,
// Provision fails naming what it tried; without forwarding, slot "copilot"
// names COPILOT_GITHUB_TOKEN, so that resolution reports it missing. The
// CLI's own sign-in (`copilot login`, kept in the system keyring) is not
// read.
//
// The sandbox gets the placeholder (the real token's prefix — gho_, ghu_,
// github_pat_, ... — and length; gho_ and 36 characters without one) in
// COPILOT_GITHUB_TOKEN, and COPILOT_AUTO_UPDATE=false. The CLI sends the
// GitHub token itself, as a bearer, to api.github.com (/copilot_internal/…)
// and to the Copilot API host of the account's plan: those five hosts are
// routed, api.github.com with the github profile's exact route (scheme
// token; the swap is in place, so the CLI's "Bearer" works), so that with
// --agent github and a token from the same variable the two profiles share
// one slot (Build, share.go). The telemetry hosts
// (telemetry.*.githubcopilot.com) are not allowed: the proxy refuses them,
// which the CLI ignores. Blocked: the OAuth device flow and code exchange
// on github.com and api.github.com/copilot_internal/v2/token.
type Copilot struct{}

var _ Profile = Copilot{}

// Name returns "copilot".
func (Copilot) Name() string { return "copilot" }

// Provision adds the Copilot CLI's env and egress rules to plan.
func (Copilot) Provision(opts Options, plan *Plan) error {
	tokenEnv, real := CopilotTokenEnv, ""
	for _, k := range []string{CopilotTokenEnv, GHTokenEnv, GitHubTokenEnv} {
		if v := opts.HostEnv[k]; v != "" {
			tokenEnv, real = k, v
			break
		}
	}
	from := tokenEnv
	if real == "" && opts.ForwardHostCredentials {
		tok, src, err := ghLogin(opts, gitHubDotCom)
		if errors.Is(err, errNoGHLogin) {
			return fmt.Errorf("no GitHub token: %s, %s and %s are unset and %v (run `gh auth login` on the host, or set %s)",
				CopilotTokenEnv, GHTokenEnv, GitHubTokenEnv, err, CopilotTokenEnv)
		}
		if err != nil {
			return fmt.Errorf("no GitHub token: %s, %s and %s are unset, and gh's login: %w", CopilotTokenEnv, GHTokenEnv, GitHubTokenEnv, err)
		}
		// The same variable as the github profile's, so that the two
		// share the credential (share.go).
		tokenEnv, real, from = ghLoginEnv(gitHubDotCom), tok, "gh's login in "+src.Path
		plan.ProvisionedEnv[tokenEnv] = resolve.NewSecret(tok)
		plan.Sources = append(plan.Sources, *src)
	}
	if strings.HasPrefix(real, "ghp_") {
		return fmt.Errorf("%s is a classic personal access token (ghp_), which the Copilot CLI refuses: set %s to a fine-grained token with the Copilot Requests permission, or sign in with `gh auth login`",
			from, CopilotTokenEnv)
	}
	ph, err := placeholderOr(opts.Rand, real, copilotTokenPrefixes, "gho_", copilotTokenLen-len("gho_"))
	if err != nil {
		return err
	}
	plan.Env[CopilotTokenEnv] = ph
	plan.Env[CopilotAutoUpdateEnv] = "false"

	e := &plan.Egress
	e.TokenEnvMap[CopilotSlot] = tokenEnv
	e.Slots[CopilotSlot] = policy.Slot{Placeholder: ph}
	// The same route as the github profile's, so that the two can share it.
	e.Routes = append(e.Routes, policy.Route{Host: "api.github.com", Slot: CopilotSlot, Header: "Authorization", Scheme: policy.SchemeToken})
	for _, h := range copilotAPIHosts {
		e.Routes = append(e.Routes, policy.Route{Host: h, Slot: CopilotSlot, Header: "Authorization", Scheme: policy.SchemeBearer})
	}
	e.Block = append(e.Block, copilotBlocks...)
	return nil
}
