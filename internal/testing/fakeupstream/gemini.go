package fakeupstream

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// What the Gemini CLI calls (docs/AGENTS.md, "Gemini CLI"): with an API key,
// generativelanguage.googleapis.com (/v1beta/models/MODEL:METHOD); signed in
// with Google, oauth2.googleapis.com/tokeninfo once, then
// cloudcode-pa.googleapis.com (/v1internal:METHOD).
const (
	// CodeAssistPrefix starts every Code Assist method's path.
	CodeAssistPrefix = "/v1internal:"
	// LoadCodeAssistPath is the sign-in's first Code Assist call.
	LoadCodeAssistPath = CodeAssistPrefix + "loadCodeAssist"
	// GoogleTokenInfoPath is where the CLI checks its cached access token.
	GoogleTokenInfoPath = "/tokeninfo"
	// GeminiStreamMethod is the method of a streamed turn, after the ':'.
	GeminiStreamMethod = "streamGenerateContent"
	// CodeAssistProject is the Code Assist project the fake assigns.
	CodeAssistProject = "cork-fake-project"
	// GoogleAccount is the address the fake's tokeninfo reports.
	GoogleAccount = "dev@example.com"
)

// geminiRouterJSON answers the CLI's JSON-mode requests: its model router
// asks the model to classify the prompt, in one of two schemas.
const geminiRouterJSON = `{"reasoning":"a trivial request","model_choice":"flash","complexity_reasoning":"a trivial request","complexity_score":5}`

// geminiAPI serves generativelanguage.googleapis.com. Every request must
// carry the real API key in x-goog-api-key; Google answers any other key
// with 400 API_KEY_INVALID.
func (s *Server) geminiAPI(w http.ResponseWriter, r *http.Request) {
	if s.cfg.GeminiAPIKey == "" || r.Header.Get("X-Goog-Api-Key") != s.cfg.GeminiAPIKey {
		googleError(w, http.StatusBadRequest, "INVALID_ARGUMENT", "fakeupstream: API key not valid (not the real key)")
		return
	}
	model, method, ok := strings.Cut(strings.TrimPrefix(r.URL.Path, "/v1beta/models/"), ":")
	if !ok || r.Method != http.MethodPost || !strings.HasPrefix(r.URL.Path, "/v1beta/models/") {
		googleError(w, http.StatusNotFound, "NOT_FOUND", "fakeupstream: not found")
		return
	}
	s.generate(w, r, model, method, false)
}

// codeAssist serves cloudcode-pa.googleapis.com. Every request must carry
// the real access token as a bearer.
func (s *Server) codeAssist(w http.ResponseWriter, r *http.Request) {
	if tok, ok := bearer(r.Header); !ok || s.cfg.GoogleAccessToken == "" || tok != s.cfg.GoogleAccessToken {
		googleError(w, http.StatusUnauthorized, "UNAUTHENTICATED", "fakeupstream: Request had invalid authentication credentials (not the real token)")
		return
	}
	method, ok := strings.CutPrefix(r.URL.Path, CodeAssistPrefix)
	if !ok {
		googleError(w, http.StatusNotFound, "NOT_FOUND", "fakeupstream: not found")
		return
	}
	switch method {
	case "loadCodeAssist":
		tier := map[string]any{"id": "free-tier", "name": "Gemini Code Assist for individuals", "isDefault": true, "userDefinedCloudaicompanionProject": false}
		writeJSON(w, http.StatusOK, map[string]any{"currentTier": tier, "allowedTiers": []any{tier}, "cloudaicompanionProject": CodeAssistProject})
	case "onboardUser":
		writeJSON(w, http.StatusOK, map[string]any{"name": "operations/cork", "done": true,
			"response": map[string]any{"cloudaicompanionProject": map[string]any{"id": CodeAssistProject, "name": CodeAssistProject}}})
	case "retrieveUserQuota":
		writeJSON(w, http.StatusOK, map[string]any{"buckets": []any{}})
	case "listExperiments":
		writeJSON(w, http.StatusOK, map[string]any{"experimentIds": []any{}, "flags": []any{}})
	case "countTokens":
		writeJSON(w, http.StatusOK, map[string]any{"totalTokens": 12})
	case "fetchAdminControls", "getCodeAssistGlobalUserSetting", "setCodeAssistGlobalUserSetting",
		"recordConversationOffered", "recordConversationInteraction", "recordCodeAssistMetrics":
		writeJSON(w, http.StatusOK, map[string]any{})
	case "generateContent", GeminiStreamMethod:
		s.generate(w, r, "", method, true)
	default:
		googleError(w, http.StatusNotFound, "NOT_FOUND", "fakeupstream: not found")
	}
}

// googleOAuth serves oauth2.googleapis.com: /tokeninfo for the real token
// only; /token and everything else is out of bounds for a sandbox.
func (s *Server) googleOAuth(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != GoogleTokenInfoPath {
		writeJSON(w, http.StatusForbidden, map[string]any{"error": "fakeupstream: token endpoints are out of bounds for a sandbox"})
		return
	}
	if tok, ok := bearer(r.Header); !ok || s.cfg.GoogleAccessToken == "" || tok != s.cfg.GoogleAccessToken {
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": "invalid_token", "error_description": "fakeupstream: not the real token"})
		return
	}
	const client = "681255809395-oo8ft2oprdrnp9e3aqf6av3hmdib135j.apps.googleusercontent.com" // the CLI's OAuth client
	writeJSON(w, http.StatusOK, map[string]any{
		"azp": client, "aud": client, "sub": "104220000000000000042",
		"scope":       "https://www.googleapis.com/auth/cloud-platform https://www.googleapis.com/auth/userinfo.email https://www.googleapis.com/auth/userinfo.profile openid",
		"exp":         "1999999999",
		"expires_in":  3599,
		"email":       GoogleAccount,
		"access_type": "offline", "email_verified": "true",
	})
}

// generate answers generateContent (one JSON response) and
// streamGenerateContent (SSE with ?alt=sse, else a JSON array) with the
// canned reply, or with geminiRouterJSON when the request asks for JSON.
// Code Assist (wrapped) names the model in the body and nests the request
// and each response under "request" and "response".
func (s *Server) generate(w http.ResponseWriter, r *http.Request, model, method string, wrapped bool) {
	var body struct {
		Model            string `json:"model"`
		GenerationConfig *struct {
			ResponseMimeType string `json:"responseMimeType"`
		} `json:"generationConfig"`
		Request *struct {
			GenerationConfig *struct {
				ResponseMimeType string `json:"responseMimeType"`
			} `json:"generationConfig"`
		} `json:"request"`
	}
	b, err := io.ReadAll(r.Body)
	if err != nil || json.Unmarshal(b, &body) != nil {
		googleError(w, http.StatusBadRequest, "INVALID_ARGUMENT", "fakeupstream: body is not JSON")
		return
	}
	gc := body.GenerationConfig
	if wrapped {
		model, gc = body.Model, nil
		if body.Request != nil {
			gc = body.Request.GenerationConfig
		}
	}
	reply := s.cfg.Reply
	if gc != nil && gc.ResponseMimeType == "application/json" {
		reply = geminiRouterJSON
	}
	if model == "" {
		model = "gemini-2.5-pro"
	}
	id := s.nextID("resp")
	wrap := func(v map[string]any) any {
		if wrapped {
			return map[string]any{"response": v, "traceId": id}
		}
		return v
	}
	parts := chunks(reply)
	response := func(i int) any {
		cand := map[string]any{"content": map[string]any{"role": "model", "parts": []any{map[string]any{"text": parts[i]}}}, "index": 0}
		v := map[string]any{"candidates": []any{cand}, "modelVersion": model, "responseId": id}
		if i == len(parts)-1 {
			cand["finishReason"] = "STOP"
			v["usageMetadata"] = map[string]any{"promptTokenCount": 12, "candidatesTokenCount": 3, "totalTokenCount": 15}
		}
		return wrap(v)
	}
	switch {
	case method == "generateContent":
		parts = []string{reply}
		writeJSON(w, http.StatusOK, response(0))
	case method == GeminiStreamMethod && r.URL.Query().Get("alt") == "sse":
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		rc := http.NewResponseController(w)
		for i := range parts {
			data, _ := json.Marshal(response(i))
			if _, err := fmt.Fprintf(w, "data: %s\r\n\r\n", data); err != nil {
				return
			}
			if err := rc.Flush(); err != nil {
				return
			}
		}
	case method == GeminiStreamMethod:
		all := make([]any, len(parts))
		for i := range parts {
			all[i] = response(i)
		}
		writeJSON(w, http.StatusOK, all)
	case method == "countTokens" && !wrapped:
		writeJSON(w, http.StatusOK, map[string]any{"totalTokens": 12})
	default:
		googleError(w, http.StatusNotFound, "NOT_FOUND", "fakeupstream: not found")
	}
}

// googleError writes Google's JSON error shape.
func googleError(w http.ResponseWriter, code int, status, msg string) {
	writeJSON(w, code, map[string]any{"error": map[string]any{"code": code, "message": msg, "status": status}})
}
