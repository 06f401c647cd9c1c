package fakeupstream

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// Anthropic paths Claude Code calls in `claude -p` with
// CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1 (docs/AGENTS.md).
const (
	ClaudeSettingsPath     = "/api/claude_code/settings"
	ClaudePolicyLimitsPath = "/api/claude_code/policy_limits"
	MessagesPath           = "/v1/messages"
	CountTokensPath        = "/v1/messages/count_tokens"
)

// anthropic serves api.anthropic.com. Every request must carry the real
// credential, as a bearer (OAuth) or x-api-key.
func (s *Server) anthropic(w http.ResponseWriter, r *http.Request) {
	if !s.anthropicAuthorized(r.Header) {
		anthropicError(w, http.StatusUnauthorized, "authentication_error", "fakeupstream: not the real credential")
		return
	}
	switch {
	case r.URL.Path == ClaudeSettingsPath || r.URL.Path == ClaudePolicyLimitsPath:
		if s.cfg.ClaudeSettingsStatus == http.StatusOK {
			writeJSON(w, http.StatusOK, map[string]any{})
			return
		}
		anthropicError(w, s.cfg.ClaudeSettingsStatus, "not_found_error", "Not Found")
	case r.URL.Path == CountTokensPath && r.Method == http.MethodPost:
		writeJSON(w, http.StatusOK, map[string]any{"input_tokens": 12})
	case r.URL.Path == MessagesPath && r.Method == http.MethodPost:
		s.messages(w, r)
	default:
		anthropicError(w, http.StatusNotFound, "not_found_error", "Not Found")
	}
}

func (s *Server) anthropicAuthorized(h http.Header) bool {
	if s.cfg.AnthropicToken == "" {
		return false
	}
	if tok, ok := bearer(h); ok {
		return tok == s.cfg.AnthropicToken
	}
	return h.Get("x-api-key") == s.cfg.AnthropicToken
}

func anthropicError(w http.ResponseWriter, status int, typ, msg string) {
	writeJSON(w, status, map[string]any{"type": "error", "error": map[string]any{"type": typ, "message": msg}})
}

// messages answers the Messages API with the canned reply: SSE when the
// request asks for a stream, one JSON message otherwise.
func (s *Server) messages(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Model  string `json:"model"`
		Stream bool   `json:"stream"`
	}
	b, err := io.ReadAll(r.Body)
	if err != nil || json.Unmarshal(b, &req) != nil {
		anthropicError(w, http.StatusBadRequest, "invalid_request_error", "fakeupstream: body is not JSON")
		return
	}
	if req.Model == "" {
		req.Model = "claude-sonnet-4-5"
	}
	id := s.nextID("msg")
	reply := s.cfg.Reply
	usage := map[string]any{"input_tokens": 12, "output_tokens": 3, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
	if !req.Stream {
		writeJSON(w, http.StatusOK, map[string]any{
			"id": id, "type": "message", "role": "assistant", "model": req.Model,
			"content":     []any{map[string]any{"type": "text", "text": reply}},
			"stop_reason": "end_turn", "stop_sequence": nil, "usage": usage,
		})
		return
	}
	events := []map[string]any{
		{"type": "message_start", "message": map[string]any{
			"id": id, "type": "message", "role": "assistant", "model": req.Model, "content": []any{},
			"stop_reason": nil, "stop_sequence": nil,
			"usage": map[string]any{"input_tokens": 12, "output_tokens": 1, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0},
		}},
		{"type": "content_block_start", "index": 0, "content_block": map[string]any{"type": "text", "text": ""}},
		{"type": "ping"},
	}
	for _, d := range chunks(reply) {
		events = append(events, map[string]any{"type": "content_block_delta", "index": 0, "delta": map[string]any{"type": "text_delta", "text": d}})
	}
	events = append(events,
		map[string]any{"type": "content_block_stop", "index": 0},
		map[string]any{"type": "message_delta", "delta": map[string]any{"stop_reason": "end_turn", "stop_sequence": nil}, "usage": map[string]any{"output_tokens": 3}},
		map[string]any{"type": "message_stop"},
	)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("request-id", "req_"+strings.TrimPrefix(id, "msg_"))
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	for _, ev := range events {
		data, _ := json.Marshal(ev)
		if _, err := fmt.Fprintf(w, "event: %s\ndata: %s\n\n", ev["type"], data); err != nil {
			return
		}
		if err := rc.Flush(); err != nil {
			return
		}
	}
}
