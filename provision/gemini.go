package provision

import (
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"time"

	"github.com/cork-sh/cork/policy"
	"github.com/cork-sh/cork/resolve"
)

// Gemini profile constants.
const (
	// GeminiAccessTokenEnv holds the real Google access token for slot
	// GeminiOAuthSlot: provisioning puts the token read from the host's
	// oauth_creds.json there (Plan.ProvisionedEnv); without forwarding, the
	// operator sets it in the host environment.
	GeminiAccessTokenEnv = "CORK_GEMINI_ACCESS_TOKEN"
	// GeminiAPIKeyEnv holds a Gemini API key: on the host the real one (slot
	// GeminiSlot), in the sandbox its placeholder.
	GeminiAPIKeyEnv = "GEMINI_API_KEY"
	// GoogleAPIKeyEnv is the host's other API key variable, read when
	// GeminiAPIKeyEnv is unset. The sandbox never gets it.
	GoogleAPIKeyEnv = "GOOGLE_API_KEY"
	// GeminiSlot is the slot of an API key.
	GeminiSlot = "gemini"
	// GeminiOAuthSlot is the slot of a Google sign-in's access token.
	GeminiOAuthSlot = "gemini-oauth"
	// GeminiSettingsFile, GeminiCredsFile and GeminiAccountsFile are the
	// dummy files, relative to the sandbox HOME, where the Gemini CLI looks
	// with GEMINI_CLI_HOME set to that HOME.
	GeminiSettingsFile = ".gemini/settings.json"
	GeminiCredsFile    = ".gemini/oauth_creds.json"
	GeminiAccountsFile = ".gemini/google_accounts.json"
)

// Hosts of the Gemini CLI (docs/AGENTS.md, "Gemini CLI").
const (
	geminiAPIHost   = "generativelanguage.googleapis.com" // API key, x-goog-api-key
	geminiCodeHost  = "cloudcode-pa.googleapis.com"       // sign-in, bearer
	googleOAuthHost = "oauth2.googleapis.com"             // /tokeninfo (bearer), /token, /revoke
)

// geminiRefreshReason answers the sandbox's attempts to refresh or revoke.
const geminiRefreshReason = "Google token refresh happens on the host; cork keeps the sandbox's token fresh"

// geminiBlocks keep the sandbox off the token endpoint and off revoking
// the host's token; /tokeninfo, which the CLI calls with its bearer before
// using cached credentials, stays open.
var geminiBlocks = []policy.Block{
	{Host: googleOAuthHost, Path: "/token", Reason: geminiRefreshReason},
	{Host: googleOAuthHost, Path: "/revoke", Reason: geminiRefreshReason},
}

// geminiSandboxHome is GEMINI_CLI_HOME in the sandbox: the sandbox HOME,
// set explicitly so that a value inherited from the host can never point
// the CLI elsewhere.
const geminiSandboxHome = "~/"

// Shapes of Google credentials, for placeholders without a real value to
// imitate: API keys are "AIza" and 35 more characters; access tokens
// "ya29." and about 250 in all; refresh tokens "1//0" and about 100.
const (
	geminiAPIKeyPrefix  = "AIza"
	geminiAPIKeyLen     = 39
	geminiAccessPrefix  = "ya29."
	geminiAccessLen     = 250
	geminiRefreshPrefix = "1//0"
	geminiRefreshLen    = 103
)

// geminiDefaultScope is what the CLI asks for at sign-in.
const geminiDefaultScope = "https://www.googleapis.com/auth/cloud-platform https://www.googleapis.com/auth/userinfo.email https://www.googleapis.com/auth/userinfo.profile"

// Values of the CLI's security.auth.selectedType.
const (
	geminiAuthOAuth  = "oauth-personal"
	geminiAuthAPIKey = "gemini-api-key"
)

// Gemini provisions the Gemini CLI (npm @google/gemini-cli), signed in
// with Google or with an API key (see docs/AGENTS.md). Its zero value is
// ready to use.
//
// With Options.ForwardHostCredentials, it reads
// $GEMINI_CLI_HOME/.gemini/oauth_creds.json (GEMINI_CLI_HOME from
// Options.HostEnv, default HostHome): if present, sign-in mode with its
// access token, put into Plan.ProvisionedEnv as GeminiAccessTokenEnv, the
// file listed as a Source; an access token that has already expired is an
// error. Otherwise (and always without forwarding), API-key mode with
// GEMINI_API_KEY, else GOOGLE_API_KEY, from the host env. With neither,
// forwarding fails with a hint; without forwarding it provisions sign-in
// mode with the token from the operator's GeminiAccessTokenEnv.
//
// Sign-in mode: slot "gemini-oauth" is injected as a bearer on
// cloudcode-pa.googleapis.com and oauth2.googleapis.com, where a scoped
// allow admits only POST /tokeninfo and /token and /revoke are blocked. The sandbox gets a dummy oauth_creds.json (the
// placeholder access token, a refresh token that is not one, an expiry far
// in the future, no id_token) and, when the host has one, the signed-in
// address in google_accounts.json. API-key mode: slot "gemini" on
// generativelanguage.googleapis.com, header x-goog-api-key, the placeholder
// in the sandbox's GEMINI_API_KEY. Both write ~/.gemini/settings.json
// selecting the mode and turning usage statistics, telemetry and update
// checks off, and set GEMINI_CLI_HOME to the sandbox HOME,
// GEMINI_CLI_TRUST_WORKSPACE=true (headless runs refuse an untrusted
// folder) and NO_BROWSER=true (a failed sign-in ends instead of waiting
// for a browser).
type Gemini struct{}

var _ Profile = Gemini{}

// Name returns "gemini".
func (Gemini) Name() string { return "gemini" }

// Provision adds the Gemini CLI's dummy files, env and egress rules to
// plan.
func (Gemini) Provision(opts Options, plan *Plan) error {
	path, data, notFound, err := readForwarded(opts, geminiCredsPath)
	if err != nil {
		return err
	}
	if data != nil {
		return geminiFilePlan(opts, path, data, plan)
	}
	for _, env := range []string{GeminiAPIKeyEnv, GoogleAPIKeyEnv} {
		if key := opts.HostEnv[env]; key != "" {
			return geminiAPIKeyPlan(opts, env, key, plan)
		}
	}
	if notFound != nil {
		return fmt.Errorf("%w (sign in on the host with `gemini`, set %s or %s, or don't forward host credentials)",
			notFound, GeminiAPIKeyEnv, GoogleAPIKeyEnv)
	}
	return geminiSignInPlan(opts, nil, "", plan)
}

// geminiCredsPath is $GEMINI_CLI_HOME/.gemini/oauth_creds.json,
// GEMINI_CLI_HOME defaulting to the home directory: it names the directory
// that holds .gemini, not .gemini itself.
func geminiCredsPath(opts Options) (string, error) {
	return hostConfigFile(opts, "GEMINI_CLI_HOME", "", filepath.Join(".gemini", "oauth_creds.json"))
}

// geminiFilePlan provisions the sign-in of the host's oauth_creds.json
// (data, read from path).
func geminiFilePlan(opts Options, path string, data []byte, plan *Plan) error {
	c, err := parseGeminiCreds(data)
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	if !c.expiry.IsZero() && !c.expiry.After(opts.Now()) {
		return fmt.Errorf("read %s: expiry_date: the access token expired at %s; run `gemini` on the host to refresh it (Google access tokens last an hour), or set %s and don't forward host credentials",
			path, c.expiry.UTC().Format(time.RFC3339), GeminiAPIKeyEnv)
	}
	plan.ProvisionedEnv[GeminiAccessTokenEnv] = resolve.NewSecret(c.accessToken)
	plan.Sources = append(plan.Sources, geminiSource(opts, path))
	return geminiSignInPlan(opts, &c, geminiAccount(opts, filepath.Dir(path)), plan)
}

// geminiSource lets the launcher pick up the host's refreshed token. An
// expired token is passed on as it is: the host's CLI refreshes it when
// next used, and the launcher reads the file again then.
func geminiSource(opts Options, path string) Source {
	return Source{Path: path, Read: func() (resolve.Env, error) {
		data, err := opts.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", path, unwrapPath(err))
		}
		c, err := parseGeminiCreds(data)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", path, err)
		}
		return resolve.Env{GeminiAccessTokenEnv: resolve.NewSecret(c.accessToken)}, nil
	}}
}

// geminiAccount is the signed-in address of the host's
// google_accounts.json in dir, or "" when there is none. The CLI reads
// the file the same forgiving way: it only saves a call to the userinfo
// endpoint, which the sandbox cannot reach.
func geminiAccount(opts Options, dir string) string {
	data, err := opts.ReadFile(filepath.Join(dir, "google_accounts.json"))
	if err != nil {
		return ""
	}
	return parseGeminiAccount(data)
}

// geminiCredsJSON is the dummy oauth_creds.json, fields in the CLI's
// order.
type geminiCredsJSON struct {
	AccessToken  string `json:"access_token"`
	Scope        string `json:"scope"`
	TokenType    string `json:"token_type"`
	ExpiryDate   int64  `json:"expiry_date"`
	RefreshToken string `json:"refresh_token"`
}

type geminiAccountsJSON struct {
	Active string   `json:"active"`
	Old    []string `json:"old"`
}

// geminiSignInPlan provisions sign-in mode. host is the parsed host file,
// or nil when not forwarding (the token then comes from the operator's
// env); account is the address for google_accounts.json, or "".
func geminiSignInPlan(opts Options, host *geminiCreds, account string, plan *Plan) error {
	real, scope := "", geminiDefaultScope
	if host != nil {
		real = host.accessToken
		if host.scope != "" {
			scope = host.scope
		}
	}
	access, err := placeholderOr(opts.Rand, real, []string{geminiAccessPrefix}, geminiAccessPrefix, geminiAccessLen-len(geminiAccessPrefix))
	if err != nil {
		return err
	}
	// Never the real refresh token, nor one shaped from it: the sandbox's
	// refresh is blocked anyway, and this one is not a token at all.
	refresh, err := placeholderOr(opts.Rand, "", nil, geminiRefreshPrefix, geminiRefreshLen-len(geminiRefreshPrefix))
	if err != nil {
		return err
	}
	data, err := json.MarshalIndent(geminiCredsJSON{
		AccessToken:  access,
		Scope:        scope,
		TokenType:    "Bearer",
		ExpiryDate:   opts.Now().Add(dummyLifetime).UnixMilli(),
		RefreshToken: refresh,
	}, "", "  ")
	if err != nil {
		return fmt.Errorf("encode dummy oauth_creds.json: %w", err)
	}
	plan.Files = append(plan.Files, File{Path: GeminiCredsFile, Mode: 0o600, Data: append(data, '\n')})
	if account != "" {
		data, err := json.MarshalIndent(geminiAccountsJSON{Active: account, Old: []string{}}, "", "  ")
		if err != nil {
			return fmt.Errorf("encode dummy google_accounts.json: %w", err)
		}
		plan.Files = append(plan.Files, File{Path: GeminiAccountsFile, Mode: 0o600, Data: append(data, '\n')})
	}

	e := &plan.Egress
	e.TokenEnvMap[GeminiOAuthSlot] = GeminiAccessTokenEnv
	e.Slots[GeminiOAuthSlot] = policy.Slot{Placeholder: access}
	for _, h := range []string{geminiCodeHost, googleOAuthHost} {
		e.Routes = append(e.Routes, policy.Route{Host: h, Slot: GeminiOAuthSlot, Header: "Authorization", Scheme: policy.SchemeBearer})
	}
	// On the OAuth host the bearer may serve only the CLI's token check.
	e.Allow = append(e.Allow, policy.Allow{Host: googleOAuthHost, Path: "/tokeninfo", Methods: []string{http.MethodPost}})
	e.Block = append(e.Block, geminiBlocks...)
	return geminiCommon(plan, geminiAuthOAuth)
}

// geminiAPIKeyPlan provisions API-key mode with key, found in the host's
// env variable env, where resolution finds it too.
func geminiAPIKeyPlan(opts Options, env, key string, plan *Plan) error {
	ph, err := placeholderOr(opts.Rand, key, []string{geminiAPIKeyPrefix}, geminiAPIKeyPrefix, geminiAPIKeyLen-len(geminiAPIKeyPrefix))
	if err != nil {
		return err
	}
	plan.Env[GeminiAPIKeyEnv] = ph
	e := &plan.Egress
	e.TokenEnvMap[GeminiSlot] = env
	e.Slots[GeminiSlot] = policy.Slot{Placeholder: ph}
	e.Routes = append(e.Routes, policy.Route{Host: geminiAPIHost, Slot: GeminiSlot, Header: "X-Goog-Api-Key", Scheme: policy.SchemeRaw})
	return geminiCommon(plan, geminiAuthAPIKey)
}

// geminiSettingsJSON is the dummy settings.json.
type geminiSettingsJSON struct {
	Security struct {
		Auth struct {
			SelectedType string `json:"selectedType"`
		} `json:"auth"`
	} `json:"security"`
	Privacy struct {
		UsageStatisticsEnabled bool `json:"usageStatisticsEnabled"`
	} `json:"privacy"`
	Telemetry struct {
		Enabled bool `json:"enabled"`
	} `json:"telemetry"`
	General struct {
		EnableAutoUpdate             bool `json:"enableAutoUpdate"`
		EnableAutoUpdateNotification bool `json:"enableAutoUpdateNotification"`
	} `json:"general"`
}

// geminiCommon adds what both modes share: settings.json selecting
// authType with the non-essential traffic off, and the env.
func geminiCommon(plan *Plan, authType string) error {
	var s geminiSettingsJSON
	s.Security.Auth.SelectedType = authType
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("encode dummy settings.json: %w", err)
	}
	plan.Files = append(plan.Files, File{Path: GeminiSettingsFile, Mode: 0o600, Data: append(data, '\n')})
	plan.Env["GEMINI_CLI_HOME"] = geminiSandboxHome
	plan.Env["GEMINI_CLI_TRUST_WORKSPACE"] = "true"
	plan.Env["NO_BROWSER"] = "true"
	return nil
}
