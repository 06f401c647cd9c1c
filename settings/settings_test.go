package settings

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/cork-sh/cork/internal/localca"
	"github.com/cork-sh/cork/proxy/pki"
	"github.com/cork-sh/cork/resolve"
)

// parse is Load and Parse of env (and flags args) for cmd.
func parse(t *testing.T, env map[string]string, cmd Command, args ...string) (*Proxy, error) {
	t.Helper()
	in, err := Load(env)
	if err != nil {
		t.Fatal(err)
	}
	fs := flag.NewFlagSet("cork", flag.ContinueOnError)
	in.RegisterFlags(fs, cmd)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	in.FlagsParsed(fs)
	return in.Parse(cmd)
}

// TestEveryErrorNamesItsSetting: each bad value is one error line that
// starts with its variable, or with its flag when given as one, and all
// come at once.
func TestEveryErrorNamesItsSetting(t *testing.T) {
	dir := t.TempDir()
	open := filepath.Join(dir, "open")
	if err := os.WriteFile(open, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	bad := map[string]string{
		"listen":                    "nonsense",
		"admin-listen":              "localhost",
		"policy-file":               filepath.Join(dir, "missing.yaml"),
		"tokens-file":               open,
		"ca-cert-file":              filepath.Join(dir, "missing.pem"),
		"ca-key-file":               open,
		"upstream-ca-file":          filepath.Join(dir, "missing.pem"),
		"allow-private":             "not-a-cidr",
		"resolve":                   "api.test:443",
		"log-level":                 "loud",
		"log-format":                "xml",
		"client-auth-file":          open,
		"response-header-timeout":   "soon",
		"max-response-header-bytes": "big",
		"read-header-timeout":       "0",
		"client-idle-timeout":       "-1s",
		"tunnel-idle-timeout":       "forever",
		"max-conns-per-client":      "many",
		"exit-on-stdin-eof":         "sometimes",
		"exit-on-stdin-idle":        "soon",
		"ready-fd":                  "stdout",
		"session-id":                "two words",
	}
	// CORK_CA_OUT has no bad value: any path is written at start, and a
	// failure names it then.
	if len(bad) != len(table)-1 {
		t.Fatalf("the test covers %d settings, the table has %d", len(bad), len(table))
	}
	env := map[string]string{}
	var args []string
	for i, f := range table {
		if f.flag == "ca-out" {
			continue
		}
		if i%2 == 0 {
			env[f.env] = bad[f.flag]
		} else {
			args = append(args, "--"+f.flag+"="+bad[f.flag])
		}
	}
	_, err := parse(t, env, ForProxy, args...)
	if err == nil {
		t.Fatal("Parse = nil, want errors")
	}
	lines := strings.Split(err.Error(), "\n")
	for i, f := range table {
		if f.flag == "ca-out" || f.flag == "ca-cert-file" { // the key's error stops the pair's checks
			continue
		}
		want := f.env + ": "
		if i%2 == 1 {
			want = "--" + f.flag + ": "
		}
		found := false
		for _, l := range lines {
			found = found || strings.HasPrefix(l, want)
		}
		if !found {
			t.Errorf("no error line starts with %q:\n%s", want, err)
		}
	}
	private := filepath.Join(dir, "private")
	if err := os.WriteFile(private, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	// The CA is cork proxy's (cork run refuses it whole: TestRunRefusesOperatorCA).
	if _, err := parse(t, map[string]string{"CORK_CA_CERT_FILE": bad["ca-cert-file"], "CORK_CA_KEY_FILE": private}, ForProxy); err == nil || !strings.Contains("\n"+err.Error(), "\nCORK_CA_CERT_FILE: ") {
		t.Errorf("Parse with a missing CA certificate = %v, want it named", err)
	}
	if _, err := parse(t, map[string]string{ClientAuthVar: "nouser"}, ForRun); err == nil || err.Error() != ClientAuthVar+": want user:password" {
		t.Errorf("Parse(%s=nouser) = %v, want it named", ClientAuthVar, err)
	}
}

// TestConfig: the one mapping onto proxy.Config.
func TestConfig(t *testing.T) {
	p, err := parse(t, map[string]string{
		"CORK_ALLOW_PRIVATE":             "10.0.0.1,192.168.0.0/16",
		"CORK_RESOLVE":                   "API.Test:443=127.0.0.1:8443",
		ClientAuthVar:                    "cork:0123456789abcdefXYZ",
		"CORK_RESPONSE_HEADER_TIMEOUT":   "1m",
		"CORK_MAX_RESPONSE_HEADER_BYTES": "64KiB",
		"CORK_READ_HEADER_TIMEOUT":       "5s",
		"CORK_CLIENT_IDLE_TIMEOUT":       "30s",
		"CORK_TUNNEL_IDLE_TIMEOUT":       "2m",
		"CORK_MAX_CONNS_PER_CLIENT":      "0",
		SessionIDVar:                     " run-7 ",
	}, ForRun)
	if err != nil {
		t.Fatal(err)
	}
	c := p.Config()
	if want := []netip.Prefix{netip.MustParsePrefix("10.0.0.1/32"), netip.MustParsePrefix("192.168.0.0/16")}; !reflect.DeepEqual(c.AllowPrivate, want) {
		t.Errorf("AllowPrivate = %v, want %v", c.AllowPrivate, want)
	}
	if want := map[string]string{"api.test:443": "127.0.0.1:8443"}; !reflect.DeepEqual(c.Resolve, want) {
		t.Errorf("Resolve = %v, want %v", c.Resolve, want)
	}
	if !c.ClientAuth.Equal("cork:0123456789abcdefXYZ") {
		t.Error("ClientAuth is not the credential given")
	}
	if c.ResponseHeaderTimeout != time.Minute || c.MaxResponseHeaderBytes != 64<<10 || c.ReadHeaderTimeout != 5*time.Second ||
		c.ClientIdleTimeout != 30*time.Second || c.TunnelIdleTimeout != 2*time.Minute || c.MaxConnsPerClient != -1 {
		t.Errorf("limits in Config = %+v", c)
	}
	if c.SessionID != "run-7" {
		t.Errorf("SessionID = %q, want run-7", c.SessionID)
	}
	if c.CA != nil || c.UpstreamRootCAs != nil || c.Policy != nil || c.Tokens != nil || c.Logger != nil {
		t.Errorf("Config sets what was not given: %+v", c)
	}
}

// TestEnvRoundTrip: Load and Parse of Env give the same settings.
func TestEnvRoundTrip(t *testing.T) {
	dir := t.TempDir()
	ca, err := localca.New("settings test")
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, ca.PEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := map[string]map[string]string{
		"defaults": {},
		"every value": {
			"CORK_LISTEN": "0.0.0.0:3128", "CORK_ADMIN_LISTEN": "127.0.0.1:9090", "CORK_CA_OUT": "/x/ca.pem",
			"CORK_UPSTREAM_CA_FILE": caFile, "CORK_ALLOW_PRIVATE": "10.0.0.0/8,::1",
			"CORK_RESOLVE": "b.test:443=10.0.0.2:443,a.test:443=10.0.0.1:443", "CORK_LOG_LEVEL": "warn", "CORK_LOG_FORMAT": "console",
			"CORK_RESPONSE_HEADER_TIMEOUT": "1h30m", "CORK_MAX_RESPONSE_HEADER_BYTES": "1MiB", "CORK_READ_HEADER_TIMEOUT": "250ms",
			"CORK_CLIENT_IDLE_TIMEOUT": "30s", "CORK_TUNNEL_IDLE_TIMEOUT": "2m", "CORK_MAX_CONNS_PER_CLIENT": "0",
			"CORK_EXIT_ON_STDIN_EOF": "true", "CORK_READY_FD": "3", "CORK_EXIT_ON_STDIN_IDLE": "1m30s",
			"CORK_SESSION_ID": "a1b2c3d4e5f6",
		},
	}
	for name, env := range tests {
		t.Run(name, func(t *testing.T) {
			p, err := parse(t, env, ForRun)
			if err != nil {
				t.Fatal(err)
			}
			q, err := parse(t, p.Env(), ForRun)
			if err != nil {
				t.Fatalf("Parse(Env()) = %v; Env() = %v", err, p.Env())
			}
			p.UpstreamRootCAs, q.UpstreamRootCAs = nil, nil // pools compare by pointer
			if !reflect.DeepEqual(p, q) {
				t.Errorf("round trip:\n got %+v\nwant %+v\nenv %v", q, p, p.Env())
			}
		})
	}
}

// TestEnvHoldsNoCredential: the client credential is never rendered.
func TestEnvHoldsNoCredential(t *testing.T) {
	p := &Proxy{ClientAuth: resolve.NewSecret("cork:0123456789abcdefXYZ")}
	for k, v := range p.Env() {
		if k == ClientAuthVar || strings.Contains(v, "0123456789abcdef") {
			t.Errorf("Env has %s=%s", k, v)
		}
	}
}

var testContainer = Container{Listen: "0.0.0.0:3128", PolicyFile: "/c/policy.yaml", UpstreamCAFile: "/c/up.pem", CAOut: "/ca/ca.pem"}

// TestSidecar: the sidecar's environment is the settings with the
// container's paths, a token stream on stdin, JSON logs and the readiness
// line on stdout; Load and Parse of it give the same value settings.
func TestSidecar(t *testing.T) {
	p := &Proxy{
		Listen: "127.0.0.1:1", PolicyFile: "/host/p.yaml", TokensFile: "/host/t.json", CAOut: "/host/ca.pem",
		UpstreamCAFile: "/host/up.pem", UpstreamCA: []byte("PEM"),
		AllowPrivate: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")},
		Resolve:      map[string]string{"a.test:443": "10.0.0.1:443"},
		LogLevel:     zerolog.WarnLevel, LogFormat: "console",
		ClientAuth:      resolve.NewSecret("cork:0123456789abcdefXYZ"),
		Limits:          Limits{TunnelIdleTimeout: time.Minute, MaxConnsPerClient: -1},
		AdminListen:     "[::1]:9090",
		ExitOnStdinIdle: time.Minute, // not the docker sidecar's: its stdin ends
	}
	sc, err := p.Sidecar(testContainer)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"CORK_ADMIN_LISTEN=0.0.0.0:9090", "CORK_ALLOW_PRIVATE=10.0.0.0/8", "CORK_CA_OUT=/ca/ca.pem", "CORK_EXIT_ON_STDIN_EOF=true",
		"CORK_LISTEN=0.0.0.0:3128", "CORK_LOG_FORMAT=json", "CORK_LOG_LEVEL=warn", "CORK_MAX_CONNS_PER_CLIENT=0",
		"CORK_POLICY_FILE=/c/policy.yaml", "CORK_READY_FD=1", "CORK_RESOLVE=a.test:443=10.0.0.1:443", "CORK_TOKENS_FILE=-",
		"CORK_TUNNEL_IDLE_TIMEOUT=1m0s", "CORK_UPSTREAM_CA_FILE=/c/up.pem",
	}
	if !reflect.DeepEqual(sc.Env, want) {
		t.Errorf("Sidecar env =\n%q\nwant\n%q", sc.Env, want)
	}
	if string(sc.UpstreamCA) != "PEM" || sc.Publish != "[::1]:9090:9090" {
		t.Errorf("Sidecar UpstreamCA %q, Publish %q", sc.UpstreamCA, sc.Publish)
	}
	env := map[string]string{}
	for _, kv := range sc.Env {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	delete(env, "CORK_UPSTREAM_CA_FILE") // a path inside the container
	q, err := parse(t, env, ForRun)
	if err != nil {
		t.Fatalf("Parse(sidecar env) = %v", err)
	}
	if !reflect.DeepEqual(q.AllowPrivate, p.AllowPrivate) || !reflect.DeepEqual(q.Resolve, p.Resolve) || q.Limits != p.Limits ||
		q.LogLevel != p.LogLevel || !q.ExitOnStdinEOF || q.ReadyFD != 1 || q.TokensFile != "-" {
		t.Errorf("Parse(sidecar env) = %+v, want the settings of %+v", q, p)
	}
	if !bytes.Equal(sc.UpstreamCA, p.UpstreamCA) {
		t.Error("the upstream CA is not passed on")
	}
}

func TestSidecarErrors(t *testing.T) {
	tests := []struct {
		name string
		p    Proxy
		want []string
	}{
		{"CA given", Proxy{CAKeyFile: "k"}, []string{"CORK_CA_CERT_FILE, CORK_CA_KEY_FILE: not supported by the docker backend"}},
		{"admin on a free port", Proxy{AdminListen: "127.0.0.1:0"}, []string{`CORK_ADMIN_LISTEN: "127.0.0.1:0": want host:port with a fixed port`}},
		{"both", Proxy{CACertFile: "c", AdminListen: "x"}, []string{"CORK_CA_CERT_FILE", "CORK_ADMIN_LISTEN"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.p.Sidecar(testContainer)
			if err == nil {
				t.Fatalf("Sidecar = nil error, want %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Sidecar = %v, want %q", err, w)
				}
			}
		})
	}
}

func TestReady(t *testing.T) {
	var b bytes.Buffer
	if err := WriteReady(&b, Ready{Ready: true, Listen: "127.0.0.1:3128"}); err != nil {
		t.Fatal(err)
	}
	if got, want := b.String(), `{"ready":true,"listen":"127.0.0.1:3128"}`+"\n"; got != want {
		t.Errorf("WriteReady = %q, want %q", got, want)
	}
	in := "noise\n{\"ready\":false}\n" + b.String()
	if rd, err := ReadReady(strings.NewReader(in)); err != nil || rd.Listen != "127.0.0.1:3128" {
		t.Errorf("ReadReady = %+v, %v", rd, err)
	}
	if _, err := ReadReady(strings.NewReader("noise\n{\"ready\":false}\n")); !errors.Is(err, ErrNotReady) {
		t.Errorf("ReadReady without the line = %v, want ErrNotReady", err)
	}
}

// TestReadyCA: the CA's certificate survives the line, however many
// hosts its name constraints list, and WriteReady refuses anything but
// certificates in it: a key never leaves the proxy this way.
func TestReadyCA(t *testing.T) {
	hosts := make([]string, 3000) // a certificate well over bufio's 64 KiB default
	for i := range hosts {
		hosts[i] = fmt.Sprintf("api-%04d.example.test", i)
	}
	ca, err := pki.Generate(hosts)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := WriteReady(&b, Ready{Ready: true, Listen: "127.0.0.1:3128", CA: string(ca.CertPEM())}); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(b.String(), "\n"); n != 1 || b.Len() < 64<<10 {
		t.Fatalf("WriteReady wrote %d lines, %d bytes; want one line over 64 KiB", n, b.Len())
	}
	rd, err := ReadReady(strings.NewReader("noise\n" + b.String()))
	if err != nil || rd.CA != string(ca.CertPEM()) {
		t.Fatalf("ReadReady = CA of %d bytes, %v; want the CA written", len(rd.CA), err)
	}
	key := "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
	for name, bad := range map[string]string{
		"key after the certificate": string(ca.CertPEM()) + key,
		"key alone":                 key,
		"not PEM":                   "hello",
		"trailing junk":             string(ca.CertPEM()) + "junk",
		"junk before":               "MIIEvQIBADANBg\n" + string(ca.CertPEM()),
	} {
		var out bytes.Buffer
		err := WriteReady(&out, Ready{Ready: true, Listen: "127.0.0.1:3128", CA: bad})
		if err == nil || out.Len() != 0 {
			t.Errorf("WriteReady(%s) = %v, wrote %q; want an error and nothing written", name, err, out.String())
		}
	}
}

// cork run makes its own CA per run: a CA of the operator's is refused in
// one line naming both variables, and its key is not read (a key cork
// would not use gets no chmod advice either).
func TestRunRefusesOperatorCA(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "ca.key")
	if err := os.WriteFile(key, []byte("not a key"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := parse(t, map[string]string{"CORK_CA_CERT_FILE": filepath.Join(dir, "ca.pem"), "CORK_CA_KEY_FILE": key}, ForRun)
	want := "CORK_CA_CERT_FILE, CORK_CA_KEY_FILE: not used by cork run"
	if err == nil || !strings.HasPrefix(err.Error(), want) || strings.Contains(err.Error(), "\n") || strings.Contains(err.Error(), "chmod") {
		t.Errorf("Parse(ForRun) = %v, want one line starting %q", err, want)
	}
	// cork proxy still loads it (and says what is wrong with it).
	if _, err := parse(t, map[string]string{"CORK_CA_CERT_FILE": filepath.Join(dir, "ca.pem"), "CORK_CA_KEY_FILE": key}, ForProxy); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("Parse(ForProxy) = %v, want the key's mode refused", err)
	}
}
