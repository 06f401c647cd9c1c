package provision

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/cork-sh/cork/policy"
	"github.com/cork-sh/cork/resolve"
)

// Claude profile constants.
const (
	// ClaudeAccessTokenEnv holds the real OAuth access token read from the
	// host .credentials.json (Plan.ProvisionedEnv), for slot ClaudeSlot.
	ClaudeAccessTokenEnv = "CORK_CLAUDE_ACCESS_TOKEN"
	// ClaudeOAuthTokenEnv is Claude Code's static OAuth token variable
	// (`claude setup-token`). On the host it is a source of the real token;
	// in the sandbox it holds the placeholder whenever cork provisions a
	// subscription token.
	ClaudeOAuthTokenEnv = "CLAUDE_CODE_OAUTH_TOKEN"
	// AnthropicAPIKeyEnv holds an API key (sent as x-api-key), on the host
	// the real one for slot AnthropicSlot, in the sandbox its placeholder.
	AnthropicAPIKeyEnv = "ANTHROPIC_API_KEY"
	// AnthropicAuthTokenEnv holds a bearer token that is not a
	// subscription token (a gateway key, say), on the host the real one for
	// slot ClaudeSlot, in the sandbox its placeholder.
	AnthropicAuthTokenEnv = "ANTHROPIC_AUTH_TOKEN"
	// ClaudeSlot is the slot of a bearer token (OAuth or auth token).
	ClaudeSlot = "claude"
	// AnthropicSlot is the slot of an API key.
	AnthropicSlot = "anthropic"
	// ClaudeStateFile is the dummy global state file, relative to the
	// sandbox HOME: it only marks onboarding as done.
	ClaudeStateFile = ".claude.json"
)

// claudeAPIHost is where Claude Code sends its credential.
const claudeAPIHost = "api.anthropic.com"

// claudeRefreshReason answers the sandbox's attempts to refresh.
const claudeRefreshReason = "OAuth token refresh happens on the host; cork keeps the sandbox's token fresh"

// claudeTokenLen is the length of Anthropic keys and OAuth tokens
// (13-character prefix, 95 more), used when there is no real one to imitate.
const claudeTokenLen = 108

var claudeTokenPrefixes = []string{"sk-ant-oat01-", "sk-ant-api03-", "sk-ant-admin01-", "sk-ant-"}

// claudeRefreshBlocks are the OAuth token endpoints, current and older.
var claudeRefreshBlocks = []policy.Block{
	{Host: "platform.claude.com", Path: "/v1/oauth/token", Reason: claudeRefreshReason},
	{Host: "console.anthropic.com", Path: "/v1/oauth/token", Reason: claudeRefreshReason},
}

// Claude provisions Claude Code (see docs/AGENTS.md). Its zero value is ready
// to use.
//
// The real credential is the first of:
//  1. CLAUDE_CODE_OAUTH_TOKEN in the host env (slot "claude", bearer);
//  2. with Options.ForwardHostCredentials, claudeAiOauth.accessToken of
//     $CLAUDE_CONFIG_DIR/.credentials.json (default
//     <HostHome>/.claude/.credentials.json), put into Plan.ProvisionedEnv as
//     ClaudeAccessTokenEnv (slot "claude", bearer) and listed as a Source;
//     a token that has already expired is an error;
//  3. ANTHROPIC_API_KEY in the host env (slot "anthropic", x-api-key);
//  4. ANTHROPIC_AUTH_TOKEN in the host env (slot "claude", bearer).
//
// This order prefers a subscription to a key, unlike Claude Code itself,
// which prefers ANTHROPIC_AUTH_TOKEN and ANTHROPIC_API_KEY. With forwarding
// on and none of them, Provision fails with a hint; with forwarding off it
// maps slot "claude" to CLAUDE_CODE_OAUTH_TOKEN, so that resolution reports
// that variable missing.
//
// The sandbox gets the placeholder in the variable Claude Code reads for
// that mode (CLAUDE_CODE_OAUTH_TOKEN for a subscription token from either
// source, else the host's variable name): a static token, with no refresh
// path. The placeholder has the real token's prefix (sk-ant-oat01-, ...)
// and length and is random per Build. Also in the sandbox:
// CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1 and ~/.claude.json marking
// onboarding done (never a copy of the host's). CLAUDE_CONFIG_DIR is not
// set: Claude Code's defaults (~/.claude, ~/.claude.json) are where the
// dummies are. The token is injected on api.anthropic.com; the token
// endpoints of platform.claude.com and console.anthropic.com are blocked,
// which makes the proxy intercept those two hosts.
type Claude struct{}

var _ Profile = Claude{}

// Name returns "claude".
func (Claude) Name() string { return "claude" }

// Provision adds Claude Code's dummy file, env and egress rules to plan.
func (Claude) Provision(opts Options, plan *Plan) error {
	env := opts.HostEnv
	if tok := env[ClaudeOAuthTokenEnv]; tok != "" {
		return claudeBearerPlan(opts, ClaudeOAuthTokenEnv, ClaudeOAuthTokenEnv, tok, plan)
	}
	path, data, notFound, err := readForwarded(opts, claudeCredentialsPath)
	if err != nil {
		return err
	}
	if data != nil {
		return claudeFilePlan(opts, path, data, plan)
	}
	if key := env[AnthropicAPIKeyEnv]; key != "" {
		return claudeAPIKeyPlan(opts, key, plan)
	}
	if tok := env[AnthropicAuthTokenEnv]; tok != "" {
		return claudeBearerPlan(opts, AnthropicAuthTokenEnv, AnthropicAuthTokenEnv, tok, plan)
	}
	if notFound != nil {
		return fmt.Errorf("%w (sign in on the host with `claude`, set %s (`claude setup-token`) or %s, or don't forward host credentials)",
			notFound, ClaudeOAuthTokenEnv, AnthropicAPIKeyEnv)
	}
	return claudeBearerPlan(opts, ClaudeOAuthTokenEnv, ClaudeOAuthTokenEnv, "", plan)
}

// claudeCredentialsPath is $CLAUDE_CONFIG_DIR/.credentials.json, the
// directory defaulting to ~/.claude.
func claudeCredentialsPath(opts Options) (string, error) {
	return hostConfigFile(opts, "CLAUDE_CONFIG_DIR", ".claude", ".credentials.json")
}

// claudeFilePlan provisions the subscription token of the host's
// .credentials.json (data, read from path).
func claudeFilePlan(opts Options, path string, data []byte, plan *Plan) error {
	c, err := parseClaudeCredentials(data)
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	if !c.expiresAt.IsZero() && !c.expiresAt.After(opts.Now()) {
		return fmt.Errorf("read %s: claudeAiOauth.expiresAt: the access token expired at %s; run `claude` on the host once to refresh it",
			path, c.expiresAt.UTC().Format(time.RFC3339))
	}
	plan.ProvisionedEnv[ClaudeAccessTokenEnv] = resolve.NewSecret(c.accessToken)
	plan.Sources = append(plan.Sources, claudeSource(opts, path))
	return claudeBearerPlan(opts, ClaudeOAuthTokenEnv, ClaudeAccessTokenEnv, c.accessToken, plan)
}

// claudeSource lets the launcher pick up the host's refreshed token. An
// expired token is passed on as it is: the host's Claude Code refreshes it
// when next used, and the launcher reads the file again then.
func claudeSource(opts Options, path string) Source {
	return Source{Path: path, Read: func() (resolve.Env, error) {
		data, err := opts.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", path, unwrapPath(err))
		}
		c, err := parseClaudeCredentials(data)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", path, err)
		}
		return resolve.Env{ClaudeAccessTokenEnv: resolve.NewSecret(c.accessToken)}, nil
	}}
}

// claudeBearerPlan provisions a bearer token: the sandbox gets the
// placeholder in sandboxEnv, the proxy finds the real token in tokenEnv.
// real, if known, shapes the placeholder.
func claudeBearerPlan(opts Options, sandboxEnv, tokenEnv, real string, plan *Plan) error {
	ph, err := claudePlaceholder(opts, real, "sk-ant-oat01-")
	if err != nil {
		return err
	}
	plan.Env[sandboxEnv] = ph
	e := &plan.Egress
	e.TokenEnvMap[ClaudeSlot] = tokenEnv
	e.Slots[ClaudeSlot] = policy.Slot{Placeholder: ph}
	e.Routes = append(e.Routes, policy.Route{Host: claudeAPIHost, Slot: ClaudeSlot, Header: "Authorization", Scheme: policy.SchemeBearer})
	return claudeCommon(plan, claudeStateJSON{HasCompletedOnboarding: true})
}

// claudeAPIKeyPlan provisions an API key found in the host env, where
// resolution finds it too.
func claudeAPIKeyPlan(opts Options, key string, plan *Plan) error {
	ph, err := claudePlaceholder(opts, key, "sk-ant-api03-")
	if err != nil {
		return err
	}
	plan.Env[AnthropicAPIKeyEnv] = ph
	e := &plan.Egress
	e.TokenEnvMap[AnthropicSlot] = AnthropicAPIKeyEnv
	e.Slots[AnthropicSlot] = policy.Slot{Placeholder: ph}
	e.Routes = append(e.Routes, policy.Route{Host: claudeAPIHost, Slot: AnthropicSlot, Header: "X-Api-Key", Scheme: policy.SchemeRaw})
	// Interactive Claude Code asks before using a key from the environment
	// and remembers the answer by the key's last 20 characters: pre-approve
	// the placeholder, which is all the sandbox knows.
	return claudeCommon(plan, claudeStateJSON{
		HasCompletedOnboarding: true,
		CustomAPIKeyResponses:  &claudeKeyResponses{Approved: []string{ph[len(ph)-20:]}, Rejected: []string{}},
	})
}

// claudePlaceholder is shaped like real, or is defaultPrefix and random
// characters up to claudeTokenLen when there is no real token.
func claudePlaceholder(opts Options, real, defaultPrefix string) (string, error) {
	return placeholderOr(opts.Rand, real, claudeTokenPrefixes, defaultPrefix, claudeTokenLen-len(defaultPrefix))
}

// claudeStateJSON is the dummy ~/.claude.json.
type claudeStateJSON struct {
	HasCompletedOnboarding bool                `json:"hasCompletedOnboarding"`
	CustomAPIKeyResponses  *claudeKeyResponses `json:"customApiKeyResponses,omitempty"`
}

type claudeKeyResponses struct {
	Approved []string `json:"approved"`
	Rejected []string `json:"rejected"`
}

// claudeCommon adds what every mode shares: the state file, the quiet
// setting and the refresh blocks.
func claudeCommon(plan *Plan, state claudeStateJSON) error {
	data, err := json.MarshalIndent(state, "", "  ")
	if err != nil {
		return fmt.Errorf("encode dummy .claude.json: %w", err)
	}
	plan.Files = append(plan.Files, File{Path: ClaudeStateFile, Mode: 0o600, Data: append(data, '\n')})
	plan.Env["CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"] = "1"
	plan.Egress.Block = append(plan.Egress.Block, claudeRefreshBlocks...)
	return nil
}
