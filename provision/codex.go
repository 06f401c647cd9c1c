package provision

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/cork-sh/cork/internal/dummyjwt"
	"github.com/cork-sh/cork/policy"
	"github.com/cork-sh/cork/resolve"
)

// Codex profile constants.
const (
	// CodexAccessTokenEnv holds the real ChatGPT access token for slot
	// CodexSlot: provisioning puts the token read from the host auth.json
	// there (Plan.ProvisionedEnv); without forwarding, the operator sets it
	// in the host environment.
	CodexAccessTokenEnv = "CORK_CODEX_ACCESS_TOKEN"
	// OpenAIAPIKeyEnv holds the real API key for slot OpenAISlot, and the
	// placeholder in the sandbox.
	OpenAIAPIKeyEnv = "OPENAI_API_KEY"
	// CodexSlot is the slot of the ChatGPT access token.
	CodexSlot = "codex"
	// OpenAISlot is the slot of an OpenAI API key.
	OpenAISlot = "openai"
	// CodexAuthFile and CodexConfigFile are the dummy files, relative to
	// the sandbox HOME. Codex finds them with its default CODEX_HOME
	// (~/.codex); a launcher that moves them must set CODEX_HOME.
	CodexAuthFile   = ".codex/auth.json"
	CodexConfigFile = ".codex/config.toml"
)

// codexSandboxHome is CODEX_HOME in the sandbox, "~/" being the sandbox
// HOME (see Plan.Env): set explicitly so that a CODEX_HOME inherited from
// the host can never point the sandbox's Codex elsewhere.
const codexSandboxHome = "~/.codex"

// codexConfig keeps the sandbox's Codex on the dummy auth.json rather
// than an OS keyring.
const codexConfig = "cli_auth_credentials_store = \"file\"\n"

// dummyLifetime is how far in the future the dummy tokens expire, so that
// the sandbox's Codex never tries to refresh them.
const dummyLifetime = 10 * 365 * 24 * time.Hour

// defaultRefreshLen is the length of the random part of a refresh-token
// placeholder when there is no real token to imitate.
const defaultRefreshLen = 86

var (
	apiKeyPrefixes  = []string{"sk-proj-", "sk-svcacct-", "sk-admin-", "sk-None-", "sk-"}
	refreshPrefixes = []string{"rt_", "v1."}
)

// Codex provisions the Codex CLI, signed in with ChatGPT or an API key
// (see docs/AGENTS.md). Its zero value is ready to use.
//
// With Options.ForwardHostCredentials, it reads $CODEX_HOME/auth.json
// (CODEX_HOME from Options.HostEnv, default <HostHome>/.codex); if there
// is no such file but OPENAI_API_KEY is set in the host env, it uses API-key
// mode with that key. Without forwarding, it reads nothing and provisions
// ChatGPT mode with neutral claims; the operator sets CodexAccessTokenEnv.
//
// ChatGPT mode: slot "codex" (env CodexAccessTokenEnv) is injected as a
// bearer on chatgpt.com, *.chatgpt.com and chat.openai.com; the token
// endpoint auth.openai.com/oauth/token is blocked. API-key mode: slot
// "openai" (env OPENAI_API_KEY, whose placeholder is also set in the
// sandbox env) on api.openai.com. Both set CODEX_HOME=~/.codex in the
// sandbox; the CA variables are the launcher's. When auth.json was read,
// the plan lists it as a Source, so the launcher can follow the host's
// token refreshes.
type Codex struct{}

var _ Profile = Codex{}

// Name returns "codex".
func (Codex) Name() string { return "codex" }

// Provision adds Codex's dummy files, env and egress rules to plan.
func (Codex) Provision(opts Options, plan *Plan) error {
	if !opts.ForwardHostCredentials {
		return codexChatGPTPlan(opts, nil, plan)
	}
	path, err := codexAuthPath(opts)
	if err != nil {
		return err
	}
	data, err := opts.ReadFile(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) && opts.HostEnv[OpenAIAPIKeyEnv] != "" {
			// Not signed in on the host, but a key in the environment:
			// resolution finds the real key in the host env.
			return codexAPIKeyPlan(opts, opts.HostEnv[OpenAIAPIKeyEnv], false, plan)
		}
		err = unwrapPath(err)
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("read %s: %w (sign in on the host with `codex login`, set %s, or don't forward host credentials)", path, err, OpenAIAPIKeyEnv)
		}
		return fmt.Errorf("read %s: %w", path, err)
	}
	auth, err := parseCodexAuth(data)
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	plan.Sources = append(plan.Sources, codexSource(opts, path, auth.mode))
	if auth.mode == codexAPIKey {
		return codexAPIKeyPlan(opts, auth.apiKey, true, plan)
	}
	return codexChatGPTPlan(opts, &auth, plan)
}

// codexSource lets the launcher pick up the host's refreshed tokens: the
// host Codex (or the operator) refreshes auth.json, the sandbox keeps its
// dummy. A change of sign-in mode needs a new sandbox.
func codexSource(opts Options, path string, mode codexMode) Source {
	return Source{Path: path, Read: func() (resolve.Env, error) {
		data, err := opts.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", path, unwrapPath(err))
		}
		auth, err := parseCodexAuth(data)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", path, err)
		}
		if auth.mode != mode {
			return nil, fmt.Errorf("read %s: the sign-in mode changed; restart the sandbox", path)
		}
		if mode == codexAPIKey {
			return resolve.Env{OpenAIAPIKeyEnv: resolve.NewSecret(auth.apiKey)}, nil
		}
		return resolve.Env{CodexAccessTokenEnv: resolve.NewSecret(auth.accessToken)}, nil
	}}
}

// codexAuthPath is $CODEX_HOME/auth.json, CODEX_HOME defaulting to
// ~/.codex.
func codexAuthPath(opts Options) (string, error) {
	return hostConfigFile(opts, "CODEX_HOME", ".codex", "auth.json")
}

// codexAuthJSON is the dummy auth.json, fields in Codex's order.
type codexAuthJSON struct {
	AuthMode     string           `json:"auth_mode"`
	OpenAIAPIKey *string          `json:"OPENAI_API_KEY"`
	Tokens       *codexTokensJSON `json:"tokens"`
	LastRefresh  *string          `json:"last_refresh"`
}

type codexTokensJSON struct {
	IDToken      string  `json:"id_token"`
	AccessToken  string  `json:"access_token"`
	RefreshToken string  `json:"refresh_token"`
	AccountID    *string `json:"account_id"`
}

// codexChatGPTPlan provisions ChatGPT mode. host is the parsed host
// auth.json, or nil when not forwarding: then the dummy carries neutral
// claims and the token comes from the operator's env.
func codexChatGPTPlan(opts Options, host *codexAuth, plan *Plan) error {
	now := opts.Now()
	exp := now.Add(dummyLifetime).Unix()
	var id codexIdentity
	var accountID *string
	realRefresh := ""
	if host != nil {
		id = host.identity
		accountID = host.accountID
		realRefresh = host.refreshToken
		plan.ProvisionedEnv[CodexAccessTokenEnv] = resolve.NewSecret(host.accessToken)
	}

	idToken, accessToken, err := codexDummyJWTs(opts, id, now, exp)
	if err != nil {
		return err
	}
	refresh, err := placeholderOr(opts.Rand, realRefresh, refreshPrefixes, "rt_", defaultRefreshLen)
	if err != nil {
		return err
	}

	last := now.UTC().Format(time.RFC3339)
	data, err := json.MarshalIndent(codexAuthJSON{
		AuthMode: "chatgpt",
		Tokens: &codexTokensJSON{
			IDToken:      idToken,
			AccessToken:  accessToken,
			RefreshToken: refresh,
			AccountID:    accountID,
		},
		LastRefresh: &last,
	}, "", "  ")
	if err != nil {
		return fmt.Errorf("encode dummy auth.json: %w", err)
	}
	plan.Files = append(plan.Files,
		File{Path: CodexAuthFile, Mode: 0o600, Data: append(data, '\n')},
		File{Path: CodexConfigFile, Mode: 0o600, Data: []byte(codexConfig)},
	)

	plan.Env["CODEX_HOME"] = codexSandboxHome

	e := &plan.Egress
	e.TokenEnvMap[CodexSlot] = CodexAccessTokenEnv
	e.Slots[CodexSlot] = policy.Slot{Placeholder: accessToken}
	for _, h := range []string{"chatgpt.com", "*.chatgpt.com", "chat.openai.com"} {
		e.Routes = append(e.Routes, policy.Route{Host: h, Slot: CodexSlot, Header: "Authorization", Scheme: policy.SchemeBearer})
	}
	e.Block = append(e.Block, policy.Block{
		Host:   "auth.openai.com",
		Path:   "/oauth/token",
		Reason: "token refresh happens on the host; cork keeps the sandbox's token fresh",
	})
	return nil
}

// codexDummyJWTs mints the dummy id_token (only the copied non-secret
// claims, plus iat and exp) and access_token (the slot's placeholder; a
// random jti makes it unique), unsigned.
func codexDummyJWTs(opts Options, id codexIdentity, now time.Time, exp int64) (idToken, accessToken string, err error) {
	idClaims := map[string]any{"iat": now.Unix(), "exp": exp}
	if id.email != "" {
		idClaims["email"] = id.email
	}
	if auth := id.authClaims(); len(auth) > 0 {
		idClaims[codexAuthClaim] = auth
	}
	if idToken, err = dummyjwt.Mint(idClaims, opts.Rand); err != nil {
		return "", "", err
	}
	jti, err := randomUUID(opts.Rand)
	if err != nil {
		return "", "", err
	}
	accessClaims := map[string]any{
		"aud": []string{"https://api.openai.com/v1"},
		"iss": "https://auth.openai.com",
		"iat": now.Unix(),
		"nbf": now.Unix(),
		"exp": exp,
		"jti": jti,
	}
	if auth := id.authClaims(); len(auth) > 0 {
		accessClaims[codexAuthClaim] = auth
	}
	if id.email != "" {
		accessClaims["https://api.openai.com/profile"] = map[string]any{"email": id.email}
	}
	if accessToken, err = dummyjwt.Mint(accessClaims, opts.Rand); err != nil {
		return "", "", err
	}
	return idToken, accessToken, nil
}

// authClaims is the copied https://api.openai.com/auth object.
func (id codexIdentity) authClaims() map[string]any {
	m := map[string]any{}
	for k, v := range map[string]string{
		"chatgpt_plan_type":  id.planType,
		"chatgpt_user_id":    id.userID,
		"chatgpt_account_id": id.accountID,
	} {
		if v != "" {
			m[k] = v
		}
	}
	return m
}

// codexAPIKeyPlan provisions API-key mode. fromFile says the key was read
// from auth.json, so it goes into the provisioned env; a key from the host
// env is found there by resolution.
func codexAPIKeyPlan(opts Options, key string, fromFile bool, plan *Plan) error {
	placeholder, err := placeholderLike(opts.Rand, key, apiKeyPrefixes)
	if err != nil {
		return err
	}
	data, err := json.MarshalIndent(codexAuthJSON{AuthMode: "apikey", OpenAIAPIKey: &placeholder}, "", "  ")
	if err != nil {
		return fmt.Errorf("encode dummy auth.json: %w", err)
	}
	plan.Files = append(plan.Files,
		File{Path: CodexAuthFile, Mode: 0o600, Data: append(data, '\n')},
		File{Path: CodexConfigFile, Mode: 0o600, Data: []byte(codexConfig)},
	)
	plan.Env[OpenAIAPIKeyEnv] = placeholder
	plan.Env["CODEX_HOME"] = codexSandboxHome
	if fromFile {
		plan.ProvisionedEnv[OpenAIAPIKeyEnv] = resolve.NewSecret(key)
	}
	e := &plan.Egress
	e.TokenEnvMap[OpenAISlot] = OpenAIAPIKeyEnv
	e.Slots[OpenAISlot] = policy.Slot{Placeholder: placeholder}
	e.Routes = append(e.Routes, policy.Route{Host: "api.openai.com", Slot: OpenAISlot, Header: "Authorization", Scheme: policy.SchemeBearer})
	return nil
}
