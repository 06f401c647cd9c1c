package fakeupstream

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

const (
	realChatGPT   = "real-chatgpt-token"
	realAnthropic = "sk-ant-oat01-real"
)

func start(t *testing.T, cfg Config) (*Server, *http.Client) {
	t.Helper()
	s, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	dialer := &net.Dialer{Timeout: 5 * time.Second}
	client := &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: s.Roots()},
			// Every fake host is the one listener, as through cork's Resolve.
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return dialer.DialContext(ctx, network, s.Addr())
			},
		},
	}
	return s, client
}

func get(t *testing.T, c *http.Client, url string, h map[string]string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	for k, v := range h {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		b.WriteString(sc.Text() + "\n")
	}
	return resp, b.String()
}

func TestChatGPTAuth(t *testing.T) {
	s, c := start(t, Config{ChatGPTToken: realChatGPT})
	for _, tc := range []struct {
		name, auth string
		want       int
	}{
		{"none", "", http.StatusUnauthorized},
		{"placeholder", "Bearer placeholder", http.StatusUnauthorized},
		{"real", "Bearer " + realChatGPT, http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := get(t, c, "https://chatgpt.com"+AccountsCheckPath, map[string]string{"Authorization": tc.auth, "ChatGPT-Account-ID": "acct-1"})
			if resp.StatusCode != tc.want {
				t.Fatalf("accounts/check with %s = %d, want %d", tc.name, resp.StatusCode, tc.want)
			}
			if tc.want != http.StatusOK {
				return
			}
			var got struct {
				Accounts []struct {
					ID                     string `json:"id"`
					WorkspaceBackendOrigin string `json:"workspace_backend_origin"`
					AccountRoutingOverride string `json:"account_routing_override"`
				} `json:"accounts"`
				DefaultAccountID string `json:"default_account_id"`
			}
			if err := json.Unmarshal([]byte(body), &got); err != nil {
				t.Fatal(err)
			}
			if len(got.Accounts) != 1 || got.Accounts[0].ID != "acct-1" || got.DefaultAccountID != "acct-1" ||
				got.Accounts[0].AccountRoutingOverride != "NO_CONSTRAINT" || got.Accounts[0].WorkspaceBackendOrigin == "" {
				t.Errorf("accounts/check = %s", body)
			}
		})
	}
	reqs := s.Requests(ChatGPTHost)
	if len(reqs) != 3 || reqs[2].Header.Get("Authorization") != "Bearer "+realChatGPT || reqs[0].Status != http.StatusUnauthorized {
		t.Errorf("recorded %d requests: %s", len(reqs), s.Summary())
	}
	if resp, _ := get(t, c, "https://chatgpt.com/backend-api/codex/models", map[string]string{"Authorization": "Bearer " + realChatGPT}); resp.StatusCode != http.StatusNotFound {
		t.Errorf("models = %d, want 404", resp.StatusCode)
	}
}

func TestResponsesWebSocket(t *testing.T) {
	s, c := start(t, Config{ChatGPTToken: realChatGPT})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, resp, err := websocket.Dial(ctx, "wss://chatgpt.com"+ResponsesPath, &websocket.DialOptions{HTTPClient: c}); err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("dial without the token: err %v, want a 401", err)
	}
	ws, _, err := websocket.Dial(ctx, "wss://chatgpt.com"+ResponsesPath, &websocket.DialOptions{
		HTTPClient:      c,
		HTTPHeader:      http.Header{"Authorization": {"Bearer " + realChatGPT}},
		CompressionMode: websocket.CompressionContextTakeover,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	ws.SetReadLimit(1 << 20)
	turn := func(msg string) (types []string, text string) {
		if err := ws.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		for {
			_, data, err := ws.Read(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var ev struct {
				Type  string `json:"type"`
				Delta string `json:"delta"`
			}
			json.Unmarshal(data, &ev)
			types = append(types, ev.Type)
			text += ev.Delta
			if ev.Type == "response.completed" {
				return types, text
			}
		}
	}
	// A big frame, as Codex sends (> 32 KiB).
	pad := strings.Repeat("x", 64<<10)
	types, _ := turn(`{"type":"response.create","generate":false,"instructions":"` + pad + `"}`)
	if strings.Join(types, ",") != "response.created,response.in_progress,response.completed" {
		t.Errorf("warm-up events = %v", types)
	}
	types, text := turn(`{"type":"response.create","model":"m","input":[]}`)
	if text != DefaultReply || !strings.Contains(strings.Join(types, ","), "response.output_item.done") {
		t.Errorf("turn: events %v, text %q", types, text)
	}
	ws.Close(websocket.StatusNormalClosure, "")
	reqs := s.Requests(ChatGPTHost)
	last := reqs[len(reqs)-1]
	if !last.WebSocket || last.Status != http.StatusSwitchingProtocols || len(last.Messages) != 2 || last.Messages[0].Generate || !last.Messages[1].Generate {
		t.Errorf("recorded: %s", s.Summary())
	}
}

func TestResponsesSSEAndRefusedUpgrade(t *testing.T) {
	_, c := start(t, Config{ChatGPTToken: realChatGPT, WebSocketStatus: http.StatusUpgradeRequired})
	req, _ := http.NewRequest(http.MethodPost, "https://chatgpt.com"+ResponsesPath, strings.NewReader(`{"model":"m"}`))
	req.Header.Set("Authorization", "Bearer "+realChatGPT)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != http.StatusOK || ct != "text/event-stream" {
		t.Fatalf("POST responses = %d %s", resp.StatusCode, ct)
	}
	var text string
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			var ev struct {
				Type  string `json:"type"`
				Delta string `json:"delta"`
			}
			json.Unmarshal([]byte(d), &ev)
			text += ev.Delta
		}
	}
	if text != DefaultReply {
		t.Errorf("SSE text = %q", text)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, r, err := websocket.Dial(ctx, "wss://chatgpt.com"+ResponsesPath, &websocket.DialOptions{HTTPClient: c, HTTPHeader: http.Header{"Authorization": {"Bearer " + realChatGPT}}})
	if err == nil || r == nil || r.StatusCode != http.StatusUpgradeRequired {
		t.Errorf("refused upgrade: err %v, want 426", err)
	}
}

func TestAnthropic(t *testing.T) {
	s, c := start(t, Config{AnthropicToken: realAnthropic})
	post := func(h map[string]string, body string) (*http.Response, string) {
		req, _ := http.NewRequest(http.MethodPost, "https://api.anthropic.com/v1/messages?beta=true", strings.NewReader(body))
		for k, v := range h {
			req.Header.Set(k, v)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b strings.Builder
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			b.WriteString(sc.Text() + "\n")
		}
		return resp, b.String()
	}
	if resp, _ := post(map[string]string{"Authorization": "Bearer sk-ant-oat01-placeholder"}, `{}`); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("placeholder bearer = %d, want 401", resp.StatusCode)
	}
	resp, body := post(map[string]string{"x-api-key": realAnthropic}, `{"model":"m","stream":false}`)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `"text":"`+DefaultReply+`"`) {
		t.Errorf("x-api-key, no stream = %d %s", resp.StatusCode, body)
	}
	resp, body = post(map[string]string{"Authorization": "Bearer " + realAnthropic}, `{"model":"m","stream":true}`)
	var events []string
	for _, line := range strings.Split(body, "\n") {
		if e, ok := strings.CutPrefix(line, "event: "); ok {
			events = append(events, e)
		}
	}
	want := "message_start,content_block_start,ping,content_block_delta,content_block_delta,content_block_delta,content_block_stop,message_delta,message_stop"
	if resp.StatusCode != http.StatusOK || strings.Join(events, ",") != want {
		t.Errorf("stream = %d, events %v, want %s", resp.StatusCode, events, want)
	}
	if resp, _ := get(t, c, "https://api.anthropic.com"+ClaudeSettingsPath, map[string]string{"Authorization": "Bearer " + realAnthropic}); resp.StatusCode != http.StatusNotFound {
		t.Errorf("settings = %d, want 404", resp.StatusCode)
	}
	if resp, _ := get(t, c, "https://auth.openai.com/oauth/token", nil); resp.StatusCode != http.StatusForbidden {
		t.Errorf("auth.openai.com = %d, want 403", resp.StatusCode)
	}
	if got := s.Requests(OpenAIAuthHost); len(got) != 1 {
		t.Errorf("auth.openai.com recorded %d requests, want 1", len(got))
	}
}

func TestListen(t *testing.T) {
	for _, tc := range []struct {
		name, listen, wantHost string
	}{
		{"default", "", "127.0.0.1"},
		{"given", "127.0.0.2:0", "127.0.0.2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, c := start(t, Config{ChatGPTToken: realChatGPT, Listen: tc.listen})
			host, _, err := net.SplitHostPort(s.Addr())
			if err != nil || host != tc.wantHost {
				t.Fatalf("Start(Listen: %q).Addr() = %q, want host %s", tc.listen, s.Addr(), tc.wantHost)
			}
			for k, v := range s.Resolve() {
				if v != s.Addr() {
					t.Errorf("Resolve()[%q] = %q, want %q", k, v, s.Addr())
				}
			}
			if resp, _ := get(t, c, "https://chatgpt.com"+AccountsCheckPath, map[string]string{"Authorization": "Bearer " + realChatGPT, "ChatGPT-Account-ID": "acct-1"}); resp.StatusCode != http.StatusOK {
				t.Errorf("accounts/check on %s = %d, want 200", s.Addr(), resp.StatusCode)
			}
		})
	}
	if _, err := Start(Config{Listen: "256.0.0.1:0"}); err == nil || !strings.Contains(err.Error(), "256.0.0.1:0") {
		t.Errorf("Start(Listen: 256.0.0.1:0) = %v, want an error naming the address", err)
	}
}

func TestGitHubAPI(t *testing.T) {
	const real = "gho_REALfakeupstream0000000000000000000"
	s, c := start(t, Config{GitHubToken: real})
	post := func(auth, body string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, "https://api.github.com/graphql", strings.NewReader(body))
		req.Header.Set("Authorization", auth)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b strings.Builder
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			b.WriteString(sc.Text())
		}
		return resp, b.String()
	}
	for _, auth := range []string{"", "token placeholder", "Bearer " + real, "token " + real + "x"} {
		if resp, _ := get(t, c, "https://api.github.com/user", map[string]string{"Authorization": auth}); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("GET /user with %q = %d, want 401", auth, resp.StatusCode)
		}
	}
	resp, body := get(t, c, "https://api.github.com/user", map[string]string{"Authorization": "token " + real})
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `"login":"`+GitHubUserLogin+`"`) {
		t.Errorf("GET /user = %d %s, want the user", resp.StatusCode, body)
	}
	resp, body = post("token "+real, `{"query":"query RepositoryInfo($owner: String!, $name: String!) {repository(owner: $owner, name: $name){name,owner{login},description}}","variables":{"owner":"o","name":"r"}}`)
	var got struct {
		Data struct {
			Repository struct {
				Name        string
				Owner       struct{ Login string }
				Description string
			}
		}
	}
	if err := json.Unmarshal([]byte(body), &got); err != nil || resp.StatusCode != 200 || got.Data.Repository.Name != "r" || got.Data.Repository.Owner.Login != "o" || got.Data.Repository.Description != GitHubRepoDescription {
		t.Errorf("POST /graphql repository = %d %s (%v), want o/r", resp.StatusCode, body, err)
	}
	if resp, _ := post("token placeholder", `{"query":"{viewer{login}}"}`); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("POST /graphql with a placeholder = %d, want 401", resp.StatusCode)
	}
	resp, body = get(t, c, "https://api.github.com/repos/o/r/readme", map[string]string{"Authorization": "token " + real})
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `"content":`) {
		t.Errorf("GET readme = %d %s", resp.StatusCode, body)
	}
	if n := len(s.Requests(GitHubAPIHost)); n != 8 {
		t.Errorf("recorded %d api.github.com requests, want 8", n)
	}
	resp, body = get(t, c, "https://"+GitHubEnterpriseHost+"/api/v3/user", map[string]string{"Authorization": "token " + real})
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, GitHubUserLogin) {
		t.Errorf("GET enterprise /api/v3/user = %d %s, want the user", resp.StatusCode, body)
	}
	if resp, _ := get(t, c, "https://"+GitHubEnterpriseHost+"/o/r.git/info/refs?service=git-upload-pack", nil); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("enterprise git without credentials = %d, want 401", resp.StatusCode)
	}
}
