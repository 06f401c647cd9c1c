package provision

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/cork-sh/cork/internal/dummyjwt"
)

// codexMode is how the host's Codex signed in.
type codexMode int

const (
	codexChatGPT codexMode = iota + 1
	codexAPIKey
)

// codexAuth is what cork needs from a host auth.json. It holds real
// credentials: never print it.
type codexAuth struct {
	mode codexMode

	// API-key mode.
	apiKey string

	// ChatGPT mode.
	accessToken  string
	refreshToken string
	accountID    *string
	identity     codexIdentity
	lastRefresh  time.Time
}

// codexIdentity holds the non-secret id_token claims a dummy may carry.
// An empty field was absent.
type codexIdentity struct {
	email, planType, userID, accountID string
}

// codexAuthClaim is the id_token claim that holds the ChatGPT account.
const codexAuthClaim = "https://api.openai.com/auth"

// parseCodexAuth parses a Codex auth.json the way Codex loads it: field
// names are case-sensitive, id_token and access_token must be well-formed
// JWTs (base64url without padding), last_refresh must be present in
// ChatGPT mode. Errors name the field (tokens.id_token, ...) and never
// carry a value or any input.
func parseCodexAuth(data []byte) (codexAuth, error) {
	top, err := jsonObject(data)
	if err != nil {
		return codexAuth{}, err
	}
	var a codexAuth
	mode, _, err := jsonString(top, "auth_mode", "auth_mode")
	if err != nil {
		return codexAuth{}, err
	}
	apiKey, hasKey, err := jsonString(top, "OPENAI_API_KEY", "OPENAI_API_KEY")
	if err != nil {
		return codexAuth{}, err
	}
	switch mode {
	case "chatgpt":
		a.mode = codexChatGPT
	case "apikey":
		a.mode = codexAPIKey
	case "":
		// Codex: without auth_mode, a non-null key means API-key mode.
		if hasKey {
			a.mode = codexAPIKey
		} else {
			a.mode = codexChatGPT
		}
	default:
		return codexAuth{}, errors.New(`auth_mode: want "chatgpt" or "apikey"`)
	}

	if a.mode == codexAPIKey {
		if apiKey == "" {
			return codexAuth{}, errors.New("OPENAI_API_KEY: missing or empty in API-key mode")
		}
		a.apiKey = apiKey
		return a, nil
	}

	if err := a.parseTokens(top); err != nil {
		return codexAuth{}, err
	}
	last, err := requiredString(top, "last_refresh", "last_refresh")
	if err != nil {
		return codexAuth{}, err
	}
	if a.lastRefresh, err = time.Parse(time.RFC3339Nano, last); err != nil {
		return codexAuth{}, errors.New("last_refresh: want an RFC 3339 time")
	}
	return a, nil
}

// parseTokens reads ChatGPT mode's "tokens" object into a.
func (a *codexAuth) parseTokens(top map[string]json.RawMessage) error {
	tokens, err := requiredObject(top, "tokens", "sign in again with `codex login` on the host")
	if err != nil {
		return err
	}
	idToken, err := requiredString(tokens, "id_token", "tokens.id_token")
	if err != nil {
		return err
	}
	claims, err := dummyjwt.Parse(idToken)
	if err != nil {
		return fmt.Errorf("tokens.id_token: %w", err)
	}
	if a.identity, err = identityFromClaims(claims); err != nil {
		return fmt.Errorf("tokens.id_token: %w", err)
	}
	if a.accessToken, err = requiredString(tokens, "access_token", "tokens.access_token"); err != nil {
		return err
	}
	if _, err := dummyjwt.Parse(a.accessToken); err != nil {
		return fmt.Errorf("tokens.access_token: %w", err)
	}
	refresh, hasRefresh, err := jsonString(tokens, "refresh_token", "tokens.refresh_token")
	if err != nil {
		return err
	}
	if !hasRefresh {
		return errors.New("tokens.refresh_token: missing")
	}
	a.refreshToken = refresh
	account, hasAccount, err := jsonString(tokens, "account_id", "tokens.account_id")
	if err != nil {
		return err
	}
	if hasAccount {
		a.accountID = &account
	}
	return nil
}

// identityFromClaims copies the non-secret claims. A claim that is present
// but not a string is an error, as it is for Codex.
func identityFromClaims(claims map[string]any) (codexIdentity, error) {
	var id codexIdentity
	var err error
	if id.email, err = claimString(claims, "email", "email"); err != nil {
		return id, err
	}
	raw, ok := claims[codexAuthClaim]
	if !ok || raw == nil {
		return id, nil
	}
	auth, ok := raw.(map[string]any)
	if !ok {
		return id, fmt.Errorf("claim %s: want an object", codexAuthClaim)
	}
	for _, c := range []struct {
		dst  *string
		name string
	}{
		{&id.planType, "chatgpt_plan_type"},
		{&id.userID, "chatgpt_user_id"},
		{&id.accountID, "chatgpt_account_id"},
	} {
		if *c.dst, err = claimString(auth, c.name, codexAuthClaim+"."+c.name); err != nil {
			return id, err
		}
	}
	return id, nil
}

func claimString(m map[string]any, key, path string) (string, error) {
	v, ok := m[key]
	if !ok || v == nil {
		return "", nil
	}
	s, ok := v.(string)
	if !ok {
		return "", fmt.Errorf("claim %s: want a string", path)
	}
	return s, nil
}

// jsonObject decodes a JSON object into its raw members. Its errors say
// where, never what: encoding/json's messages can quote input.
func jsonObject(data []byte) (map[string]json.RawMessage, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return nil, fmt.Errorf("invalid JSON at byte %d", se.Offset)
		}
		return nil, errors.New("want a JSON object")
	}
	if m == nil {
		return nil, errors.New("want a JSON object, got null")
	}
	return m, nil
}

func isNull(raw json.RawMessage) bool { return bytes.Equal(bytes.TrimSpace(raw), []byte("null")) }

// jsonString returns obj[key] as a string; ok is false if it is absent or
// null. Any other type is an error naming path.
func jsonString(obj map[string]json.RawMessage, key, path string) (s string, ok bool, err error) {
	raw, present := obj[key]
	if !present || isNull(raw) {
		return "", false, nil
	}
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", false, fmt.Errorf("%s: want a string", path)
	}
	return s, true, nil
}

// requiredString is jsonString for a field that must be a non-empty string.
// requiredObject returns the JSON object at obj[key]; a missing or null one
// is an error naming key and saying how to fix it (hint).
func requiredObject(obj map[string]json.RawMessage, key, hint string) (map[string]json.RawMessage, error) {
	raw, ok := obj[key]
	if !ok || isNull(raw) {
		return nil, fmt.Errorf("%s: missing (%s)", key, hint)
	}
	o, err := jsonObject(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	return o, nil
}

func requiredString(obj map[string]json.RawMessage, key, path string) (string, error) {
	s, ok, err := jsonString(obj, key, path)
	if err != nil {
		return "", err
	}
	if !ok || s == "" {
		return "", fmt.Errorf("%s: missing or empty", path)
	}
	return s, nil
}
