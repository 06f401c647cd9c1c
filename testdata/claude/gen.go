//go:build ignore

// gen writes the Claude Code .credentials.json fixtures in this directory.
// Everything it writes is fake: no token here was ever issued by anyone.
// The values are deterministic and distinctive (sk-ant-oat01-REALACCESS,
// sk-ant-ort01-REALREFRESH, ...) so that tests can grep for them.
//
//	go run ./testdata/claude/gen.go   (from the repository root)
package main

import (
	"encoding/json"
	"log"
	"math/rand/v2"
	"os"
	"path/filepath"
	"time"
)

const dir = "testdata/claude"

// The tests' clock is 2026-11-02T08:30:00Z: the good token expires after
// it, the expired one before.
var (
	expiresAt = time.Date(2026, 11, 2, 14, 0, 0, 0, time.UTC).UnixMilli()
	expiredAt = time.Date(2026, 11, 1, 20, 0, 0, 0, time.UTC).UnixMilli()
)

var rng = rand.New(rand.NewPCG(3, 7))

// filler returns n deterministic base64url characters.
func filler(n int) string {
	const abc = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	b := make([]byte, n)
	for i := range b {
		b[i] = abc[rng.IntN(len(abc))]
	}
	return string(b)
}

// token returns a 108-character token: prefix, marker, filler, "AA", the
// shape of Anthropic's keys and OAuth tokens.
func token(prefix, marker string) string {
	return prefix + marker + filler(108-len(prefix)-len(marker)-2) + "AA"
}

func write(name string, data []byte) {
	p := filepath.Join(dir, name, ".credentials.json")
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

// oauth returns a claudeAiOauth object with every field Claude Code
// writes; the caller may change or delete any.
func oauth(access, refresh string) map[string]any {
	return map[string]any{
		"accessToken":      access,
		"refreshToken":     refresh,
		"expiresAt":        expiresAt,
		"scopes":           []any{"user:inference", "user:profile", "user:sessions:claude_code"},
		"subscriptionType": "max",
		"rateLimitTier":    "default_claude_max_20x",
	}
}

func main() {
	access := token("sk-ant-oat01-", "REALACCESS")
	refresh := token("sk-ant-ort01-", "REALREFRESH")

	// A signed-in host: the subscription token plus an MCP server's OAuth
	// token, which Claude Code keeps in the same file and cork must ignore.
	writeJSON("oauth", map[string]any{
		"claudeAiOauth": oauth(access, refresh),
		"mcpOAuth": map[string]any{
			"linear|3f2a9c": map[string]any{
				"serverName":   "linear",
				"serverUrl":    "https://mcp.linear.app/sse",
				"accessToken":  "REALMCPACCESS" + filler(40),
				"refreshToken": "REALMCPREFRESH" + filler(40),
				"expiresAt":    expiresAt,
			},
		},
	})
	// Only the access token: the optional fields may be absent.
	writeJSON("minimal", map[string]any{"claudeAiOauth": map[string]any{"accessToken": access}})

	// Malformed variants, each with real-looking secrets to prove that
	// errors never echo them.
	b, _ := json.MarshalIndent(map[string]any{"claudeAiOauth": oauth(access, refresh)}, "", "  ")
	write("bad/badjson", b[:len(b)/3]) // truncated inside the access token

	write("bad/null", []byte("null\n"))
	writeJSON("bad/nooauth", map[string]any{"mcpOAuth": map[string]any{}})
	writeJSON("bad/oauthnotobject", map[string]any{"claudeAiOauth": access})

	noAccess := oauth(access, refresh)
	delete(noAccess, "accessToken")
	writeJSON("bad/noaccess", map[string]any{"claudeAiOauth": noAccess})

	emptyAccess := oauth("", refresh)
	writeJSON("bad/emptyaccess", map[string]any{"claudeAiOauth": emptyAccess})

	accessNumber := oauth(access, refresh)
	accessNumber["accessToken"] = 1234567890123
	writeJSON("bad/accessnotstring", map[string]any{"claudeAiOauth": accessNumber})

	badExpiry := oauth(access, refresh)
	badExpiry["expiresAt"] = "REALNOTATIME" + refresh
	writeJSON("bad/badexpiry", map[string]any{"claudeAiOauth": badExpiry})

	noInference := oauth(access, refresh)
	noInference["scopes"] = []any{"org:create_api_key", "user:profile"}
	writeJSON("bad/noinference", map[string]any{"claudeAiOauth": noInference})

	scopesString := oauth(access, refresh)
	scopesString["scopes"] = "user:inference user:profile"
	writeJSON("bad/scopesnotlist", map[string]any{"claudeAiOauth": scopesString})

	// Well-formed, but the access token expired before the tests' clock.
	expired := oauth(access, refresh)
	expired["expiresAt"] = expiredAt
	writeJSON("bad/expired", map[string]any{"claudeAiOauth": expired})
}
