package settings

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Env renders the settings as CORK_* variables, for a `cork proxy` in
// another process: Load and Parse of the result give the same settings,
// but for the CA, which is passed as the files it came from, and the
// client credential, which Env leaves out (a secret is passed by the
// caller through a channel of its own, never in a listing). Unset and
// default values are left out.
func (p *Proxy) Env() map[string]string {
	m := map[string]string{}
	put := func(flagName, v string) {
		if v != "" {
			m[envName(flagName)] = v
		}
	}
	put("listen", p.Listen)
	put("admin-listen", p.AdminListen)
	put("policy-file", p.PolicyFile)
	put("tokens-file", p.TokensFile)
	put("ca-cert-file", p.CACertFile)
	put("ca-key-file", p.CAKeyFile)
	put("ca-out", p.CAOut)
	put("upstream-ca-file", p.UpstreamCAFile)
	var prefixes []string
	for _, a := range p.AllowPrivate {
		prefixes = append(prefixes, a.String())
	}
	put("allow-private", strings.Join(prefixes, ","))
	var resolve []string
	for _, from := range slices.Sorted(maps.Keys(p.Resolve)) {
		resolve = append(resolve, from+"="+p.Resolve[from])
	}
	put("resolve", strings.Join(resolve, ","))
	put("log-level", p.LogLevel.String())
	put("log-format", p.LogFormat)
	duration := func(flagName string, d time.Duration) {
		if d != 0 {
			put(flagName, d.String())
		}
	}
	duration("response-header-timeout", p.Limits.ResponseHeaderTimeout)
	duration("read-header-timeout", p.Limits.ReadHeaderTimeout)
	duration("client-idle-timeout", p.Limits.ClientIdleTimeout)
	duration("tunnel-idle-timeout", p.Limits.TunnelIdleTimeout)
	if n := p.Limits.MaxResponseHeaderBytes; n != 0 {
		put("max-response-header-bytes", strconv.FormatInt(n, 10))
	}
	switch n := p.Limits.MaxConnsPerClient; {
	case n < 0:
		put("max-conns-per-client", "0") // no bound
	case n > 0:
		put("max-conns-per-client", strconv.Itoa(n))
	}
	if p.ExitOnStdinEOF {
		put("exit-on-stdin-eof", "true")
	}
	duration("exit-on-stdin-idle", p.ExitOnStdinIdle)
	if p.ReadyFD != 0 {
		put("ready-fd", strconv.Itoa(p.ReadyFD))
	}
	put("session-id", p.SessionID)
	return m
}

// Container says where a sidecar `cork proxy` finds and puts its files,
// and where it listens, inside its container.
type Container struct {
	Listen         string // e.g. 0.0.0.0:3128
	PolicyFile     string // the policy, mounted
	UpstreamCAFile string // where Sidecar.UpstreamCA is mounted
	CAOut          string // where the proxy writes its CA certificate
}

// Sidecar is what the docker backend gives its `cork proxy` container:
// the environment (K=V, sorted, no secret), the upstream roots to mount
// at Container.UpstreamCAFile (nil: none) and the `docker create
// --publish` of the admin listener (empty: none).
type Sidecar struct {
	Env        []string
	UpstreamCA []byte
	Publish    string
}

// Sidecar renders the settings for a `cork proxy` in container c: its
// token map comes on stdin, whose end shuts it down; it logs JSON on
// stderr (relayed to cork's logger) and writes its readiness line on
// stdout (ReadyFD 1). It never sets ExitOnStdinIdle: the docker
// backend's sidecar sees the end of stdin instead, and a launcher that
// writes heartbeats (the kubernetes backend) adds ExitOnStdinIdleVar to
// Env itself. Errors name the variable that the sidecar cannot honour.
func (p *Proxy) Sidecar(c Container) (*Sidecar, error) {
	q := *p
	q.Listen, q.PolicyFile, q.TokensFile, q.CAOut = c.Listen, c.PolicyFile, "-", c.CAOut
	q.LogFormat = "json"
	q.ExitOnStdinEOF = true
	q.ExitOnStdinIdle = 0
	q.ReadyFD = 1
	out := &Sidecar{}
	var errs []error
	if q.UpstreamCAFile != "" {
		q.UpstreamCAFile, out.UpstreamCA = c.UpstreamCAFile, p.UpstreamCA
	}
	if p.CACertFile != "" || p.CAKeyFile != "" || p.CA != nil {
		errs = append(errs, fmt.Errorf("%s, %s: not supported by the docker backend: its sidecar generates a session CA", envName("ca-cert-file"), envName("ca-key-file")))
		q.CACertFile, q.CAKeyFile, q.CA = "", "", nil
	}
	if a := p.AdminListen; a != "" {
		// The admin listener serves inside the sidecar; publish its
		// port on the host address asked for.
		host, port, err := net.SplitHostPort(a)
		if err != nil || port == "" || port == "0" {
			errs = append(errs, fmt.Errorf("%s: %q: want host:port with a fixed port", envName("admin-listen"), a))
		} else {
			q.AdminListen = "0.0.0.0:" + port
			out.Publish = port + ":" + port
			if host != "" {
				out.Publish = net.JoinHostPort(host, port) + ":" + port
				if strings.Contains(host, ":") { // docker wants [::1]:P:P
					out.Publish = "[" + host + "]:" + port + ":" + port
				}
			}
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	for k, v := range q.Env() {
		out.Env = append(out.Env, k+"="+v)
	}
	slices.Sort(out.Env)
	return out, nil
}
