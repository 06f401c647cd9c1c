package fakeupstream

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"strings"
	"time"

	"github.com/coder/websocket"
)

// ResponsesPath is Codex's Responses endpoint in ChatGPT mode: a
// WebSocket (GET + upgrade) by default, SSE (POST) as the fallback.
const ResponsesPath = "/backend-api/codex/responses"

// AccountsCheckPath is Codex's workspace routing discovery, required
// before the first turn.
const AccountsCheckPath = "/backend-api/wham/accounts/check"

// wsReadLimit: Codex's response.create frames exceed coder/websocket's
// default 32 KiB (docs/AGENTS.md).
const wsReadLimit = 16 << 20

// defaultModel is reported when the request's model cannot be read (a
// zstd-compressed SSE body).
const defaultModel = "gpt-5-codex"

var discardLog = log.New(io.Discard, "", 0)

func newJSONEncoder(w io.Writer) *json.Encoder {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc
}

// chatGPT serves chatgpt.com. Every /backend-api request must carry the real
// access token: a placeholder means the proxy did not inject.
func (s *Server) chatGPT(w http.ResponseWriter, r *http.Request, rec *Request) {
	if !strings.HasPrefix(r.URL.Path, "/backend-api/") {
		writeJSON(w, http.StatusNotFound, map[string]any{"detail": "Not Found"})
		return
	}
	if tok, ok := bearer(r.Header); !ok || s.cfg.ChatGPTToken == "" || tok != s.cfg.ChatGPTToken {
		writeJSON(w, http.StatusUnauthorized, map[string]any{"detail": "fakeupstream: not the real access token"})
		return
	}
	switch r.URL.Path {
	case AccountsCheckPath:
		s.accountsCheck(w, r)
	case ResponsesPath:
		switch {
		case r.Method == http.MethodGet && strings.EqualFold(r.Header.Get("Upgrade"), "websocket"):
			if s.cfg.WebSocketStatus != 0 {
				s.update(func() { rec.WebSocket = true })
				writeJSON(w, s.cfg.WebSocketStatus, map[string]any{"detail": "fakeupstream: WebSocket refused"})
				return
			}
			s.responsesWS(w, r, rec)
		case r.Method == http.MethodPost:
			s.responsesSSE(w, r)
		default:
			writeJSON(w, http.StatusMethodNotAllowed, map[string]any{"detail": "Method Not Allowed"})
		}
	default:
		// /codex/models, /ps/plugins/..., /wham/settings/user, ...: Codex
		// copes with 404 for every other startup call.
		writeJSON(w, http.StatusNotFound, map[string]any{"detail": "Not Found"})
	}
}

// accountsCheck answers with one personal workspace, the one the client
// asks about (ChatGPT-Account-ID), with no routing constraint.
func (s *Server) accountsCheck(w http.ResponseWriter, r *http.Request) {
	id := r.Header.Get("ChatGPT-Account-ID")
	if id == "" {
		writeJSON(w, http.StatusBadRequest, map[string]any{"detail": "fakeupstream: no ChatGPT-Account-ID"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"accounts": []map[string]any{{
			"id":                       id,
			"plan_type":                "plus",
			"structure":                "personal",
			"workspace_backend_origin": "NO_CONSTRAINT",
			"account_routing_override": "NO_CONSTRAINT",
		}},
		"account_ordering":   []string{id},
		"default_account_id": id,
	})
}

// responsesWS serves the Responses API over a WebSocket: each
// response.create message gets the event stream of one response, each
// event a text message.
func (s *Server) responsesWS(w http.ResponseWriter, r *http.Request, rec *Request) {
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{
		// Codex offers permessage-deflate; accept it like a real server
		// would, so compressed frames cross the proxy too.
		CompressionMode: websocket.CompressionNoContextTakeover,
	})
	if err != nil {
		return // Accept has answered
	}
	s.update(func() { rec.WebSocket, rec.Status = true, http.StatusSwitchingProtocols })
	defer c.CloseNow()
	c.SetReadLimit(wsReadLimit)
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Minute)
	defer cancel()
	for {
		typ, data, err := c.Read(ctx)
		if err != nil {
			return
		}
		if typ != websocket.MessageText {
			continue
		}
		var msg struct {
			Type     string `json:"type"`
			Model    string `json:"model"`
			Generate *bool  `json:"generate"`
		}
		_ = json.Unmarshal(data, &msg)
		generate := msg.Generate == nil || *msg.Generate
		s.update(func() {
			rec.Messages = append(rec.Messages, WSMessage{Type: msg.Type, Generate: generate, Len: len(data)})
		})
		if msg.Type != "response.create" {
			continue
		}
		for _, ev := range s.responseEvents(msg.Model, generate) {
			b, _ := json.Marshal(ev)
			if err := c.Write(ctx, websocket.MessageText, b); err != nil {
				return
			}
		}
	}
}

// responsesSSE serves one response as server-sent events. The body may be
// zstd-compressed (Content-Encoding: zstd); the model is read only from a
// plain JSON body.
func (s *Server) responsesSSE(w http.ResponseWriter, r *http.Request) {
	model := ""
	if r.Header.Get("Content-Encoding") == "" {
		var body struct {
			Model string `json:"model"`
		}
		if b, err := io.ReadAll(r.Body); err == nil {
			_ = json.Unmarshal(b, &body)
		}
		model = body.Model
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	for _, ev := range s.responseEvents(model, true) {
		b, _ := json.Marshal(ev)
		if _, err := fmt.Fprintf(w, "event: %s\ndata: %s\n\n", ev["type"], b); err != nil {
			return
		}
		if err := rc.Flush(); err != nil {
			return
		}
	}
}

// responseEvents is the Responses API event stream of one response: for a
// warm-up (generate false) only created / in_progress / completed, else
// an assistant message streamed as output_text deltas.
func (s *Server) responseEvents(model string, generate bool) []map[string]any {
	if model == "" {
		model = defaultModel
	}
	id := s.nextID("resp")
	now := time.Now().Unix()
	response := func(status string, output []any, usage map[string]any) map[string]any {
		m := map[string]any{
			"id": id, "object": "response", "created_at": now, "status": status,
			"model": model, "output": output,
		}
		if usage != nil {
			m["usage"] = usage
		}
		return m
	}
	usage := map[string]any{
		"input_tokens": 12, "input_tokens_details": map[string]any{"cached_tokens": 0},
		"output_tokens": 3, "output_tokens_details": map[string]any{"reasoning_tokens": 0},
		"total_tokens": 15,
	}
	events := []map[string]any{
		{"type": "response.created", "sequence_number": 0, "response": response("in_progress", []any{}, nil)},
		{"type": "response.in_progress", "sequence_number": 1, "response": response("in_progress", []any{}, nil)},
	}
	if !generate {
		return append(events, map[string]any{"type": "response.completed", "sequence_number": 2, "response": response("completed", []any{}, usage)})
	}
	msgID := s.nextID("msg")
	reply := s.cfg.Reply
	part := func(text string) map[string]any {
		return map[string]any{"type": "output_text", "text": text, "annotations": []any{}}
	}
	item := func(status string, content []any) map[string]any {
		return map[string]any{"type": "message", "id": msgID, "status": status, "role": "assistant", "content": content}
	}
	done := item("completed", []any{part(reply)})
	events = append(events,
		map[string]any{"type": "response.output_item.added", "output_index": 0, "item": item("in_progress", []any{})},
		map[string]any{"type": "response.content_part.added", "item_id": msgID, "output_index": 0, "content_index": 0, "part": part("")},
	)
	for _, d := range chunks(reply) {
		events = append(events, map[string]any{"type": "response.output_text.delta", "item_id": msgID, "output_index": 0, "content_index": 0, "delta": d})
	}
	events = append(events,
		map[string]any{"type": "response.output_text.done", "item_id": msgID, "output_index": 0, "content_index": 0, "text": reply},
		map[string]any{"type": "response.content_part.done", "item_id": msgID, "output_index": 0, "content_index": 0, "part": part(reply)},
		map[string]any{"type": "response.output_item.done", "output_index": 0, "item": done},
		map[string]any{"type": "response.completed", "response": response("completed", []any{done}, usage)},
	)
	for i, ev := range events {
		ev["sequence_number"] = i
	}
	return events
}

// chunks splits s after each '-' and space, so a reply streams as several
// deltas.
func chunks(s string) []string {
	var out []string
	start := 0
	for i := 0; i < len(s); i++ {
		if s[i] == '-' || s[i] == ' ' {
			out = append(out, s[start:i+1])
			start = i + 1
		}
	}
	if start < len(s) {
		out = append(out, s[start:])
	}
	return out
}
