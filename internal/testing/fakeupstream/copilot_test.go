package fakeupstream

import (
	"bufio"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

func TestCopilotAuth(t *testing.T) {
	const real = "gho_REALcopilot00000000000000000000000"
	_, c := start(t, Config{CopilotToken: real, GitHubToken: "gho_REALgh"})
	for _, tc := range []struct {
		name, url, auth string
		want            int
	}{
		{"user, none", "https://api.github.com" + CopilotUserPath, "", http.StatusUnauthorized},
		{"user, placeholder", "https://api.github.com" + CopilotUserPath, "Bearer gho_placeholder", http.StatusUnauthorized},
		{"user, gh's token", "https://api.github.com" + CopilotUserPath, "token gho_REALgh", http.StatusUnauthorized},
		{"user, bearer", "https://api.github.com" + CopilotUserPath, "Bearer " + real, http.StatusOK},
		{"user, lower-case bearer", "https://api.github.com" + CopilotUserPath, "bearer " + real, http.StatusOK},
		{"releases, token", "https://api.github.com" + CopilotReleasesPath, "token " + real, http.StatusOK},
		{"managed settings", "https://api.github.com/copilot_internal/managed_settings", "Bearer " + real, http.StatusNotFound},
		{"token exchange", "https://api.github.com" + CopilotTokenPath, "token " + real, http.StatusForbidden},
		{"gh's API untouched", "https://api.github.com/user", "token gho_REALgh", http.StatusOK},
		{"models, placeholder", "https://" + CopilotAPIHost + CopilotModelsPath, "Bearer gho_placeholder", http.StatusUnauthorized},
		{"models", "https://" + CopilotAPIHost + CopilotModelsPath, "Bearer " + real, http.StatusOK},
		{"mcp", "https://" + CopilotAPIHost + "/mcp/readonly", "Bearer " + real, http.StatusNotFound},
		{"telemetry", "https://" + CopilotTelemetryHost + "/telemetry", "", http.StatusNoContent},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := get(t, c, tc.url, map[string]string{"Authorization": tc.auth})
			if resp.StatusCode != tc.want {
				t.Fatalf("GET %s with %q = %d, want %d", tc.url, tc.auth, resp.StatusCode, tc.want)
			}
			if tc.name == "user, bearer" && !strings.Contains(body, `"api":"https://`+CopilotAPIHost+`"`) {
				t.Errorf("GET %s = %s, want endpoints.api naming %s", CopilotUserPath, body, CopilotAPIHost)
			}
			if tc.name == "models" && !strings.Contains(body, `"id":"`+CopilotModel+`"`) {
				t.Errorf("GET /models = %s, want %s", body, CopilotModel)
			}
		})
	}
}

func TestCopilotChatCompletions(t *testing.T) {
	const real = "github_pat_REALcopilot"
	s, c := start(t, Config{CopilotToken: real})
	post := func(body string) (*http.Response, []string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, "https://"+CopilotAPIHost+CopilotCompletionsPath, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+real)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var lines []string
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if sc.Text() != "" {
				lines = append(lines, sc.Text())
			}
		}
		return resp, lines
	}

	resp, lines := post(`{"model":"gpt-5-mini","stream":true,"messages":[{"role":"user","content":"say ok"}]}`)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("streamed POST = %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if len(lines) < 3 || lines[len(lines)-1] != "data: [DONE]" {
		t.Fatalf("stream = %q, want chunks then [DONE]", lines)
	}
	var text strings.Builder
	finish := ""
	for _, l := range lines[:len(lines)-1] {
		var ch struct {
			Object  string
			Choices []struct {
				Delta        struct{ Content string }
				FinishReason *string `json:"finish_reason"`
			}
		}
		if err := json.Unmarshal([]byte(strings.TrimPrefix(l, "data: ")), &ch); err != nil || ch.Object != "chat.completion.chunk" || len(ch.Choices) != 1 {
			t.Fatalf("chunk %q: %v", l, err)
		}
		text.WriteString(ch.Choices[0].Delta.Content)
		if f := ch.Choices[0].FinishReason; f != nil {
			finish = *f
		}
	}
	if text.String() != DefaultReply || finish != "stop" {
		t.Errorf("streamed reply = %q (finish %q), want %q (stop)", text.String(), finish, DefaultReply)
	}

	resp, lines = post(`{"model":"gpt-5-mini","messages":[]}`)
	if resp.StatusCode != http.StatusOK || len(lines) != 1 || !strings.Contains(lines[0], `"content":"`+DefaultReply+`"`) {
		t.Errorf("POST without stream = %d %q", resp.StatusCode, lines)
	}
	if resp, _ := post(`not json`); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("POST with a bad body = %d, want 400", resp.StatusCode)
	}
	if n := len(s.Requests(CopilotAPIHost)); n != 3 {
		t.Errorf("recorded %d requests, want 3", n)
	}
}
