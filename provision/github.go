package provision

import (
	"fmt"
	"strconv"

	"github.com/cork-sh/cork/policy"
)

// GitHub profile constants.
const (
	// GitHubSlot is the slot of the GitHub token.
	GitHubSlot = "github"
	// GHTokenEnv and GitHubTokenEnv hold the token: on the host the real
	// one (GH_TOKEN first, as gh reads them), in the sandbox both hold the
	// placeholder.
	GHTokenEnv     = "GH_TOKEN"
	GitHubTokenEnv = "GITHUB_TOKEN"
	// GitHubBasicUser is the user name git sends with a token as password.
	GitHubBasicUser = "x-access-token"
)

// gitHubTokenLen is the length of a classic token (ghp_ and 36 more), used
// when there is no real token to imitate.
const gitHubTokenLen = 40

var gitHubTokenPrefixes = []string{"ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"}

// gitHubRefreshReason answers the sandbox's attempts at an OAuth exchange.
const gitHubRefreshReason = "GitHub OAuth token exchange happens on the host, not in the sandbox"

// GitHub provisions gh and git over HTTPS for github.com (see
// docs/AGENTS.md). Its zero value is ready to use. It reads no file: the real
// token is GH_TOKEN from the host env, else GITHUB_TOKEN; slot "github" names
// whichever is set, or GH_TOKEN when neither is, so that resolution reports
// it missing. Options.ForwardHostCredentials makes no difference.
//
// The sandbox gets the placeholder (the real token's prefix — ghp_, gho_,
// github_pat_, ... — and length; ghp_ and 36 characters without one) in
// GH_TOKEN and GITHUB_TOKEN, and a git credential helper for
// https://github.com, set through GIT_CONFIG_COUNT / GIT_CONFIG_KEY_n /
// GIT_CONFIG_VALUE_n, that first clears any inherited helper for that URL
// and then answers user x-access-token with the placeholder as password.
// The profile owns the GIT_CONFIG_* variables: another profile setting them
// differently conflicts in Build, and a later --env GIT_CONFIG_COUNT
// replaces these entries.
//
// Routes: api.github.com and uploads.github.com, scheme token on
// Authorization (gh sends "token <T>"; since the proxy swaps the
// placeholder in place, a client sending "Bearer <T>" works the same), and
// github.com, scheme basic with user x-access-token (git). Allowed without
// credentials: codeload.github.com and *.githubusercontent.com (which
// covers objects.githubusercontent.com). Blocked: github.com
// /login/oauth/access_token. GitHub Enterprise hosts are not covered: bind
// them with the generic profile.
type GitHub struct{}

var _ Profile = GitHub{}

// Name returns "github".
func (GitHub) Name() string { return "github" }

// Provision adds the GitHub env and egress rules to plan.
func (GitHub) Provision(opts Options, plan *Plan) error {
	tokenEnv, real := GHTokenEnv, opts.HostEnv[GHTokenEnv]
	if real == "" && opts.HostEnv[GitHubTokenEnv] != "" {
		tokenEnv, real = GitHubTokenEnv, opts.HostEnv[GitHubTokenEnv]
	}
	ph, err := placeholderOr(opts.Rand, real, gitHubTokenPrefixes, "ghp_", gitHubTokenLen-len("ghp_"))
	if err != nil {
		return err
	}

	plan.Env[GHTokenEnv] = ph
	plan.Env[GitHubTokenEnv] = ph
	gitConfig(plan.Env, [][2]string{
		// An empty helper clears the helpers configured before it (a
		// system keychain, say) for this URL.
		{"credential.https://github.com.helper", ""},
		{"credential.https://github.com.helper", gitCredentialHelper(GitHubBasicUser, ph)},
	})

	e := &plan.Egress
	e.TokenEnvMap[GitHubSlot] = tokenEnv
	e.Slots[GitHubSlot] = policy.Slot{Placeholder: ph}
	e.Routes = append(e.Routes,
		policy.Route{Host: "api.github.com", Slot: GitHubSlot, Header: "Authorization", Scheme: policy.SchemeToken},
		policy.Route{Host: "uploads.github.com", Slot: GitHubSlot, Header: "Authorization", Scheme: policy.SchemeToken},
		policy.Route{Host: "github.com", Slot: GitHubSlot, Header: "Authorization", Scheme: policy.SchemeBasic, BasicUser: GitHubBasicUser},
	)
	e.Allow = append(e.Allow, policy.AllowHosts("codeload.github.com", "*.githubusercontent.com")...)
	e.Block = append(e.Block, policy.Block{Host: "github.com", Path: "/login/oauth/access_token", Reason: gitHubRefreshReason})
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
