package fakeupstream

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// The GitHub Copilot CLI's hosts (docs/AGENTS.md, "GitHub Copilot CLI"):
// GET api.github.com/copilot_internal/user names the Copilot API host of
// the account's plan, here the individual one; the CLI sends the GitHub
// token to both. Telemetry carries no credential.
const (
	CopilotAPIHost       = "api.individual.githubcopilot.com"
	CopilotTelemetryHost = "telemetry.individual.githubcopilot.com"
)

// Paths the Copilot CLI calls in `copilot -p`.
const (
	CopilotUserPath        = "/copilot_internal/user"
	CopilotTokenPath       = "/copilot_internal/v2/token"
	CopilotReleasesPath    = "/repos/github/copilot-cli/releases"
	CopilotModelsPath      = "/models"
	CopilotCompletionsPath = "/chat/completions"
)

// CopilotModel is the one model GET /models offers.
const CopilotModel = "gpt-5-mini"

// isCopilotGitHubPath reports whether path on api.github.com is one the
// Copilot CLI calls, which copilotGitHub answers.
func isCopilotGitHubPath(path string) bool {
	return strings.HasPrefix(path, "/copilot_internal/") || path == CopilotReleasesPath
}

// copilotAuthorized reports whether h carries the real Copilot CLI token,
// in either scheme the CLI uses ("Bearer", "bearer" or "token").
func (s *Server) copilotAuthorized(h http.Header) bool {
	if s.cfg.CopilotToken == "" {
		return false
	}
	scheme, tok, ok := strings.Cut(h.Get("Authorization"), " ")
	return ok && (strings.EqualFold(scheme, "bearer") || strings.EqualFold(scheme, "token")) && tok == s.cfg.CopilotToken
}

// copilotGitHub serves the Copilot CLI's calls to api.github.com: the
// account (/copilot_internal/user, which names CopilotAPIHost), and the
// release list of its update check (empty). The Copilot token exchange
// is out of bounds for a sandbox: cork blocks it.
func (s *Server) copilotGitHub(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == CopilotTokenPath {
		writeJSON(w, http.StatusForbidden, map[string]any{"message": "fakeupstream: the Copilot token exchange is out of bounds for a sandbox"})
		return
	}
	if !s.copilotAuthorized(r.Header) {
		writeJSON(w, http.StatusUnauthorized, map[string]any{"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest"})
		return
	}
	switch {
	case r.Method == http.MethodGet && r.URL.Path == CopilotUserPath:
		writeJSON(w, http.StatusOK, map[string]any{
			"login":                   GitHubUserLogin,
			"access_type_sku":         "plus_monthly_subscriber_quota",
			"analytics_tracking_id":   "cork0000000000000000000000000000",
			"assigned_date":           "2026-01-01T00:00:00Z",
			"can_signup_for_limited":  false,
			"chat_enabled":            true,
			"copilot_plan":            "individual_pro",
			"organization_login_list": []any{},
			"organization_list":       []any{},
			"endpoints": map[string]any{
				"api":            "https://" + CopilotAPIHost,
				"origin-tracker": "https://origin-tracker.individual.githubcopilot.com",
				"proxy":          "https://proxy.individual.githubcopilot.com",
				"telemetry":      "https://" + CopilotTelemetryHost,
			},
			"quota_reset_date": time.Now().AddDate(0, 1, 0).Format(time.DateOnly),
		})
	case r.Method == http.MethodGet && r.URL.Path == CopilotReleasesPath:
		writeJSON(w, http.StatusOK, []any{})
	default: // managed_settings, team_customizations, ...: none
		writeJSON(w, http.StatusNotFound, map[string]any{"message": "Not Found", "documentation_url": "https://docs.github.com/rest"})
	}
}

// copilotAPI serves the Copilot API: the model list and chat completions
// (streamed or not) with the canned reply. Every request must carry the
// real GitHub token as a bearer; other paths (the built-in MCP server,
// the memory feature) answer 404, which the CLI tolerates.
func (s *Server) copilotAPI(w http.ResponseWriter, r *http.Request) {
	if !s.copilotAuthorized(r.Header) {
		writeJSON(w, http.StatusUnauthorized, map[string]any{"error": map[string]any{"message": "fakeupstream: not the real credential", "code": "unauthorized"}})
		return
	}
	switch {
	case r.Method == http.MethodGet && r.URL.Path == CopilotModelsPath:
		writeJSON(w, http.StatusOK, map[string]any{"object": "list", "data": []any{copilotModel(CopilotModel)}})
	case r.Method == http.MethodPost && r.URL.Path == CopilotCompletionsPath:
		s.chatCompletions(w, r)
	default:
		writeJSON(w, http.StatusNotFound, map[string]any{"error": map[string]any{"message": "Not Found", "code": "not_found"}})
	}
}

// copilotModel is a /models entry the CLI accepts: a chat model with
// streaming and tool calls, served on /chat/completions.
func copilotModel(id string) map[string]any {
	return map[string]any{
		"id": id, "name": id, "object": "model", "vendor": "Azure OpenAI", "version": id, "preview": false,
		"model_picker_enabled": true, "is_chat_default": true, "is_chat_fallback": true,
		"capabilities": map[string]any{
			"family": id, "type": "chat", "tokenizer": "o200k_base", "object": "model_capabilities",
			"limits":   map[string]any{"max_context_window_tokens": 200000, "max_output_tokens": 16000, "max_prompt_tokens": 128000},
			"supports": map[string]any{"streaming": true, "tool_calls": true, "parallel_tool_calls": true},
		},
		"policy":              map[string]any{"state": "enabled", "terms": "fakeupstream"},
		"supported_endpoints": []string{CopilotCompletionsPath},
	}
}

// chatCompletions answers the OpenAI chat completions API with the canned
// reply: SSE chunks then [DONE] when the request streams, one JSON object
// otherwise.
func (s *Server) chatCompletions(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Model  string `json:"model"`
		Stream bool   `json:"stream"`
	}
	b, err := io.ReadAll(r.Body)
	if err != nil || json.Unmarshal(b, &req) != nil {
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": map[string]any{"message": "fakeupstream: body is not JSON"}})
		return
	}
	if req.Model == "" {
		req.Model = CopilotModel
	}
	id := s.nextID("chatcmpl")
	created := time.Now().Unix()
	usage := map[string]any{"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}
	if !req.Stream {
		writeJSON(w, http.StatusOK, map[string]any{
			"id": id, "object": "chat.completion", "created": created, "model": req.Model,
			"choices": []any{map[string]any{"index": 0, "message": map[string]any{"role": "assistant", "content": s.cfg.Reply}, "finish_reason": "stop"}},
			"usage":   usage,
		})
		return
	}
	chunk := func(delta map[string]any, finish any) map[string]any {
		return map[string]any{
			"id": id, "object": "chat.completion.chunk", "created": created, "model": req.Model,
			"choices": []any{map[string]any{"index": 0, "delta": delta, "finish_reason": finish}},
		}
	}
	var events []map[string]any
	for i, d := range chunks(s.cfg.Reply) {
		delta := map[string]any{"content": d}
		if i == 0 {
			delta["role"] = "assistant"
		}
		events = append(events, chunk(delta, nil))
	}
	last := chunk(map[string]any{}, "stop")
	last["usage"] = usage
	events = append(events, last)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	for _, ev := range events {
		data, _ := json.Marshal(ev)
		if _, err := fmt.Fprintf(w, "data: %s\n\n", data); err != nil {
			return
		}
		if err := rc.Flush(); err != nil {
			return
		}
	}
	fmt.Fprint(w, "data: [DONE]\n\n")
}
