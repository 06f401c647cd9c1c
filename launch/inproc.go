package launch

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/cork-sh/cork/proxy"
	"github.com/cork-sh/cork/resolve"
)

// inProcess is a proxy served inside cork (local and smolvm backends):
// tokens never leave the process.
type inProcess struct {
	proxy *proxy.Proxy
	srv   *http.Server
	admin *http.Server
	ln    net.Listener
}

// Policy renders the plan's egress as a proxy policy.
func Policy(spec *Spec) (*proxy.Policy, error) {
	y, err := spec.Plan.Egress.PolicyYAML()
	if err != nil {
		return nil, fmt.Errorf("render policy: %w", err)
	}
	p, err := proxy.ParsePolicy(y)
	if err != nil {
		return nil, fmt.Errorf("policy from the plan: %w", err)
	}
	return p, nil
}

// startInProcess serves a proxy for spec on ln with tokens.
func startInProcess(spec *Spec, ln net.Listener, tokens resolve.Tokens) (*inProcess, error) {
	pol, err := Policy(spec)
	if err != nil {
		return nil, err
	}
	p, err := proxy.New(proxy.Config{
		Policy:          pol,
		Tokens:          tokens,
		Logger:          spec.Proxy.Logger,
		UpstreamRootCAs: spec.Proxy.UpstreamRootCAs,
		AllowPrivate:    spec.Proxy.AllowPrivate,
		Resolve:         spec.Proxy.Resolve,
	})
	if err != nil {
		return nil, fmt.Errorf("start proxy: %w", err)
	}
	ip := &inProcess{proxy: p, ln: ln, srv: &http.Server{Handler: p, ReadHeaderTimeout: 30 * time.Second}}
	if spec.Proxy.AdminListen != "" {
		aln, err := net.Listen("tcp", spec.Proxy.AdminListen)
		if err != nil {
			p.Close()
			return nil, fmt.Errorf("CORK_ADMIN_LISTEN: %w", err)
		}
		ip.admin = &http.Server{Handler: p.AdminHandler(), ReadHeaderTimeout: 10 * time.Second}
		go ip.admin.Serve(aln)
	}
	go ip.srv.Serve(ln)
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
