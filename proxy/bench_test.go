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
