package settings

import (
	"crypto/x509"
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/cork-sh/cork/policy"
	"github.com/cork-sh/cork/proxy"
	"github.com/cork-sh/cork/proxy/pki"
	"github.com/cork-sh/cork/resolve"
)

// MinClientAuthPassword is the shortest client password accepted.
const MinClientAuthPassword = 16

// Parse checks every setting for cmd and returns the typed settings, or
// all problems at once (errors.Join), one line each, naming the variable
// or flag. No error quotes the client credential.
func (s *Input) Parse(cmd Command) (*Proxy, error) {
	var errs []error
	bad := func(flagName, format string, a ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", s.Name(flagName), fmt.Sprintf(format, a...)))
	}
	o := &Proxy{
		Listen:      strings.TrimSpace(s.Listen),
		AdminListen: strings.TrimSpace(s.AdminListen),
		PolicyFile:  strings.TrimSpace(s.PolicyFile),
		TokensFile:  strings.TrimSpace(s.TokensFile),
		CAOut:       strings.TrimSpace(s.CAOut),
	}
	if err := checkProxyListen(o.Listen); err != nil {
		bad("listen", "%v", err)
	}
	if o.AdminListen != "" {
		if strings.HasPrefix(o.AdminListen, UnixPrefix) {
			bad("admin-listen", "%q: a Unix socket is for %s only; want host:port", o.AdminListen, s.Name("listen"))
		} else if err := checkListen(o.AdminListen); err != nil {
			bad("admin-listen", "%v", err)
		} else if _, port, _ := net.SplitHostPort(o.Listen); o.AdminListen == o.Listen && port != "0" { // port 0: two free ports
			bad("admin-listen", "same address as %s", s.Name("listen"))
		}
	}
	if cmd == ForProxy {
		s.checkProxyFiles(o, bad)
	}
	if err := s.caFor(cmd, o, bad); err != nil {
		errs = append(errs, err)
	}
	if f := strings.TrimSpace(s.UpstreamCAFile); f != "" {
		pem, err := os.ReadFile(f)
		if err != nil {
			bad("upstream-ca-file", "%v", pathError(err))
		} else {
			pool, err := x509.SystemCertPool()
			if err != nil || pool == nil {
				pool = x509.NewCertPool()
			}
			if !pool.AppendCertsFromPEM(pem) {
				bad("upstream-ca-file", "%s: no PEM certificate found", f)
			}
			o.UpstreamCAFile, o.UpstreamCA, o.UpstreamRootCAs = f, pem, pool
		}
	}
	o.AllowPrivate = s.allowPrivate(bad)
	o.Resolve = s.resolve(bad)
	s.parseClientAuth(o, bad, func(err error) { errs = append(errs, err) })
	o.Limits = s.limits(bad)
	if v := strings.TrimSpace(s.ExitOnStdinEOF); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			bad("exit-on-stdin-eof", "%q: want true or false", v)
		}
		o.ExitOnStdinEOF = b
	}
	o.ExitOnStdinIdle = s.exitOnStdinIdle(cmd, o.TokensFile, bad)
	if v := strings.TrimSpace(s.ReadyFD); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			bad("ready-fd", "%q: want a file descriptor number, e.g. 1 for stdout", v)
		}
		o.ReadyFD = n
	}
	o.SessionID = strings.TrimSpace(s.SessionID)
	if err := proxy.CheckSessionID(o.SessionID); err != nil {
		bad("session-id", "%q: %v", o.SessionID, err)
	}
	level, err := zerolog.ParseLevel(strings.ToLower(strings.TrimSpace(s.LogLevel)))
	if err != nil || level == zerolog.NoLevel {
		bad("log-level", "%q: want trace, debug, info, warn or error", s.LogLevel)
	}
	o.LogLevel = level
	switch f := strings.ToLower(strings.TrimSpace(s.LogFormat)); f {
	case "json", "console":
		o.LogFormat = f
	default:
		bad("log-format", "%q: want json or console", s.LogFormat)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return o, nil
}

// exitOnStdinIdle parses the heartbeat timeout: a positive duration,
// and for cork proxy only with the token stream on stdin, whose bytes
// are what it times.
func (s *Input) exitOnStdinIdle(cmd Command, tokensFile string, bad func(flagName, format string, a ...any)) time.Duration {
	v := strings.TrimSpace(s.ExitOnStdinIdle)
	if v == "" {
		return 0
	}
	d, err := time.ParseDuration(v)
	switch {
	case err != nil:
		bad("exit-on-stdin-idle", "%q: want a duration such as 90s or 2m", v)
	case d <= 0:
		bad("exit-on-stdin-idle", "%q: want a positive duration such as 90s", v)
	case cmd == ForProxy && tokensFile != "-":
		bad("exit-on-stdin-idle", "only with %s=- (the token stream on stdin, whose bytes it times)", s.Name("tokens-file"))
	}
	return d
}

// checkProxyFiles checks the policy and tokens files that `cork proxy`
// reads.
func (s *Input) checkProxyFiles(o *Proxy, bad func(flagName, format string, a ...any)) {
	if o.PolicyFile == "" {
		bad("policy-file", "required: the policy file to enforce")
	} else if st, err := os.Stat(o.PolicyFile); err == nil && !st.IsDir() && !st.Mode().IsRegular() {
		bad("policy-file", "%s: not a regular file", o.PolicyFile) // a FIFO would block the read
	} else if err := checkFile(o.PolicyFile); err != nil {
		bad("policy-file", "%v", err)
	}
	if o.TokensFile == "" {
		bad("tokens-file", "empty: give a file, or - for stdin")
	} else if o.TokensFile != "-" {
		if err := checkPrivateFile(o.TokensFile); err != nil {
			bad("tokens-file", "%v", err)
		}
	}
}

// caFor loads the CA of the operator's for cork proxy; cork run refuses
// one (each run makes its own), without reading its key.
func (s *Input) caFor(cmd Command, o *Proxy, bad func(flagName, format string, a ...any)) error {
	if cmd != ForRun {
		s.parseCA(o, bad)
		return nil
	}
	if strings.TrimSpace(s.CACertFile) != "" || strings.TrimSpace(s.CAKeyFile) != "" {
		return fmt.Errorf("%s, %s: not used by cork run: each run makes its own session CA, name-constrained to the intercepted hosts; a CA of your own is for cork proxy",
			s.Name("ca-cert-file"), s.Name("ca-key-file"))
	}
	return nil
}

// parseCA loads the CA given as a certificate and key file, if any.
func (s *Input) parseCA(o *Proxy, bad func(flagName, format string, a ...any)) {
	certFile, keyFile := strings.TrimSpace(s.CACertFile), strings.TrimSpace(s.CAKeyFile)
	o.CACertFile, o.CAKeyFile = certFile, keyFile
	switch {
	case certFile == "" && keyFile == "":
	case certFile == "":
		bad("ca-cert-file", "required when %s is set", s.Name("ca-key-file"))
	case keyFile == "":
		bad("ca-key-file", "required when %s is set", s.Name("ca-cert-file"))
	default:
		if st, err := os.Stat(keyFile); err == nil && st.Mode().Perm()&0o077 != 0 {
			// docs/SECURITY.md, invariant 6: the CA key lives only in the
			// proxy or a 0600 file.
			bad("ca-key-file", "%s: mode %04o lets others read it; chmod 600 %s", keyFile, st.Mode().Perm(), keyFile)
			return
		}
		certPEM, err1 := os.ReadFile(certFile)
		keyPEM, err2 := os.ReadFile(keyFile)
		switch {
		case err1 != nil:
			bad("ca-cert-file", "%v", pathError(err1))
		case err2 != nil:
			bad("ca-key-file", "%v", pathError(err2))
		default:
			ca, err := pki.Load(certPEM, keyPEM)
			if err != nil {
				bad("ca-cert-file", "%s and %s: %v", certFile, keyFile, err)
			}
			o.CA = ca
		}
	}
}

func (s *Input) allowPrivate(bad func(flagName, format string, a ...any)) []netip.Prefix {
	var out []netip.Prefix
	for i, c := range splitList(s.AllowPrivate) {
		p, err := netip.ParsePrefix(c)
		if err != nil {
			if a, err2 := netip.ParseAddr(c); err2 == nil {
				p = netip.PrefixFrom(a, a.BitLen())
			} else {
				bad("allow-private", "entry %d %q: not a CIDR (want e.g. 127.0.0.0/8)", i+1, c)
				continue
			}
		}
		out = append(out, p.Masked())
	}
	return out
}

func (s *Input) resolve(bad func(flagName, format string, a ...any)) map[string]string {
	var out map[string]string
	for i, e := range splitList(s.Resolve) {
		from, to, ok := strings.Cut(e, "=")
		if !ok {
			bad("resolve", "entry %d %q: want host:port=addr:port", i+1, e)
			continue
		}
		if err := checkHostPort(from, 1); err != nil {
			bad("resolve", "entry %d: %q: %v", i+1, from, err)
			continue
		}
		if err := checkHostPort(to, 1); err != nil {
			bad("resolve", "entry %d: %q: %v", i+1, to, err)
			continue
		}
		if out == nil {
			out = map[string]string{}
		}
		// Normalised here too, so that two spellings of one host keep
		// the last entry rather than whichever proxy.New meets last.
		h, p, _ := net.SplitHostPort(from)
		if n, err := policy.NormalizeHost(h); err == nil {
			h = n
		}
		out[net.JoinHostPort(h, p)] = to
	}
	return out
}

// parseClientAuth reads the client credential from its file or
// CORK_CLIENT_AUTH (which has no flag: fail reports its errors as they
// are).
func (s *Input) parseClientAuth(o *Proxy, bad func(flagName, format string, a ...any), fail func(error)) {
	var v string
	switch authFile := strings.TrimSpace(s.ClientAuthFile); {
	case authFile != "" && s.ClientAuth != "":
		bad("client-auth-file", "set only one of it and %s", ClientAuthVar)
	case authFile != "":
		if err := checkPrivateFile(authFile); err != nil {
			bad("client-auth-file", "%v", err)
		} else if data, err := os.ReadFile(authFile); err != nil {
			bad("client-auth-file", "%v", pathError(err))
		} else if v, err = checkClientAuth(string(data)); err != nil {
			bad("client-auth-file", "%s: %v", authFile, err)
		}
	case s.ClientAuth != "":
		var err error
		if v, err = checkClientAuth(s.ClientAuth); err != nil {
			fail(fmt.Errorf("%s: %w", ClientAuthVar, err))
		}
	}
	o.ClientAuth = resolve.NewSecret(v)
}

// limits parses the timeout and bound settings, reporting each bad one
// through bad. An empty setting is zero: the proxy's default.
func (s *Input) limits(bad func(flagName, format string, a ...any)) Limits {
	duration := func(flagName, v string) time.Duration {
		v = strings.TrimSpace(v)
		if v == "" {
			return 0
		}
		d, err := time.ParseDuration(v)
		switch {
		case err != nil:
			bad(flagName, "%q: want a duration such as 30s, 2m or 1h30m", v)
		case d <= 0:
			bad(flagName, "%q: want a positive duration such as 30s", v)
		}
		return d
	}
	var l Limits
	l.ResponseHeaderTimeout = duration("response-header-timeout", s.ResponseHeaderTimeout)
	l.ReadHeaderTimeout = duration("read-header-timeout", s.ReadHeaderTimeout)
	l.ClientIdleTimeout = duration("client-idle-timeout", s.ClientIdleTimeout)
	l.TunnelIdleTimeout = duration("tunnel-idle-timeout", s.TunnelIdleTimeout)
	if v := strings.TrimSpace(s.MaxResponseHeaderBytes); v != "" {
		n, err := parseSize(v)
		if err != nil {
			bad("max-response-header-bytes", "%q: %v", v, err)
		}
		l.MaxResponseHeaderBytes = n
	}
	if v := strings.TrimSpace(s.MaxConnsPerClient); v != "" {
		n, err := strconv.Atoi(v)
		switch {
		case err != nil || n < 0:
			bad("max-conns-per-client", "%q: want a number of connections, or 0 for no bound", v)
		case n == 0:
			l.MaxConnsPerClient = -1 // proxy.Config: negative is no bound
		default:
			l.MaxConnsPerClient = n
		}
	}
	return l
}

// parseSize parses a positive byte count: digits, optionally followed by
// KiB (×1024) or MiB (×1024²), e.g. 65536, 64KiB or 1MiB.
func parseSize(v string) (int64, error) {
	digits, unit := v, int64(1)
	for suffix, u := range map[string]int64{"KiB": 1 << 10, "MiB": 1 << 20} {
		if d, ok := strings.CutSuffix(v, suffix); ok {
			digits, unit = d, u
		}
	}
	digits = strings.TrimSpace(digits)
	n, err := strconv.ParseInt(digits, 10, 64)
	switch {
	case err != nil || digits == "" || digits[0] < '0' || digits[0] > '9':
		return 0, errors.New("want a size in bytes, or with a KiB or MiB suffix, e.g. 65536 or 64KiB")
	case n <= 0:
		return 0, errors.New("want a positive size")
	case n > math.MaxInt64/unit:
		return 0, errors.New("too large")
	}
	return n * unit, nil
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func checkListen(addr string) error {
	if addr == "" {
		return errors.New("empty: want host:port, e.g. 127.0.0.1:3128")
	}
	return checkHostPort(addr, 0) // port 0: any free port
}

// checkHostPort checks "host:port" with a port from minPort to 65535.
func checkHostPort(addr string, minPort int) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return errors.New("want host:port")
	}
	var n int
	if _, err := fmt.Sscanf(port, "%d", &n); err != nil || n < minPort || n > 65535 || fmt.Sprint(n) != port {
		return fmt.Errorf("bad port %q", port)
	}
	return nil
}

// checkFile checks that path is a readable file, not a directory.
func checkFile(path string) error {
	// Non-blocking, so that a FIFO is opened and checked, not waited on.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return pathError(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return pathError(err)
	}
	if st.IsDir() {
		return fmt.Errorf("%s: is a directory", path)
	}
	return nil
}

// checkPrivateFile insists on a private file: tokens and credentials are
// secrets (docs/SECURITY.md, invariant 7).
func checkPrivateFile(path string) error {
	if err := checkFile(path); err != nil {
		return err
	}
	st, err := os.Stat(path)
	if err != nil {
		return pathError(err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("%s: mode %04o lets others read it; chmod 600 %s", path, st.Mode().Perm(), path)
	}
	return nil
}

// pathError shortens an *os.PathError to "path: reason".
func pathError(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: %v", pe.Path, pe.Err)
	}
	return err
}

// checkClientAuth checks a "user:password" client credential and returns
// it trimmed. Errors never quote it.
func checkClientAuth(v string) (string, error) {
	v = strings.TrimSpace(v)
	user, pass, ok := strings.Cut(v, ":")
	switch {
	case !ok || user == "":
		return "", errors.New("want user:password")
	case len(pass) < MinClientAuthPassword:
		return "", fmt.Errorf("password shorter than %d characters", MinClientAuthPassword)
	case strings.ContainsAny(v, " \t\r\n"):
		return "", errors.New("no white space allowed")
	}
	return v, nil
}
