package fakeupstream

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/cork-sh/cork/internal/localca"
)

// The hosts a Server answers for, as the proxy's Resolve keys name them
// (with ":443").
const (
	ChatGPTHost          = "chatgpt.com"
	ChatGPTAnalyticsHost = "ab.chatgpt.com"
	OpenAIAuthHost       = "auth.openai.com"
	AnthropicHost        = "api.anthropic.com"
	GitHubHost           = "github.com"
	// Claude Code's token endpoints: recorded, never answered with a token.
	ClaudePlatformHost = "platform.claude.com"
	AnthropicConsole   = "console.anthropic.com"
	// The Gemini CLI's: API key, Google sign-in, token check (the token
	// endpoint is recorded, never answered with a token).
	GeminiAPIHost   = "generativelanguage.googleapis.com"
	CodeAssistHost  = "cloudcode-pa.googleapis.com"
	GoogleOAuthHost = "oauth2.googleapis.com"
)

// Hosts lists every host a Server presents a certificate for.
var Hosts = []string{ChatGPTHost, ChatGPTAnalyticsHost, OpenAIAuthHost, AnthropicHost, ClaudePlatformHost, AnthropicConsole, GitHubHost, GitHubAPIHost, GitHubEnterpriseHost,
	GeminiAPIHost, CodeAssistHost, GoogleOAuthHost, CopilotAPIHost, CopilotTelemetryHost}

// DefaultReply is the canned assistant answer.
const DefaultReply = "cork-compat-ok"

// DefaultListen is where the fakes listen unless Config.Listen says
// otherwise.
const DefaultListen = "127.0.0.1:0"

// maxRecordedBody caps the request body a Request keeps.
const maxRecordedBody = 1 << 20

// Config configures Start. The zero value is valid: every authenticated
// endpoint then answers 401.
type Config struct {
	// ChatGPTToken is the only access token chatgpt.com's /backend-api
	// accepts, as "Authorization: Bearer <token>".
	ChatGPTToken string
	// AnthropicToken is the only credential api.anthropic.com accepts, as
	// "Authorization: Bearer <token>" (OAuth) or "x-api-key: <token>".
	AnthropicToken string
	// Reply is the assistant's answer to every turn. Empty means
	// DefaultReply.
	Reply string
	// ClaudeSettingsStatus is the status of GET /api/claude_code/settings
	// and /api/claude_code/policy_limits: 200 answers "{}", anything else an
	// error body. Zero means 404 (no managed settings, no policy limits).
	ClaudeSettingsStatus int
	// GitHubToken is the only password github.com accepts in Basic auth
	// (user x-access-token), as git sends a token, and the only token
	// api.github.com accepts, as "Authorization: token <token>" (gh).
	GitHubToken string
	// CopilotToken is the only GitHub token the Copilot CLI's endpoints
	// accept (api.github.com/copilot_internal/..., CopilotAPIHost), as
	// "Bearer <token>" or "token <token>".
	CopilotToken string
	// GitProjectRoot, if set, is served on github.com by git http-backend
	// (every repository exported, pushes allowed where the repository's
	// http.receivepack is true). Empty answers 404.
	GitProjectRoot string
	// WebSocketStatus, if set, refuses every WebSocket upgrade of the
	// Responses endpoint with this status, so that Codex falls back to
	// SSE.
	WebSocketStatus int
	// GeminiAPIKey is the only key generativelanguage.googleapis.com
	// accepts, in x-goog-api-key.
	GeminiAPIKey string
	// GoogleAccessToken is the only access token cloudcode-pa.googleapis.com
	// and oauth2.googleapis.com/tokeninfo accept, as a bearer.
	GoogleAccessToken string
	// Listen is the TCP address the fakes listen on, e.g. "198.18.2.1:0"
	// for a proxy that runs in a pod. Empty means "127.0.0.1:0".
	Listen string
}

// Request is one request a fake received.
type Request struct {
	Time   time.Time
	Host   string // without port, lower case
	Method string
	Path   string
	Query  string
	// Header is every header the client sent, credentials included: tests
	// check which token arrived.
	Header http.Header
	// Body is the request body as received (not decoded), up to 1 MiB.
	Body []byte
	// Status is what the fake answered (101 for an accepted WebSocket).
	Status int
	// WebSocket is set for an upgrade request; Messages are the text
	// messages the client sent on it, in order.
	WebSocket bool
	Messages  []WSMessage
}

// WSMessage is one client message on a WebSocket.
type WSMessage struct {
	Type string // the JSON "type" field, e.g. "response.create"
	// Generate is false for Codex's warm-up response.create
	// ("generate": false), true otherwise.
	Generate bool
	Len      int
}

// Server is a running set of fakes. Close it when done.
type Server struct {
	cfg Config
	ca  *localca.CA
	ln  net.Listener
	srv *http.Server

	mu   sync.Mutex
	reqs []*Request
	seq  int
}

// Start starts the fakes on cfg.Listen (default 127.0.0.1, any port) with
// a fresh CA.
func Start(cfg Config) (*Server, error) {
	if cfg.Reply == "" {
		cfg.Reply = DefaultReply
	}
	if cfg.ClaudeSettingsStatus == 0 {
		cfg.ClaudeSettingsStatus = http.StatusNotFound
	}
	ca, err := localca.New("cork fakeupstream CA")
	if err != nil {
		return nil, fmt.Errorf("fake upstream CA: %w", err)
	}
	conf, err := ca.ServerConfig(Hosts...)
	if err != nil {
		return nil, fmt.Errorf("fake upstream certificate: %w", err)
	}
	// HTTP/1.1 only (no NextProtos): WebSocket upgrades need it, and it is
	// what cork speaks upstream for an upgrade anyway.
	listen := cfg.Listen
	if listen == "" {
		listen = DefaultListen
	}
	ln, err := tls.Listen("tcp", listen, conf)
	if err != nil {
		return nil, fmt.Errorf("fake upstream listener %s: %w", listen, err)
	}
	s := &Server{cfg: cfg, ca: ca, ln: ln}
	s.srv = &http.Server{Handler: http.HandlerFunc(s.serveHTTP), ReadHeaderTimeout: 10 * time.Second, ErrorLog: discardLog}
	go s.srv.Serve(ln)
	return s, nil
}

// Close stops the server and closes every connection.
func (s *Server) Close() error {
	if err := s.srv.Close(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Addr is the listener's address, ip:port (127.0.0.1:port by default).
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Resolve maps "host:443" of every fake host to Addr, for the proxy's
// Resolve option.
func (s *Server) Resolve() map[string]string {
	m := make(map[string]string, len(Hosts))
	for _, h := range Hosts {
		m[h+":443"] = s.Addr()
	}
	return m
}

// Roots is a pool holding the fakes' CA, for the proxy's upstream roots.
func (s *Server) Roots() *x509.CertPool { return s.ca.Pool() }

// CAPEM is the fakes' CA certificate.
func (s *Server) CAPEM() []byte { return s.ca.PEM() }

// Reply is the canned answer.
func (s *Server) Reply() string { return s.cfg.Reply }

// Requests returns a copy of every request received so far for host (all
// hosts if host is empty), oldest first.
func (s *Server) Requests(host string) []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Request
	for _, r := range s.reqs {
		if host != "" && r.Host != host {
			continue
		}
		c := *r
		c.Header = r.Header.Clone()
		c.Body = bytes.Clone(r.Body)
		c.Messages = append([]WSMessage(nil), r.Messages...)
		out = append(out, c)
	}
	return out
}

// Summary lists the requests received, one line each without header
// values, for test failure messages.
func (s *Server) Summary() string {
	var b strings.Builder
	for _, r := range s.Requests("") {
		fmt.Fprintf(&b, "  %s %s %s", r.Method, r.Host, r.Path)
		if r.Query != "" {
			fmt.Fprintf(&b, "?%s", r.Query)
		}
		fmt.Fprintf(&b, " → %d", r.Status)
		if r.WebSocket {
			fmt.Fprintf(&b, " (websocket, %d messages", len(r.Messages))
			for _, m := range r.Messages {
				fmt.Fprintf(&b, "; %s generate=%t %dB", m.Type, m.Generate, m.Len)
			}
			b.WriteString(")")
		}
		b.WriteString("\n")
	}
	if b.Len() == 0 {
		return "  (none)\n"
	}
	return b.String()
}

// record stores r's request line and headers and returns the entry, which
// the handler completes under s.mu via update.
func (s *Server) record(r *http.Request, host string) *Request {
	body := []byte(nil)
	if r.Body != nil && r.Body != http.NoBody {
		// Read it whole (handlers need it) but keep at most the cap.
		all, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(all))
		body = all
		if len(body) > maxRecordedBody {
			body = body[:maxRecordedBody]
		}
	}
	req := &Request{
		Time:   time.Now(),
		Host:   host,
		Method: r.Method,
		Path:   r.URL.Path,
		Query:  r.URL.RawQuery,
		Header: r.Header.Clone(),
		Body:   bytes.Clone(body),
	}
	s.mu.Lock()
	s.reqs = append(s.reqs, req)
	s.mu.Unlock()
	return req
}

func (s *Server) update(f func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f()
}

func (s *Server) nextID(prefix string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq++
	return fmt.Sprintf("%s_cork%04d", prefix, s.seq)
}

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	host := strings.ToLower(r.Host)
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(host, ".")
	rec := s.record(r, host)
	sw := &statusWriter{ResponseWriter: w}
	switch host {
	case ChatGPTHost:
		s.chatGPT(sw, r, rec)
	case AnthropicHost:
		s.anthropic(sw, r)
	case GitHubHost:
		s.gitHub(sw, r)
	case GeminiAPIHost:
		s.geminiAPI(sw, r)
	case CodeAssistHost:
		s.codeAssist(sw, r)
	case GoogleOAuthHost:
		s.googleOAuth(sw, r)
	case GitHubAPIHost:
		if isCopilotGitHubPath(r.URL.Path) {
			s.copilotGitHub(sw, r)
			break
		}
		s.gitHubAPI(sw, r)
	case GitHubEnterpriseHost:
		s.gitHubEnterprise(sw, r)
	case CopilotAPIHost:
		s.copilotAPI(sw, r)
	case ChatGPTAnalyticsHost, CopilotTelemetryHost:
		// Codex's metrics and events, Copilot's telemetry: accepted and
		// dropped.
		sw.WriteHeader(http.StatusNoContent)
	default: // auth.openai.com, platform.claude.com, console.anthropic.com
		// The sandbox must never get here: refreshing is the host's job.
		writeJSON(sw, http.StatusForbidden, map[string]any{"error": "fakeupstream: token endpoints are out of bounds for a sandbox"})
	}
	if sw.status == 0 {
		sw.status = http.StatusOK
	}
	s.update(func() {
		if rec.Status == 0 {
			rec.Status = sw.status
		}
	})
}

// statusWriter remembers the status; it passes Flush and Hijack through
// (SSE and WebSocket need them).
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(p)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := newJSONEncoder(w)
	enc.Encode(v)
}

// bearer returns the token of an "Authorization: Bearer" header.
func bearer(h http.Header) (string, bool) {
	v := h.Get("Authorization")
	if len(v) < 7 || !strings.EqualFold(v[:7], "bearer ") {
		return "", false
	}
	return strings.TrimSpace(v[7:]), true
}
