package launch

import (
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/cork-sh/cork/internal/localca"
	"github.com/cork-sh/cork/policy"
	"github.com/cork-sh/cork/provision"
	"github.com/cork-sh/cork/resolve"
	"github.com/cork-sh/cork/settings"
)

// The sidecar's stdin gets each token map as one line of the token
// stream, which the sidecar's decoder reads back whole.
func TestSidecarSendTokens(t *testing.T) {
	in := resolve.Tokens{"a": resolve.NewSecret("v1"), "b": resolve.NewSecret(`quo"te<&>`)}
	var buf bytes.Buffer
	s := &sidecar{stdin: nopWriteCloser{&buf}}
	if err := s.sendTokens(in); err != nil {
		t.Fatal(err)
	}
	if b := buf.Bytes(); !bytes.HasSuffix(b, []byte("\n")) || bytes.Count(b, []byte("\n")) != 1 {
		t.Errorf("stdin got %q, want one line", b)
	}
	got, err := resolve.ParseTokens(buf.Bytes())
	if err != nil {
		t.Fatalf("ParseTokens(stdin) = %v", err)
	}
	for slot, want := range in {
		if !got[slot].Equal(want.Reveal()) {
			t.Errorf("slot %s does not round-trip", slot)
		}
	}
	s.closeStdin()
	if err := s.sendTokens(in); err == nil {
		t.Error("sendTokens after closeStdin = nil, want an error")
	}
}

func TestDockerEnv(t *testing.T) {
	env := dockerEnv(map[string]string{
		"PATH": "/bin", "HOME": "/root", "DOCKER_HOST": "unix:///x.sock", "DOCKER_CONTEXT": "ci",
		"GH_TOKEN": "ghp_real", "OPENAI_API_KEY": "sk-real", "CORK_E2E": "x",
	})
	got := strings.Join(env, " ")
	if want := "DOCKER_CONTEXT=ci DOCKER_HOST=unix:///x.sock HOME=/root PATH=/bin"; got != want {
		t.Errorf("dockerEnv = %q, want %q", got, want)
	}
}

func TestNewSidecarConfig(t *testing.T) {
	dir := t.TempDir()
	ca := dir + "/ca.pem"
	upCA, err := localca.New("sidecar test upstream CA")
	if err != nil {
		t.Fatal(err)
	}
	writeTestFile(t, ca, string(upCA.PEM()))
	notPEM := dir + "/x.txt"
	writeTestFile(t, notPEM, "hello")
	tests := []struct {
		name    string
		raw     map[string]string
		wantEnv []string
		publish string
		wantErr []string
	}{
		{name: "defaults", raw: nil, wantEnv: []string{
			"CORK_CA_OUT=/cork-ca/ca.pem", "CORK_LISTEN=0.0.0.0:3128", "CORK_LOG_FORMAT=json", "CORK_LOG_LEVEL=info",
			"CORK_POLICY_FILE=/cork-config/policy.yaml", "CORK_TOKENS_FILE=-", "CORK_EXIT_ON_STDIN_EOF=true", "CORK_READY_FD=1"}},
		{name: "passthrough", raw: map[string]string{
			"CORK_RESOLVE": "a:443=b:443", "CORK_ALLOW_PRIVATE": "10.0.0.0/8", "CORK_LOG_LEVEL": "debug",
			"CORK_LISTEN": "127.0.0.1:1", "CORK_LOG_FORMAT": "console", "CORK_UPSTREAM_CA_FILE": ca},
			wantEnv: []string{"CORK_ALLOW_PRIVATE=10.0.0.0/8", "CORK_LISTEN=0.0.0.0:3128", "CORK_LOG_FORMAT=json",
				"CORK_LOG_LEVEL=debug", "CORK_RESOLVE=a:443=b:443", "CORK_UPSTREAM_CA_FILE=/cork-config/upstream-ca.pem"}},
		{name: "limits", raw: map[string]string{
			"CORK_RESPONSE_HEADER_TIMEOUT": "1m", "CORK_MAX_RESPONSE_HEADER_BYTES": "64KiB", "CORK_READ_HEADER_TIMEOUT": "5s",
			"CORK_CLIENT_IDLE_TIMEOUT": "30s", "CORK_TUNNEL_IDLE_TIMEOUT": "2m", "CORK_MAX_CONNS_PER_CLIENT": "64"},
			// Rendered from the parsed values: the same settings, in
			// canonical form.
			wantEnv: []string{"CORK_RESPONSE_HEADER_TIMEOUT=1m0s", "CORK_MAX_RESPONSE_HEADER_BYTES=65536", "CORK_READ_HEADER_TIMEOUT=5s",
				"CORK_CLIENT_IDLE_TIMEOUT=30s", "CORK_TUNNEL_IDLE_TIMEOUT=2m0s", "CORK_MAX_CONNS_PER_CLIENT=64"}},
		// Readiness is a line on stdout, not a log line: the level asked
		// for is the sidecar's.
		{name: "warn level", raw: map[string]string{"CORK_LOG_LEVEL": "warn"}, wantEnv: []string{"CORK_LOG_LEVEL=warn"}},
		{name: "no bound", raw: map[string]string{"CORK_MAX_CONNS_PER_CLIENT": "0"}, wantEnv: []string{"CORK_MAX_CONNS_PER_CLIENT=0"}},
		{name: "admin", raw: map[string]string{"CORK_ADMIN_LISTEN": "127.0.0.1:9090"},
			wantEnv: []string{"CORK_ADMIN_LISTEN=0.0.0.0:9090"}, publish: "127.0.0.1:9090:9090"},
		{name: "bad", raw: map[string]string{
			"CORK_UPSTREAM_CA_FILE": notPEM, "CORK_CA_CERT_FILE": "c", "CORK_ADMIN_LISTEN": "localhost"},
			wantErr: []string{"CORK_UPSTREAM_CA_FILE", "CORK_CA_CERT_FILE", "CORK_ADMIN_LISTEN"}},
		{name: "missing CA file", raw: map[string]string{"CORK_UPSTREAM_CA_FILE": dir + "/none.pem"}, wantErr: []string{"CORK_UPSTREAM_CA_FILE"}},
		{name: "admin on a free port", raw: map[string]string{"CORK_ADMIN_LISTEN": "127.0.0.1:0"}, wantErr: []string{"CORK_ADMIN_LISTEN"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := sidecarConfigOf(tc.raw)
			if len(tc.wantErr) > 0 {
				if err == nil {
					t.Fatalf("sidecarSettings(%v) = nil error, want %v", tc.raw, tc.wantErr)
				}
				for _, w := range tc.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("sidecarSettings error %q does not name %s", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("sidecarSettings(%v) = %v", tc.raw, err)
			}
			env := strings.Join(c.Env, "\n")
			for _, w := range tc.wantEnv {
				if !strings.Contains(env+"\n", w+"\n") {
					t.Errorf("sidecar env lacks %s:\n%s", w, env)
				}
			}
			if c.Publish != tc.publish {
				t.Errorf("publish = %q, want %q", c.Publish, tc.publish)
			}
		})
	}
}

// The agent's docker create never carries a token: only placeholders and
// the launcher's variables.
func TestAgentArgsHoldNoToken(t *testing.T) {
	const real = "real-secret-value-123"
	spec := &Spec{
		Plan: provision.Plan{
			Env:   map[string]string{"API_KEY": "placeholder-0000", "CFG": "~/.cfg/x.json"},
			Files: []provision.File{{Path: ".cfg/x.json", Data: []byte("{}")}},
		},
		HostEnv: map[string]string{"API_KEY": real},
		Command: []string{"agent", "--flag"},
		Image:   "img:1",
		Env:     map[string]string{"EXTRA": "1"},
		Stdin:   strings.NewReader(""),
	}
	s := &dockerSandbox{cfg: &Docker{}, workspace: "/ws,odd", id: "abc", auth: "cork:session-credential-0123", proxyAddr: "10.9.8.7:3128",
		internal: "cork-abc-internal", volume: "cork-abc-ca"}
	env := (&session{spec: spec}).sandboxEnv(s.layout(), proxyURL(s.auth, s.proxyAddr), SandboxHome+"/"+SandboxBundleFile, sidecarCAPath)
	args, secretEnv := s.agentArgs(spec, env, "cork-abc-sandbox", "/tmp/home", false)
	joined := strings.Join(args, "\x00")
	if strings.Contains(joined, real) {
		t.Fatal("agent args hold the real token")
	}
	if strings.Contains(joined, "session-credential-0123") {
		t.Error("agent args hold the session proxy credential")
	}
	if !slices.Contains(secretEnv, "HTTPS_PROXY=http://cork:session-credential-0123@10.9.8.7:3128") {
		t.Errorf("secret env = %q, want the proxy URL with the session credential", secretEnv)
	}
	for _, want := range []string{
		"API_KEY=placeholder-0000", "CFG=/home/sandbox/.cfg/x.json", "EXTRA=1", "HOME=/home/sandbox",
		"HTTPS_PROXY", "SSL_CERT_FILE=/home/sandbox/.cork/ca-bundle.pem",
		"NODE_EXTRA_CA_CERTS=/cork-ca/ca.pem", "--interactive", "--init", "ALL", "no-new-privileges",
		"cork.session=abc", "cork.role=sandbox", "cork-abc-internal", "/workspace",
	} {
		if !strings.Contains("\x00"+joined+"\x00", "\x00"+want+"\x00") {
			t.Errorf("agent args lack %q: %q", want, args)
		}
	}
	if tail := args[len(args)-3:]; tail[0] != "img:1" || tail[1] != "agent" || tail[2] != "--flag" {
		t.Errorf("agent args end %q, want image then command", tail)
	}
	if strings.Contains(joined, "--privileged") {
		t.Error("agent args ask for --privileged")
	}
}

func TestMountArg(t *testing.T) {
	got := mountArg("bind", "/a,b/c", "/ws", true)
	r := csv.NewReader(strings.NewReader(got))
	fields, err := r.Read()
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"type=bind", "source=/a,b/c", "target=/ws", "readonly"}
	if strings.Join(fields, "|") != strings.Join(want, "|") {
		t.Errorf("mountArg fields = %q, want %q", fields, want)
	}
}

// sidecarConfigOf is sidecarSettings of the settings of `cork run`
// given the variables raw.
func sidecarConfigOf(raw map[string]string) (*settings.Sidecar, error) {
	in, err := settings.Load(raw)
	if err != nil {
		return nil, err
	}
	p, err := in.Parse(settings.ForRun)
	if err != nil {
		return nil, err
	}
	return sidecarSettings(p)
}

func TestSidecarReadLogs(t *testing.T) {
	var out bytes.Buffer
	log := zerolog.New(&out)
	s := &sidecar{name: "p", log: &log, ready: make(chan struct{}), done: make(chan struct{})}
	s.readLogs(strings.NewReader(strings.Join([]string{
		`{"level":"info","addr":"[::]:3128","time":"x","msg":"proxy listening"}`,
		`{"level":"info","slots":["a"],"msg":"tokens updated"}`,
		`{"level":"info","msg":"egress","decision":"inject","host":"h"}`,
		`cork: CORK_ALLOW_PRIVATE: entry 1 "x": not a CIDR`,
	}, "\n")))
	select {
	case <-s.ready:
		t.Error("log lines signalled readiness; only the readiness line on stdout may")
	default:
	}
	if !strings.Contains(s.lastLines(), "CORK_ALLOW_PRIVATE") {
		t.Errorf("lastLines = %q, want the plain error line", s.lastLines())
	}
	logs := out.String()
	for _, want := range []string{`"component":"sidecar"`, `"decision":"inject"`, `"addr":"[::]:3128"`} {
		if !strings.Contains(logs, want) {
			t.Errorf("relayed logs lack %s:\n%s", want, logs)
		}
	}
	if strings.Contains(logs, `"time":"x"`) {
		t.Errorf("relayed logs keep the sidecar's time field:\n%s", logs)
	}
}

// TestSidecarReadReady: the readiness line on the sidecar's stdout, and
// only it, makes the sidecar ready; waitReady keeps its errors.
func TestSidecarReadReady(t *testing.T) {
	t.Run("ready", func(t *testing.T) {
		s := &sidecar{name: "p", ready: make(chan struct{}), done: make(chan struct{})}
		s.readReady(strings.NewReader("noise\n{\"ready\":false}\n{\"ready\":true,\"listen\":\"0.0.0.0:3128\"}\nafter\n"))
		if err := s.waitReady(context.Background(), time.Second); err != nil {
			t.Errorf("waitReady = %v, want nil", err)
		}
	})
	t.Run("exited", func(t *testing.T) {
		s := &sidecar{name: "p", ready: make(chan struct{}), done: make(chan struct{})}
		s.readReady(strings.NewReader(`{"ready":false}` + "\n"))
		s.keepTail("cork: CORK_RESOLVE: entry 1: bad")
		close(s.done)
		err := s.waitReady(context.Background(), time.Second)
		if err == nil || !strings.Contains(err.Error(), "exited before it was ready:\ncork: CORK_RESOLVE") {
			t.Errorf("waitReady = %v, want the exit with the last lines", err)
		}
	})
	t.Run("timeout", func(t *testing.T) {
		s := &sidecar{name: "p", ready: make(chan struct{}), done: make(chan struct{})}
		err := s.waitReady(context.Background(), 10*time.Millisecond)
		if err == nil || !strings.Contains(err.Error(), "not ready after 10ms (no readiness line on its stdout") {
			t.Errorf("waitReady = %v, want the timeout", err)
		}
	})
}

func TestSidecarSetTokensWritesLines(t *testing.T) {
	var buf bytes.Buffer
	s := &sidecar{stdin: nopWriteCloser{&buf}}
	s.SetTokens(resolve.Tokens{"a": resolve.NewSecret("one")})
	s.SetTokens(resolve.Tokens{"a": resolve.NewSecret("two")})
	if got := buf.String(); got != "{\"a\":\"one\"}\n{\"a\":\"two\"}\n" {
		t.Errorf("stdin got %q", got)
	}
	s.closeStdin()
	if err := s.sendTokens(resolve.Tokens{}); err == nil {
		t.Error("sendTokens after closeStdin = nil, want an error")
	}
}

func TestDockerPreflight(t *testing.T) {
	plan := provision.Plan{Egress: provision.EgressPlan{
		TokenEnvMap: map[string]string{"s": "TOKEN_ENV"},
		Slots:       map[string]policy.Slot{"s": {Placeholder: "placeholder-s-000"}},
		Routes:      []policy.Route{{Host: "api.test", Slot: "s"}},
	}}
	tests := []struct {
		name string
		d    Docker
		spec Spec
		want string
	}{
		{"no command", Docker{}, Spec{Plan: plan, Image: "i"}, "no command"},
		{"no image", Docker{}, Spec{Plan: plan, Command: []string{"x"}, HostEnv: map[string]string{"TOKEN_ENV": "v"}}, "--image"},
		{"bad workspace", Docker{}, Spec{Plan: plan, Command: []string{"x"}, Image: "i", Workspace: "/nonexistent/ws", HostEnv: map[string]string{"TOKEN_ENV": "v"}}, "workspace"},
		{"missing credential", Docker{}, Spec{Plan: plan, Command: []string{"x"}, Image: "i"}, "TOKEN_ENV"},
		{"no client", Docker{CLI: "/nonexistent/docker"}, Spec{Plan: plan, Command: []string{"x"}, Image: "i",
			HostEnv: map[string]string{"TOKEN_ENV": "v"}}, "docker client"},
		{"unsupported CA", Docker{CLI: "/nonexistent/docker"}, Spec{Plan: plan, Command: []string{"x"}, Image: "i",
			HostEnv: map[string]string{"TOKEN_ENV": "v"}, Proxy: ProxyOptions{Settings: settings.Proxy{CAKeyFile: "k"}}}, "CORK_CA_KEY_FILE"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.d.Run(context.Background(), resolved(&tc.spec))
			var se *SetupError
			if !errors.As(err, &se) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Run = %v, want a *SetupError mentioning %q", err, tc.want)
			}
		})
	}
}

func TestNumericUser(t *testing.T) {
	for in, want := range map[string][2]int{"": {0, 0}, "65532:65532": {65532, 65532}, "1000": {1000, 1000}, "nobody": {0, 0}, "5:7": {5, 7}} {
		if got := numericUser(in); got != want {
			t.Errorf("numericUser(%q) = %v, want %v", in, got, want)
		}
	}
}

type nopWriteCloser struct{ *bytes.Buffer }

func (nopWriteCloser) Close() error { return nil }

func writeTestFile(t *testing.T, p, s string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}
