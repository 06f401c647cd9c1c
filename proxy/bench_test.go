package proxy

import (
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/cork-sh/cork/policy"
)

func BenchmarkAuditLine(b *testing.B) {
	pol, err := policy.Parse([]byte(testPolicy))
	if err != nil {
		b.Fatal(err)
	}
	lg := zerolog.New(io.Discard)
	p, err := New(Config{Policy: pol, Logger: &lg})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	e := &auditEntry{
		decision: decisionInject, host: "chatgpt.com", port: 443, method: "POST",
		path: "/backend-api/codex/responses", slot: "codex", status: 200,
		up: 40 << 10, down: 1 << 20, dur: 1500 * time.Millisecond, connID: "1x",
	}
	b.ReportAllocs()
	for b.Loop() {
		p.audit(e)
	}
}

// BenchmarkMITMRequest: one keep-alive request inside an intercepted
// connection, with injection, end to end over loopback.
func BenchmarkMITMRequest(b *testing.B) {
	up := newUpstream(b, true, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, `{"ok":true}`)
	}))
	tp := startProxy(b, testPolicy, testTokens(), map[string]string{"api.example.test:443": up.Addr()},
		func(c *Config) { lg := zerolog.New(io.Discard); c.Logger = &lg })
	cl := tp.client()
	req, _ := http.NewRequest("GET", "https://api.example.test/v1/models", nil)
	req.Header.Set("Authorization", "Bearer "+phAPI)
	b.ReportAllocs()
	for b.Loop() {
		resp, err := cl.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatalf("status %d", resp.StatusCode)
		}
	}
}

// BenchmarkScanRequest: the tripwire's scan of a usual request's head
// (handleRequest scans it twice: before and after injection).
func BenchmarkScanRequest(b *testing.B) {
	pol, err := policy.Parse([]byte(testPolicy))
	if err != nil {
		b.Fatal(err)
	}
	sc := newScanner(pol)
	req, _ := http.NewRequest("POST", "https://api.example.test/v1/chat/completions?stream=true", nil)
	req.Header.Set("Authorization", "Bearer "+phAPI)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("User-Agent", "codex_cli_rs/0.46.0 (Debian 13.0.0; x86_64) xterm-256color")
	req.Header.Set("Openai-Beta", "responses=experimental")
	req.Header.Set("Session_id", "0199a1b2-c3d4-7e8f-9a0b-1c2d3e4f5a6b")
	b.ReportAllocs()
	for b.Loop() {
		var buf [4]int
		if len(sc.scanRequest(req, slotSet(buf[:0]))) != 1 {
			b.Fatal("placeholder not found")
		}
	}
}
