package main

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const streamPolicy = `slots:
  api: { placeholder: "` + apiPlaceholder + `" }
routes:
  - host: api.test
    slot: api
`

// readyz returns the status and body of the admin /readyz at addr.
func readyz(t *testing.T, addr string) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + addr + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestTokenStreamSurvivesBadInput: a malformed line on stdin is logged
// (without its content) and skipped; the next good map is applied; the
// end of stdin is logged at info and keeps the tokens.
func TestTokenStreamSurvivesBadInput(t *testing.T) {
	const garbage = "REALgarbage-7f3a9c"
	p := startProcProxy(t, streamPolicy, "CORK_ADMIN_LISTEN=127.0.0.1:0")
	admin := loggedField(t, p, "admin listening", "addr") // logged before "proxy listening"
	if code, body := readyz(t, admin); code != http.StatusServiceUnavailable {
		t.Fatalf("readyz before any token = %d %q, want 503", code, body)
	}

	if _, err := io.WriteString(p.stdin, "{"+garbage+"\n"); err != nil {
		t.Fatal(err)
	}
	m := p.waitLog(t, "token stream: token map skipped; keeping the current tokens")
	if e, _ := m["error"].(string); m["level"] != "error" || !strings.Contains(e, "object 1") {
		t.Errorf("bad map line = %v, want level error and an error naming object 1", m)
	}
	p.sendTokens(t, map[string]string{"api": apiReal})
	if m := p.waitLog(t, "tokens updated"); !strings.Contains(strings.Join(toStrings(m["slots"]), ","), "api") {
		t.Errorf("tokens updated line = %v, want slot api", m)
	}
	if code, body := readyz(t, admin); code != http.StatusOK {
		t.Errorf("readyz after the good map = %d %q, want 200", code, body)
	}

	if err := p.stdin.Close(); err != nil {
		t.Fatal(err)
	}
	if m := p.waitLog(t, "token stream closed; keeping the current tokens"); m["level"] != "info" {
		t.Errorf("stream closed line = %v, want level info", m)
	}
	if code, body := readyz(t, admin); code != http.StatusOK {
		t.Errorf("readyz after stdin closed = %d %q, want 200 (tokens kept)", code, body)
	}
	for _, v := range []string{garbage, apiReal} {
		if strings.Contains(p.logText(), v) {
			t.Errorf("the log holds %q:\n%s", v, p.logText())
		}
	}
}

// loggedField returns field of the first log line with msg already written.
func loggedField(t *testing.T, p *corkProxy, msg, field string) string {
	t.Helper()
	for _, line := range strings.Split(p.logText(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil && msgOf(m) == msg {
			if v, ok := m[field].(string); ok {
				return v
			}
		}
	}
	t.Fatalf("no %q line with %s in the log:\n%s", msg, field, p.logText())
	return ""
}

func toStrings(v any) []string {
	var out []string
	if l, ok := v.([]any); ok {
		for _, e := range l {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
	}
	return out
}

// TestTokensFileRejectsUnusableValues: a tokens file whose value could
// not be sent in a header is refused at start, naming the slot and not
// the value.
func TestTokensFileRejectsUnusableValues(t *testing.T) {
	dir := t.TempDir()
	policy := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(policy, []byte(streamPolicy), 0o644); err != nil {
		t.Fatal(err)
	}
	tokens := filepath.Join(dir, "tokens.json")
	if err := os.WriteFile(tokens, []byte(`{"api":"`+apiReal+`\r\n","other":"`+apiReal+` x"}`+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := runCork(t, map[string]string{"CORK_POLICY_FILE": policy, "CORK_TOKENS_FILE": tokens}, "proxy")
	want := "cork: CORK_TOKENS_FILE: " + tokens + `: token map: slot "api": value contains a control character` + "\n" +
		"cork: CORK_TOKENS_FILE: " + tokens + `: token map: slot "other": value contains white space` + "\n"
	if code != 2 || stderr != want {
		t.Errorf("exit %d, stderr %q; want 2, %q", code, stderr, want)
	}
	if strings.Contains(stderr, apiReal) {
		t.Errorf("stderr holds the token: %q", stderr)
	}
}
