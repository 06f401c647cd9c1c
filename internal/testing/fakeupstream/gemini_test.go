package fakeupstream

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
)

const (
	realGeminiKey   = "AIzaSyREALKEY0123456789abcdefghijklmno"
	realGoogleToken = "ya29.a0REALTOKEN"
)

// post sends body to url with headers h and returns the status and body.
func post(t *testing.T, c *http.Client, url, body string, h map[string]string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	for k, v := range h {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("POST %s: read body: %v", url, err)
	}
	return resp.StatusCode, string(b)
}

// sseData returns the JSON payloads of an SSE body's data lines.
func sseData(t *testing.T, body string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(body, "\n") {
		if d, ok := strings.CutPrefix(strings.TrimRight(line, "\r"), "data: "); ok {
			var m map[string]any
			if err := json.Unmarshal([]byte(d), &m); err != nil {
				t.Fatalf("SSE data %q: %v", d, err)
			}
			out = append(out, m)
		}
	}
	return out
}

// candidateText joins the text of a response's first candidate.
func candidateText(m map[string]any) string {
	cands, _ := m["candidates"].([]any)
	if len(cands) == 0 {
		return ""
	}
	content, _ := cands[0].(map[string]any)["content"].(map[string]any)
	parts, _ := content["parts"].([]any)
	var b strings.Builder
	for _, p := range parts {
		s, _ := p.(map[string]any)["text"].(string)
		b.WriteString(s)
	}
	return b.String()
}

func TestGeminiAPI(t *testing.T) {
	s, c := start(t, Config{GeminiAPIKey: realGeminiKey, Reply: "hello gemini-world"})
	base := "https://" + GeminiAPIHost + "/v1beta/models/gemini-2.5-pro:"
	turn := `{"contents":[{"role":"user","parts":[{"text":"say ok"}]}]}`

	for _, key := range []string{"", "AIzaSyPLACEHOLDER"} {
		if code, _ := post(t, c, base+"streamGenerateContent?alt=sse", turn, map[string]string{"X-Goog-Api-Key": key}); code != http.StatusBadRequest {
			t.Errorf("stream with key %q: status %d, want 400", key, code)
		}
	}
	code, body := post(t, c, base+"streamGenerateContent?alt=sse", turn, map[string]string{"X-Goog-Api-Key": realGeminiKey})
	if code != http.StatusOK {
		t.Fatalf("stream with the real key: status %d, body %s", code, body)
	}
	events := sseData(t, body)
	var text strings.Builder
	for _, e := range events {
		text.WriteString(candidateText(e))
	}
	if text.String() != "hello gemini-world" || len(events) < 2 {
		t.Errorf("stream text = %q in %d events, want the reply in several", text.String(), len(events))
	}
	last, _ := events[len(events)-1]["candidates"].([]any)[0].(map[string]any)
	if last["finishReason"] != "STOP" {
		t.Errorf("last event's finishReason = %v, want STOP", last["finishReason"])
	}

	router := `{"contents":[],"generationConfig":{"responseMimeType":"application/json"}}`
	code, body = post(t, c, base+"generateContent", router, map[string]string{"X-Goog-Api-Key": realGeminiKey})
	var m map[string]any
	if code != http.StatusOK || json.Unmarshal([]byte(body), &m) != nil {
		t.Fatalf("generateContent: status %d, body %s", code, body)
	}
	var route map[string]any
	if err := json.Unmarshal([]byte(candidateText(m)), &route); err != nil || route["model_choice"] != "flash" || route["complexity_score"] == nil {
		t.Errorf("JSON-mode generateContent text = %q, want the router's JSON", candidateText(m))
	}
	if got := len(s.Requests(GeminiAPIHost)); got != 4 {
		t.Errorf("recorded %d requests, want 4", got)
	}
}

func TestCodeAssist(t *testing.T) {
	_, c := start(t, Config{GoogleAccessToken: realGoogleToken})
	auth := map[string]string{"Authorization": "Bearer " + realGoogleToken}
	base := "https://" + CodeAssistHost + CodeAssistPrefix

	if code, _ := post(t, c, base+"loadCodeAssist", `{}`, map[string]string{"Authorization": "Bearer ya29.placeholder"}); code != http.StatusUnauthorized {
		t.Errorf("loadCodeAssist with a placeholder: status %d, want 401", code)
	}
	code, body := post(t, c, base+"loadCodeAssist", `{"metadata":{}}`, auth)
	if code != http.StatusOK || !strings.Contains(body, `"cloudaicompanionProject":"`+CodeAssistProject+`"`) || !strings.Contains(body, `"currentTier"`) {
		t.Errorf("loadCodeAssist: status %d, body %s; want a tier and the project", code, body)
	}
	for _, m := range []string{"retrieveUserQuota", "listExperiments", "onboardUser", "countTokens"} {
		if code, body := post(t, c, base+m, `{}`, auth); code != http.StatusOK {
			t.Errorf("%s: status %d, body %s", m, code, body)
		}
	}
	if code, _ := post(t, c, base+"nosuchMethod", `{}`, auth); code != http.StatusNotFound {
		t.Errorf("nosuchMethod: status %d, want 404", code)
	}

	turn := `{"model":"gemini-2.5-pro","project":"p","request":{"contents":[]}}`
	code, body = post(t, c, base+"streamGenerateContent?alt=sse", turn, auth)
	if code != http.StatusOK {
		t.Fatalf("streamGenerateContent: status %d, body %s", code, body)
	}
	var text strings.Builder
	for _, e := range sseData(t, body) {
		resp, _ := e["response"].(map[string]any)
		text.WriteString(candidateText(resp))
	}
	if text.String() != DefaultReply {
		t.Errorf("stream text = %q, want %q (each event under \"response\")", text.String(), DefaultReply)
	}
	router := `{"model":"m","request":{"generationConfig":{"responseMimeType":"application/json"}}}`
	_, body = post(t, c, base+"generateContent", router, auth)
	var m struct {
		Response map[string]any `json:"response"`
	}
	json.Unmarshal([]byte(body), &m)
	if got := candidateText(m.Response); got != geminiRouterJSON {
		t.Errorf("JSON-mode generateContent text = %q, want the router's JSON", got)
	}
}

func TestGoogleOAuth(t *testing.T) {
	s, c := start(t, Config{GoogleAccessToken: realGoogleToken})
	base := "https://" + GoogleOAuthHost
	if code, _ := post(t, c, base+GoogleTokenInfoPath, "", map[string]string{"Authorization": "Bearer ya29.placeholder"}); code != http.StatusBadRequest {
		t.Errorf("tokeninfo with a placeholder: status %d, want 400", code)
	}
	code, body := post(t, c, base+GoogleTokenInfoPath, "", map[string]string{"Authorization": "Bearer " + realGoogleToken})
	if code != http.StatusOK || !strings.Contains(body, `"expires_in":3599`) || !strings.Contains(body, GoogleAccount) {
		t.Errorf("tokeninfo: status %d, body %s", code, body)
	}
	code, body = post(t, c, base+"/token", "grant_type=refresh_token&refresh_token=1//0x", map[string]string{"Content-Type": "application/x-www-form-urlencoded"})
	if code != http.StatusForbidden || strings.Contains(body, "access_token") {
		t.Errorf("/token: status %d, body %s; want 403 and no token", code, body)
	}
	if got := s.Requests(GoogleOAuthHost); len(got) != 3 || got[2].Path != "/token" {
		t.Errorf("recorded %d requests, want 3 ending with /token", len(got))
	}
}
