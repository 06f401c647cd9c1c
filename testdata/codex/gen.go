//go:build ignore

// gen writes the Codex auth.json fixtures in this directory. Everything it
// writes is fake: no token here was ever issued by anyone. The values are
// deterministic and distinctive (REALACCESSSIG, rt_REALREFRESH, ...) so
// that tests can grep for them.
//
//	go run ./testdata/codex/gen.go   (from the repository root)
package main

import (
	"encoding/base64"
	"encoding/json"
	"log"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
)

const (
	dir = "testdata/codex"

	email     = "alice@example.com"
	plan      = "plus"
	userID    = "user-AliceExampleUser01"
	accountID = "7f1c2e4a-5b6d-4e8f-9a0b-1c2d3e4f5a6b"
	subject   = "google-oauth2|104857600000000000001"

	lastRefresh = "2026-10-28T09:14:03.123456Z"
	iat         = 1793178843 // 2026-10-28T09:14:03Z
	accessExp   = iat + 10*24*3600
	idExp       = iat + 3600
)

var rng = rand.New(rand.NewPCG(2, 6))

// filler returns n deterministic base64url characters.
func filler(n int) string {
	const abc = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	b := make([]byte, n)
	for i := range b {
		b[i] = abc[rng.IntN(len(abc))]
	}
	return string(b)
}

// sig returns a 342-character signature part (an RS256 signature's size)
// starting with marker.
func sig(marker string) string { return marker + filler(341-len(marker)) + "A" }

func b64(v any, pad bool) string {
	b, err := json.Marshal(v)
	if err != nil {
		log.Fatal(err)
	}
	if pad {
		for len(b)%3 == 0 { // make sure there is padding to see
			b = append(b, ' ')
		}
		return base64.URLEncoding.EncodeToString(b)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

func header(kid string) string {
	return b64(map[string]any{"alg": "RS256", "kid": kid, "typ": "JWT"}, false)
}

var authClaimsID = map[string]any{
	"chatgpt_account_id":                accountID,
	"chatgpt_plan_type":                 plan,
	"chatgpt_subscription_active_start": "2026-01-05T11:02:44+00:00",
	"chatgpt_subscription_active_until": "2026-12-05T11:02:44+00:00",
	"chatgpt_subscription_last_checked": "2026-10-28T09:14:02.987654+00:00",
	"chatgpt_user_id":                   userID,
	"groups":                            []any{},
	"organizations": []any{map[string]any{
		"id": "org-REALORGIDAlice0001", "is_default": true, "role": "owner", "title": "Personal",
	}},
	"user_id": userID,
}

var idClaims = map[string]any{
	"at_hash":                     "REALATHASH" + filler(12),
	"aud":                         []any{"app_EMoamEEZ73f0CkXaXp7hrann"},
	"auth_provider":               "google",
	"auth_time":                   iat - 60,
	"email":                       email,
	"email_verified":              true,
	"exp":                         idExp,
	"https://api.openai.com/auth": authClaimsID,
	"iat":                         iat,
	"iss":                         "https://auth.openai.com",
	"jti":                         "REALIDJTI-0b7c7d4e-1f2a-4b3c-8d9e-0f1a2b3c4d5e",
	"rat":                         iat - 60,
	"sid":                         "REALSESSIONID-" + filler(24),
	"sub":                         subject,
}

var accessClaims = map[string]any{
	"aud":       []any{"https://api.openai.com/v1"},
	"client_id": "app_EMoamEEZ73f0CkXaXp7hrann",
	"exp":       accessExp,
	"https://api.openai.com/auth": map[string]any{
		"chatgpt_account_id":        accountID,
		"chatgpt_account_user_id":   userID + "__" + accountID,
		"chatgpt_compute_residency": "no_constraint",
		"chatgpt_plan_type":         plan,
		"chatgpt_user_id":           userID,
		"user_id":                   userID,
	},
	"https://api.openai.com/profile": map[string]any{"email": email, "email_verified": true},
	"iat":                            iat,
	"iss":                            "https://auth.openai.com",
	"jti":                            "REALACCESSJTI-9c8b7a6f-5e4d-4c3b-2a1f-0e9d8c7b6a59",
	"nbf":                            iat,
	"pwd_auth_time":                  (iat - 60) * 1000,
	"scp":                            []any{"openid", "profile", "email", "offline_access"},
	"session_id":                     "authsess_REALSESSION" + filler(16),
	"sub":                            subject,
}

type tokens struct {
	IDToken      string  `json:"id_token,omitempty"`
	AccessToken  string  `json:"access_token,omitempty"`
	RefreshToken string  `json:"refresh_token,omitempty"`
	AccountID    *string `json:"account_id"`
}

type authFile struct {
	AuthMode     string  `json:"auth_mode,omitempty"`
	OpenAIAPIKey *string `json:"OPENAI_API_KEY"`
	Tokens       *tokens `json:"tokens"`
	LastRefresh  *string `json:"last_refresh,omitempty"`
}

func write(name string, data []byte) {
	p := filepath.Join(dir, name, "auth.json")
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		log.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o600); err != nil {
		log.Fatal(err)
	}
}

func writeJSON(name string, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		log.Fatal(err)
	}
	write(name, append(b, '\n'))
}

func ptr(s string) *string { return &s }

func main() {
	idToken := header("REALIDKID") + "." + b64(idClaims, false) + "." + sig("REALIDSIG")
	accessToken := header("REALACCESSKID") + "." + b64(accessClaims, false) + "." + sig("REALACCESSSIG")
	refresh := "rt_REALREFRESH" + filler(72)
	good := tokens{IDToken: idToken, AccessToken: accessToken, RefreshToken: refresh, AccountID: ptr(accountID)}

	writeJSON("chatgpt", authFile{AuthMode: "chatgpt", Tokens: &good, LastRefresh: ptr(lastRefresh)})
	// Older Codex versions write no auth_mode: tokens alone mean ChatGPT.
	writeJSON("chatgpt-noauthmode", authFile{Tokens: &good, LastRefresh: ptr(lastRefresh)})

	apiKey := "sk-proj-REALAPIKEY" + filler(146)
	writeJSON("apikey", authFile{OpenAIAPIKey: ptr(apiKey)})

	// Malformed variants, each with real-looking secrets to prove that
	// errors never echo them.
	b, _ := json.MarshalIndent(authFile{AuthMode: "chatgpt", Tokens: &good, LastRefresh: ptr(lastRefresh)}, "", "  ")
	write("bad/badjson", b[:len(b)/2]) // truncated in the middle of the tokens

	writeJSON("bad/notokens", authFile{AuthMode: "chatgpt", LastRefresh: ptr(lastRefresh)})

	noAccess := good
	noAccess.AccessToken = ""
	writeJSON("bad/noaccess", authFile{AuthMode: "chatgpt", Tokens: &noAccess, LastRefresh: ptr(lastRefresh)})

	idPad := good
	idPad.IDToken = header("REALIDKID") + "." + b64(idClaims, true) + "." + sig("REALIDSIG")
	writeJSON("bad/idpadding", authFile{AuthMode: "chatgpt", Tokens: &idPad, LastRefresh: ptr(lastRefresh)})

	idTwo := good
	idTwo.IDToken = idToken[:strings.LastIndexByte(idToken, '.')]
	writeJSON("bad/idtwoparts", authFile{AuthMode: "chatgpt", Tokens: &idTwo, LastRefresh: ptr(lastRefresh)})

	accessOpaque := good
	accessOpaque.AccessToken = "REALOPAQUEACCESS" + filler(48)
	writeJSON("bad/accessnotjwt", authFile{AuthMode: "chatgpt", Tokens: &accessOpaque, LastRefresh: ptr(lastRefresh)})

	writeJSON("bad/nolastrefresh", authFile{AuthMode: "chatgpt", Tokens: &good})
	writeJSON("bad/badlastrefresh", authFile{AuthMode: "chatgpt", Tokens: &good, LastRefresh: ptr("REALNOTATIME" + refresh)})

	writeJSON("bad/apikeynull", authFile{AuthMode: "apikey"})
}
