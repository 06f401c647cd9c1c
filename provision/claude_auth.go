package provision

import (
	"encoding/json"
	"errors"
	"math"
	"slices"
	"time"
)

// claudeCredentials is what cork needs from a host .credentials.json. It
// holds a real credential: never print it. The refresh token is not kept:
// refresh belongs to the host's Claude Code, and nothing of it may reach a
// plan.
type claudeCredentials struct {
	accessToken string
	// expiresAt is zero when the file has no expiresAt.
	expiresAt time.Time
}

// claudeInferenceScope is the OAuth scope Claude Code needs to call the
// Messages API with a subscription token.
const claudeInferenceScope = "user:inference"

// parseClaudeCredentials parses a Claude Code .credentials.json:
// {"claudeAiOauth": {"accessToken", "refreshToken", "expiresAt" (ms),
// "scopes", ...}, ...}. Only claudeAiOauth.accessToken is required; expiresAt
// and scopes are checked when present, other members are ignored. Errors
// name the field (claudeAiOauth.accessToken, ...) and never carry a value or
// any input.
func parseClaudeCredentials(data []byte) (claudeCredentials, error) {
	top, err := jsonObject(data)
	if err != nil {
		return claudeCredentials{}, err
	}
	oauth, err := requiredObject(top, "claudeAiOauth", "sign in on the host with `claude`")
	if err != nil {
		return claudeCredentials{}, err
	}
	var c claudeCredentials
	if c.accessToken, err = requiredString(oauth, "accessToken", "claudeAiOauth.accessToken"); err != nil {
		return claudeCredentials{}, err
	}
	if raw, ok := oauth["expiresAt"]; ok && !isNull(raw) {
		var ms float64
		if err := json.Unmarshal(raw, &ms); err != nil || ms < 0 || ms > math.MaxInt64 || ms != math.Trunc(ms) {
			return claudeCredentials{}, errors.New("claudeAiOauth.expiresAt: want milliseconds since the epoch")
		}
		c.expiresAt = time.UnixMilli(int64(ms))
	}
	if raw, ok := oauth["scopes"]; ok && !isNull(raw) {
		var scopes []string
		if err := json.Unmarshal(raw, &scopes); err != nil {
			return claudeCredentials{}, errors.New("claudeAiOauth.scopes: want a list of strings")
		}
		if !slices.Contains(scopes, claudeInferenceScope) {
			return claudeCredentials{}, errors.New("claudeAiOauth.scopes: no " + claudeInferenceScope +
				" scope, so this sign-in cannot call the API (run `claude setup-token` and set CLAUDE_CODE_OAUTH_TOKEN, or set ANTHROPIC_API_KEY)")
		}
	}
	return c, nil
}
