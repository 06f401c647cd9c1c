package provision

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"
)

// geminiCreds is what cork needs from a host oauth_creds.json. It holds a
// real credential: never print it. The refresh token and the id_token are
// not kept: refresh belongs to the host's CLI, and an id_token identifies
// the user to anyone who accepts Google's signature.
type geminiCreds struct {
	accessToken string
	// expiry is zero when the file has no expiry_date.
	expiry time.Time
	// scope is the granted scopes, space-separated; not a secret.
	scope string
}

// parseGeminiCreds parses the Gemini CLI's oauth_creds.json, the
// credentials of google-auth-library's OAuth2Client: {"access_token",
// "refresh_token", "scope", "token_type", "id_token", "expiry_date" (ms)}.
// Only access_token is required; expiry_date and scope are checked when
// present, other members are ignored. Errors name the field and never
// carry a value or any input.
func parseGeminiCreds(data []byte) (geminiCreds, error) {
	top, err := jsonObject(data)
	if err != nil {
		return geminiCreds{}, err
	}
	var c geminiCreds
	if c.accessToken, err = requiredString(top, "access_token", "access_token"); err != nil {
		return geminiCreds{}, fmt.Errorf("%w (sign in again with `gemini` on the host)", err)
	}
	if raw, ok := top["expiry_date"]; ok && !isNull(raw) {
		var ms float64
		if err := json.Unmarshal(raw, &ms); err != nil || ms < 0 || ms > math.MaxInt64 || ms != math.Trunc(ms) {
			return geminiCreds{}, errors.New("expiry_date: want milliseconds since the epoch")
		}
		c.expiry = time.UnixMilli(int64(ms))
	}
	if c.scope, _, err = jsonString(top, "scope", "scope"); err != nil {
		return geminiCreds{}, err
	}
	return c, nil
}

// parseGeminiAccount returns the "active" address of a google_accounts.json
// ({"active": string|null, "old": [string]}), or "" when the file has none
// or is malformed, as the CLI treats it.
func parseGeminiAccount(data []byte) string {
	var a struct {
		Active *string `json:"active"`
	}
	if json.Unmarshal(data, &a) != nil || a.Active == nil {
		return ""
	}
	return *a.Active
}
