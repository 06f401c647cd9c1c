package launch

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

// DefaultProbeTimeout bounds the preflight probe: how long the proxy may
// take to answer from the sandbox network once its sidecar is ready.
const DefaultProbeTimeout = 10 * time.Second

// ProbeError is a sandbox network on which the proxy did not answer: the
// agent is not started. It is wrapped in a *SetupError (exit status 2).
type ProbeError struct {
	Proxy   string // the proxy's address on the sandbox network
	Sidecar string // the sidecar container
	Reason  string // the probe's last line, or docker's
}

func (e *ProbeError) Error() string {
	return fmt.Sprintf("docker: the proxy %s (sidecar %s) did not answer on the sandbox network: %s; the agent was not started", e.Proxy, e.Sidecar, e.Reason)
}

// sidecarIP is the sidecar's address on network, as the engine assigned
// it at start.
func (s *dockerSandbox) sidecarIP(ctx context.Context, network string) (string, error) {
	out, err := s.cli.output(ctx, "inspect", "--format",
		fmt.Sprintf(`{{with index .NetworkSettings.Networks %q}}{{.IPAddress}}{{end}}`, network), s.side.name)
	if err != nil {
		return "", err
	}
	ip := net.ParseIP(out)
	if ip == nil {
		return "", fmt.Errorf("docker sidecar %s: no address on the sandbox network %s (inspect printed %q)", s.side.name, network, out)
	}
	return ip.String(), nil
}

// probe proves that the proxy answers at addr from inside the sandbox
// network, before the agent starts: a short-lived container of the
// sidecar image, on that network alone and with no resolver, runs the
// hidden `cork probe`, which retries until the proxy answers (any HTTP
// response) or timeout passes.
func (s *dockerSandbox) probe(ctx context.Context, spec *Spec, network, addr string) error {
	timeout := s.cfg.ProbeTimeout
	if timeout <= 0 {
		timeout = DefaultProbeTimeout
	}
	url := "http://" + addr
	args := []string{"run", "--rm", "--name", s.name("probe")}
	args = append(args, s.labels("probe")...)
	args = append(args,
		"--network", network, "--dns", "127.0.0.1",
		"--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
		"--entrypoint", "/cork", s.sidecarImage,
		"probe", "--timeout", timeout.String(), url)
	// The engine's own work (create, start, remove) is bounded apart.
	pctx, cancel := context.WithTimeout(ctx, timeout+30*time.Second)
	defer cancel()
	start := time.Now()
	out, err := s.cli.output(pctx, args...)
	if err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return cerr
		}
		reason := err.Error()
		var de *dockerError
		if errors.As(err, &de) && de.msg != "" {
			reason = de.msg
		}
		reason = strings.TrimPrefix(reason, "cork: probe: proxy "+addr+": ")
		if strings.Contains(reason, `unknown command "probe"`) {
			reason = "the sidecar image " + s.sidecarImage + " predates `cork probe`: rebuild it with `make image`"
		}
		return &SetupError{&ProbeError{Proxy: addr, Sidecar: s.side.name, Reason: reason}}
	}
	spec.progress("docker: preflight: the proxy answered on the sandbox network in %v (%s)", time.Since(start).Round(time.Millisecond), firstLine(out))
	return nil
}

// proxyAddr is host:port of the proxy at ip.
func proxyAddr(ip string) string { return net.JoinHostPort(ip, strconv.Itoa(ProxyPort)) }
