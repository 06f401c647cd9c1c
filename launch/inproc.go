package launch

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/cork-sh/cork/proxy"
	"github.com/cork-sh/cork/resolve"
	"github.com/cork-sh/cork/settings"
)

// inProcess is a proxy served inside cork (local and smolvm backends):
// tokens never leave the process.
type inProcess struct {
	proxy *proxy.Proxy
	srv   *http.Server
	admin *http.Server
}

// sessionAuth returns a fresh "user:password" for the proxy's client
// authentication (proxy.Config.ClientAuth): the in-process proxy may
// listen where more than the sandbox can reach it (a microVM host's
// address, a shared host's loopback), so only holders of this session
// credential, given to the sandbox in its proxy URL, may use it.
func sessionAuth() string {
	b := make([]byte, 18)
	rand.Read(b)
	return "cork:" + base64.RawURLEncoding.EncodeToString(b)
}

// proxyURL is the proxy URL a sandbox uses: the session credential and
// hostport, the proxy as the sandbox reaches it.
func proxyURL(auth, hostport string) string {
	return "http://" + auth + "@" + hostport
}

// startInProcess serves a proxy for spec on ln with tokens; clients must
// present auth (from sessionAuth).
func startInProcess(spec *Spec, ln net.Listener, tokens resolve.Tokens, auth string) (*inProcess, error) {
	pol, err := spec.Plan.Egress.Policy()
	if err != nil {
		return nil, fmt.Errorf("policy from the plan: %w", err)
	}
	cfg := spec.Proxy.Settings.Config()
	cfg.Policy, cfg.Tokens, cfg.Logger = pol, tokens, spec.Proxy.Logger
	cfg.ClientAuth = resolve.NewSecret(auth)
	cfg.Unlisted = spec.Proxy.Unlisted
	// Every client presents the session credential, on the local
	// backend's socket too: other sandboxes run as the same user and may
	// see its directory (docs/DESIGN.md, decision 15).
	cfg.TrustUnixSockets = false
	// The session CA, name-constrained to the intercepted hosts (the
	// session refuses a given one).
	cfg.CA = nil
	p, err := proxy.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("start proxy: %w", err)
	}
	ip := &inProcess{proxy: p, srv: p.NewServer()}
	if a := spec.Proxy.Settings.AdminListen; a != "" {
		aln, err := net.Listen("tcp", a)
		if err != nil {
			p.Close()
			return nil, fmt.Errorf("%s: %w", settings.AdminListenVar, err)
		}
		ip.admin = &http.Server{Handler: p.AdminHandler(), ReadHeaderTimeout: 10 * time.Second}
		go ip.admin.Serve(aln)
	}
	go ip.srv.Serve(p.LimitListener(ln))
	return ip, nil
}

// Close stops serving and closes every connection and tunnel.
func (ip *inProcess) Close() error {
	err := ip.srv.Close()
	if ip.admin != nil {
		ip.admin.Close()
	}
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return errors.Join(err, ip.proxy.Close())
}
