package provision

import (
	"testing"
)

// With --github-read-only the shared GitHub token also goes to the Copilot
// API hosts, where GitHub's MCP server (/mcp/, /mcp/x/TOOLSET) writes to
// repositories with it: there only the paths the CLI uses pass, the MCP
// server only read-only. Without read-only the hosts are not narrowed.
func TestCopilotWithGitHubReadOnlyMCP(t *testing.T) {
	env := map[string]string{"GH_TOKEN": gitHubTokens(t)["oauth"]}
	type req struct {
		method, path string
		ok           bool
	}
	readOnly := []req{
		{"POST", "/mcp/", false},
		{"POST", "/mcp", false},
		{"POST", "/mcp/x/repos", false},
		{"POST", "/mcp/insiders", false},
		{"POST", "/agents/swe/v0/jobs/o/r", false},
		{"POST", "/mcp/readonly", true},
		{"POST", "/chat/completions", true},
		{"GET", "/models", true},
		{"GET", "/agents/swe/internal/memory/v0/enabled", true},
	}
	for _, order := range [][]Profile{{Copilot{}, GitHub{ReadOnly: true}}, {GitHub{ReadOnly: true}, Copilot{}}, {Copilot{}, GitHub{}}, {Copilot{}}} {
		ro := false
		for _, p := range order {
			if g, ok := p.(GitHub); ok && g.ReadOnly {
				ro = true
			}
		}
		plan, err := buildCopilot(t, env, true, order...)
		if err != nil {
			t.Fatalf("Build(%v) error = %v", order, err)
		}
		pol, err := plan.Egress.Policy()
		if err != nil {
			t.Fatalf("Build(%v): Egress.Policy() error = %v", order, err)
		}
		for _, h := range copilotAPIHosts {
			rules := pol.Lookup(h, 443)
			if len(rules.Routes) != 1 {
				t.Fatalf("Build(%v): %d routes for %s, want 1", order, len(rules.Routes), h)
			}
			for _, r := range readOnly {
				got := rules.Permits(r.method, r.path) == ""
				if want := r.ok || !ro; got != want {
					t.Errorf("Build(%v): %s %s%s permitted = %v, want %v", order, r.method, h, r.path, got, want)
				}
			}
		}
	}
}
