package launch_test

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"testing"
	"time"

	"github.com/cork-sh/cork/internal/testing/upstreamtest"
	"github.com/cork-sh/cork/provision"
	"github.com/cork-sh/cork/proxy"
	"github.com/cork-sh/cork/resolve"
)

// TestInjection runs the proxy on the policy of a plan built by the
// github, claude and generic profiles and checks what upstream
// receives for the headers the sandbox's clients send: gh's "token", curl's
// "Bearer", git's Basic, Claude Code's x-api-key, a generic raw header.
func TestInjection(t *testing.T) {
	const (
		realGH     = "ghp_REALZ2G8Kl5NHV9CZoEG1WBj3OwMqYkloCsY"
		realClaude = "sk-ant-api03-REALKEY0123456789abcdefghijklmnop"
		realAcme   = "acme_REALACMEKEY0123456789abcdefghijklmn"
	)
	hostEnv := map[string]string{"GH_TOKEN": realGH, "ANTHROPIC_API_KEY": realClaude, "ACME_KEY": realAcme}
	plan, err := provision.Build(provision.Options{HostEnv: hostEnv}, provision.GitHub{}, provision.Claude{},
		provision.Generic{Bindings: []provision.Binding{{Host: "api.acme.test", Env: "ACME_KEY", Header: "X-Acme-Key"}}})
	if err != nil {
		t.Fatalf("Build() error = %v", err)
	}
	tokens, err := resolve.Values(plan.Egress.TokenEnvMap, resolve.Merge(hostEnv, plan.ProvisionedEnv))
	if err != nil {
		t.Fatal(err)
	}

	hosts := []string{"api.github.com", "github.com", "api.anthropic.com", "api.acme.test"}
	up := upstreamtest.New(t, upstreamtest.Config{Hosts: hosts})
	resolveMap := map[string]string{}
	for _, h := range hosts {
		resolveMap[h+":443"] = up.Addr()
	}
	pol, err := plan.Egress.Policy()
	if err != nil {
		t.Fatalf("Egress.Policy() error = %v", err)
	}
	p, err := proxy.New(proxy.Config{
		Policy:          pol,
		Tokens:          tokens,
		UpstreamRootCAs: up.Roots(),
		AllowPrivate:    []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		Resolve:         resolveMap,
	})
	if err != nil {
		t.Fatalf("proxy.New() error = %v", err)
	}
	t.Cleanup(func() { p.Close() })
	ps := httptest.NewServer(p)
	t.Cleanup(ps.Close)
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(p.CACertPEM()) {
		t.Fatal("proxy CA: no certificate")
	}
	proxyURL, err := url.Parse(ps.URL)
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{Proxy: http.ProxyURL(proxyURL), TLSClientConfig: &tls.Config{RootCAs: roots}}
	t.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: tr, Timeout: 20 * time.Second}

	gh := plan.Env["GH_TOKEN"]
	basic := func(user, pass string) string {
		return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
	}
	tests := []struct {
		name, url, header, value, want string
	}{
		{"gh token", "https://api.github.com/user", "Authorization", "token " + gh, "token " + realGH},
		{"curl bearer", "https://api.github.com/user", "Authorization", "Bearer " + gh, "Bearer " + realGH},
		{"git basic", "https://github.com/cli/cli.git/info/refs", "Authorization", basic("x-access-token", gh), basic("x-access-token", realGH)},
		{"claude api key", "https://api.anthropic.com/v1/messages", "X-Api-Key", plan.Env["ANTHROPIC_API_KEY"], realClaude},
		{"generic raw", "https://api.acme.test/v1/things", "X-Acme-Key", plan.Env["ACME_KEY"], realAcme},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodGet, tt.url, nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set(tt.header, tt.value)
			resp, err := client.Do(req)
			if err != nil {
				t.Fatalf("GET %s: %v", tt.url, err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("GET %s = %d %q (%s), want 200", tt.url, resp.StatusCode, body, resp.Header.Get("X-Cork-Deny-Reason"))
			}
			if v := up.Last(t).Header.Get(tt.header); v != tt.want {
				t.Errorf("upstream %s = %q, want the real credential %s", tt.header, redact(v), redact(tt.want))
			}
		})
	}

	t.Run("placeholder to an unbound host", func(t *testing.T) {
		req, err := http.NewRequest(http.MethodGet, "https://api.anthropic.com/v1/messages", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+gh)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("GitHub placeholder to api.anthropic.com = %d, want 403", resp.StatusCode)
		}
	})
}

// redact shortens a credential for a failure message.
func redact(s string) string {
	if len(s) > 12 {
		return fmt.Sprintf("%s…(%d)", s[:12], len(s))
	}
	return s
}
