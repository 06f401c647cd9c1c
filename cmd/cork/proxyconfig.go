package main

import (
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/caarlos0/env/v11"
	"github.com/rs/zerolog"

	"github.com/cork-sh/cork/launch"
	"github.com/cork-sh/cork/policy"
	"github.com/cork-sh/cork/proxy"
	"github.com/cork-sh/cork/proxy/pki"
)

// proxySettings are the CORK_* settings shared by `cork proxy` and the
// proxy that `cork run` starts. Every field is a string so that each bad
// value gets an error naming its variable or flag.
type proxySettings struct {
	Listen         string `env:"CORK_LISTEN" envDefault:"127.0.0.1:3128"`
	AdminListen    string `env:"CORK_ADMIN_LISTEN"`
	PolicyFile     string `env:"CORK_POLICY_FILE"`
	TokensFile     string `env:"CORK_TOKENS_FILE" envDefault:"-"`
	CACertFile     string `env:"CORK_CA_CERT_FILE"`
	CAKeyFile      string `env:"CORK_CA_KEY_FILE"`
	CAOut          string `env:"CORK_CA_OUT"`
	UpstreamCAFile string `env:"CORK_UPSTREAM_CA_FILE"`
	AllowPrivate   string `env:"CORK_ALLOW_PRIVATE"`
	Resolve        string `env:"CORK_RESOLVE"`
	LogLevel       string `env:"CORK_LOG_LEVEL" envDefault:"info"`
	LogFormat      string `env:"CORK_LOG_FORMAT" envDefault:"json"`
	ClientAuth     string `env:"CORK_CLIENT_AUTH"`
	ClientAuthFile string `env:"CORK_CLIENT_AUTH_FILE"`

	ResponseHeaderTimeout  string `env:"CORK_RESPONSE_HEADER_TIMEOUT"`
	MaxResponseHeaderBytes string `env:"CORK_MAX_RESPONSE_HEADER_BYTES"`
	ReadHeaderTimeout      string `env:"CORK_READ_HEADER_TIMEOUT"`
	ClientIdleTimeout      string `env:"CORK_CLIENT_IDLE_TIMEOUT"`
	TunnelIdleTimeout      string `env:"CORK_TUNNEL_IDLE_TIMEOUT"`
	MaxConnsPerClient      string `env:"CORK_MAX_CONNS_PER_CLIENT"`

	// ExitOnStdinEOF is `cork proxy` only (not in settingFlags, which
	// `cork run` shares): see proxyOnlyFlags.
	ExitOnStdinEOF string `env:"CORK_EXIT_ON_STDIN_EOF"`

	set map[string]bool // flags given on the command line
}

// settingFlags lists each setting's flag, variable, help and field.
var settingFlags = []struct {
	flag, env, usage string
	field            func(*proxySettings) *string
}{
	{"listen", "CORK_LISTEN", "proxy address", func(s *proxySettings) *string { return &s.Listen }},
	{"admin-listen", "CORK_ADMIN_LISTEN", "address for /healthz, /readyz and /metrics (empty: off)", func(s *proxySettings) *string { return &s.AdminListen }},
	{"policy-file", "CORK_POLICY_FILE", "policy file (YAML or JSON)", func(s *proxySettings) *string { return &s.PolicyFile }},
	{"tokens-file", "CORK_TOKENS_FILE", "token map file {\"slot\":\"value\"} (mode 0600); - reads a stream of JSON objects from stdin, one per line, skipping malformed ones", func(s *proxySettings) *string { return &s.TokensFile }},
	{"ca-cert-file", "CORK_CA_CERT_FILE", "CA certificate (PEM); empty with --ca-key-file empty: generate a session CA", func(s *proxySettings) *string { return &s.CACertFile }},
	{"ca-key-file", "CORK_CA_KEY_FILE", "CA private key (PEM)", func(s *proxySettings) *string { return &s.CAKeyFile }},
	{"ca-out", "CORK_CA_OUT", "write the CA certificate (never the key) here for the sandbox to trust", func(s *proxySettings) *string { return &s.CAOut }},
	{"upstream-ca-file", "CORK_UPSTREAM_CA_FILE", "extra PEM roots for upstream TLS", func(s *proxySettings) *string { return &s.UpstreamCAFile }},
	{"allow-private", "CORK_ALLOW_PRIVATE", "comma-separated CIDRs exempt from the private-address guard", func(s *proxySettings) *string { return &s.AllowPrivate }},
	{"resolve", "CORK_RESOLVE", "host:port=addr:port,... dial overrides, like curl --resolve", func(s *proxySettings) *string { return &s.Resolve }},
	{"log-level", "CORK_LOG_LEVEL", "trace, debug, info, warn or error", func(s *proxySettings) *string { return &s.LogLevel }},
	{"log-format", "CORK_LOG_FORMAT", "json or console", func(s *proxySettings) *string { return &s.LogFormat }},
	{"client-auth-file", "CORK_CLIENT_AUTH_FILE", "file (mode 0600) holding user:password that clients must send as Proxy-Authorization (also $CORK_CLIENT_AUTH); empty: no client authentication", func(s *proxySettings) *string { return &s.ClientAuthFile }},
	{"response-header-timeout", "CORK_RESPONSE_HEADER_TIMEOUT", "how long an upstream may take to send its response head, e.g. 90s" + defaultDuration(proxy.DefaultResponseHeaderTimeout), func(s *proxySettings) *string { return &s.ResponseHeaderTimeout }},
	{"max-response-header-bytes", "CORK_MAX_RESPONSE_HEADER_BYTES", fmt.Sprintf("largest upstream response head, in bytes or with a KiB or MiB suffix, e.g. 512KiB (default %dKiB)", proxy.DefaultMaxResponseHeaderBytes>>10), func(s *proxySettings) *string { return &s.MaxResponseHeaderBytes }},
	{"read-header-timeout", "CORK_READ_HEADER_TIMEOUT", "how long a client may take to send a request head" + defaultDuration(proxy.DefaultReadHeaderTimeout), func(s *proxySettings) *string { return &s.ReadHeaderTimeout }},
	{"client-idle-timeout", "CORK_CLIENT_IDLE_TIMEOUT", "how long a keep-alive client connection may wait for its next request" + defaultDuration(proxy.DefaultClientIdleTimeout), func(s *proxySettings) *string { return &s.ClientIdleTimeout }},
	{"tunnel-idle-timeout", "CORK_TUNNEL_IDLE_TIMEOUT", "how long a tunnel or intercepted connection may go without traffic" + defaultDuration(proxy.DefaultTunnelIdleTimeout), func(s *proxySettings) *string { return &s.TunnelIdleTimeout }},
	{"max-conns-per-client", "CORK_MAX_CONNS_PER_CLIENT", fmt.Sprintf("most concurrent connections from one client address; 0: no bound (default %d)", proxy.DefaultMaxConnsPerClient), func(s *proxySettings) *string { return &s.MaxConnsPerClient }},
}

// proxyOnlyFlags are the settings of `cork proxy` alone, registered by
// registerProxyFlags. They are booleans: --flag alone means true.
var proxyOnlyFlags = []struct {
	flag, env, usage string
	field            func(*proxySettings) *string
}{
	{"exit-on-stdin-eof", "CORK_EXIT_ON_STDIN_EOF", "shut down cleanly when stdin ends (the docker backend's sidecar: the end of its token stream means cork is gone); default false", func(s *proxySettings) *string { return &s.ExitOnStdinEOF }},
}

// registerProxyFlags adds the flags of proxyOnlyFlags to fs, each
// defaulting to the value from the environment.
func (s *proxySettings) registerProxyFlags(fs *flag.FlagSet) {
	for _, f := range proxyOnlyFlags {
		fs.Var(boolSetting{f.field(s)}, f.flag, f.usage+" ($"+f.env+")")
	}
}

// boolSetting is a boolean flag kept as the text given, so that
// validate reports a bad value naming its flag or variable.
type boolSetting struct{ p *string }

func (b boolSetting) String() string {
	if b.p == nil {
		return ""
	}
	return *b.p
}
func (b boolSetting) Set(v string) error { *b.p = v; return nil }
func (b boolSetting) IsBoolFlag() bool   { return true }

// defaultDuration is the " (default 10m)" of a duration setting's help.
func defaultDuration(d time.Duration) string {
	v := d.String()
	if strings.HasSuffix(v, "m0s") {
		v = strings.TrimSuffix(v, "0s")
	}
	if strings.HasSuffix(v, "h0m") {
		v = strings.TrimSuffix(v, "0m")
	}
	return " (default " + v + ")"
}

// loadProxySettings reads the CORK_* variables from env. Flags registered
// with registerFlags and parsed afterwards override them.
func loadProxySettings(environ map[string]string) (*proxySettings, error) {
	s, err := env.ParseAsWithOptions[proxySettings](env.Options{Environment: environ})
	if err != nil {
		return nil, &usageError{err}
	}
	return &s, nil
}

// registerFlags adds one flag per setting to fs, each defaulting to the
// value from the environment, except the flags named in skip.
func (s *proxySettings) registerFlags(fs *flag.FlagSet, skip ...string) {
	for _, f := range settingFlags {
		if !slices.Contains(skip, f.flag) {
			p := f.field(s)
			fs.StringVar(p, f.flag, *p, f.usage+" ($"+f.env+")")
		}
	}
}

// name returns how the user gave a setting: "--flag" if on the command
// line, else its variable.
func (s *proxySettings) name(flagName string) string {
	if s.set[flagName] {
		return "--" + flagName
	}
	for _, f := range settingFlags {
		if f.flag == flagName {
			return f.env
		}
	}
	for _, f := range proxyOnlyFlags {
		if f.flag == flagName {
			return f.env
		}
	}
	return flagName
}

// proxyOptions is the validated form of proxySettings.
type proxyOptions struct {
	listen, adminListen string
	policyFile          string
	tokensFile          string
	ca                  *pki.CA // nil: generate from the policy
	caOut               string
	upstreamRoots       *x509.CertPool
	allowPrivate        []netip.Prefix
	resolve             map[string]string
	logger              zerolog.Logger
	clientAuth          string // "user:password", or empty
	limits              launch.ProxyLimits
	exitOnStdinEOF      bool // shut down when stdin ends
}

// validate checks every setting and returns all problems at once, one line
// each, naming the variable or flag. needPolicy is false for `cork run`,
// which builds its own policy.
func (s *proxySettings) validate(needPolicy bool, logOut io.Writer) (*proxyOptions, error) {
	var errs []error
	bad := func(flagName, format string, a ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", s.name(flagName), fmt.Sprintf(format, a...)))
	}
	o := &proxyOptions{
		listen:      strings.TrimSpace(s.Listen),
		adminListen: strings.TrimSpace(s.AdminListen),
		policyFile:  strings.TrimSpace(s.PolicyFile),
		tokensFile:  strings.TrimSpace(s.TokensFile),
		caOut:       strings.TrimSpace(s.CAOut),
	}
	if err := checkListen(o.listen); err != nil {
		bad("listen", "%v", err)
	}
	if o.adminListen != "" {
		if err := checkListen(o.adminListen); err != nil {
			bad("admin-listen", "%v", err)
		} else if _, port, _ := net.SplitHostPort(o.listen); o.adminListen == o.listen && port != "0" { // port 0: two free ports
			bad("admin-listen", "same address as %s", s.name("listen"))
		}
	}
	if needPolicy {
		if o.policyFile == "" {
			bad("policy-file", "required: the policy file to enforce")
		} else if st, err := os.Stat(o.policyFile); err == nil && !st.IsDir() && !st.Mode().IsRegular() {
			bad("policy-file", "%s: not a regular file", o.policyFile) // a FIFO would block the read
		} else if err := checkPath(o.policyFile, false); err != nil {
			bad("policy-file", "%v", err)
		}
		if o.tokensFile == "" {
			bad("tokens-file", "empty: give a file, or - for stdin")
		} else if o.tokensFile != "-" {
			if err := checkTokensFile(o.tokensFile); err != nil {
				bad("tokens-file", "%v", err)
			}
		}
	}
	certFile, keyFile := strings.TrimSpace(s.CACertFile), strings.TrimSpace(s.CAKeyFile)
	switch {
	case certFile == "" && keyFile == "":
	case certFile == "":
		bad("ca-cert-file", "required when %s is set", s.name("ca-key-file"))
	case keyFile == "":
		bad("ca-key-file", "required when %s is set", s.name("ca-cert-file"))
	default:
		if st, err := os.Stat(keyFile); err == nil && st.Mode().Perm()&0o077 != 0 {
			// docs/SECURITY.md, invariant 6: the CA key lives only in the
			// proxy or a 0600 file.
			bad("ca-key-file", "%s: mode %04o lets others read it; chmod 600 %s", keyFile, st.Mode().Perm(), keyFile)
			break
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
			o.ca = ca
		}
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
			o.upstreamRoots = pool
		}
	}
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
		o.allowPrivate = append(o.allowPrivate, p.Masked())
	}
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
		if o.resolve == nil {
			o.resolve = map[string]string{}
		}
		// Normalised here too, so that two spellings of one host keep
		// the last entry rather than whichever proxy.New meets last.
		h, p, _ := net.SplitHostPort(from)
		if n, err := policy.NormalizeHost(h); err == nil {
			h = n
		}
		o.resolve[net.JoinHostPort(h, p)] = to
	}
	switch authFile := strings.TrimSpace(s.ClientAuthFile); {
	case authFile != "" && s.ClientAuth != "":
		bad("client-auth-file", "set only one of it and CORK_CLIENT_AUTH")
	case authFile != "":
		if err := checkTokensFile(authFile); err != nil {
			bad("client-auth-file", "%v", err)
		} else if data, err := os.ReadFile(authFile); err != nil {
			bad("client-auth-file", "%v", pathError(err))
		} else if o.clientAuth, err = parseClientAuth(string(data)); err != nil {
			bad("client-auth-file", "%s: %v", authFile, err)
		}
	case s.ClientAuth != "":
		var err error
		if o.clientAuth, err = parseClientAuth(s.ClientAuth); err != nil {
			errs = append(errs, fmt.Errorf("CORK_CLIENT_AUTH: %v", err))
		}
	}
	o.limits = s.limits(bad)
	if v := strings.TrimSpace(s.ExitOnStdinEOF); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			bad("exit-on-stdin-eof", "%q: want true or false", v)
		}
		o.exitOnStdinEOF = b
	}
	level, err := zerolog.ParseLevel(strings.ToLower(strings.TrimSpace(s.LogLevel)))
	if err != nil || level == zerolog.NoLevel {
		bad("log-level", "%q: want trace, debug, info, warn or error", s.LogLevel)
	}
	switch f := strings.ToLower(strings.TrimSpace(s.LogFormat)); f {
	case "json", "console":
		o.logger = newLogger(logOut, f, level)
	default:
		bad("log-format", "%q: want json or console", s.LogFormat)
	}
	if len(errs) > 0 {
		return nil, &usageError{errors.Join(errs...)}
	}
	return o, nil
}

// limits parses the timeout and bound settings, reporting each bad one
// through bad. An empty setting is zero: the proxy's default.
func (s *proxySettings) limits(bad func(flagName, format string, a ...any)) launch.ProxyLimits {
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
	var l launch.ProxyLimits
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

// newLogger builds the one logger of the process.
func newLogger(w io.Writer, format string, level zerolog.Level) zerolog.Logger {
	var out = zerolog.New(w)
	if format == "console" {
		out = zerolog.New(zerolog.ConsoleWriter{Out: w, TimeFormat: "15:04:05.000"})
	}
	return out.Level(level).With().Timestamp().Logger()
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

// checkPath checks that path is a readable file (wantDir false) or a
// listable directory (wantDir true).
func checkPath(path string, wantDir bool) error {
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
	switch {
	case wantDir && !st.IsDir():
		return fmt.Errorf("%s: not a directory", path)
	case !wantDir && st.IsDir():
		return fmt.Errorf("%s: is a directory", path)
	case wantDir:
		if _, err := f.Readdirnames(1); err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("%s: %v", path, errors.Unwrap(err))
		}
	}
	return nil
}

// checkTokensFile insists on a private file: tokens are secrets
// (docs/SECURITY.md, invariant 7).
func checkTokensFile(path string) error {
	if err := checkPath(path, false); err != nil {
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

// MinClientAuthPassword is the shortest client password accepted.
const MinClientAuthPassword = 16

// parseClientAuth checks a "user:password" client credential. Errors never
// quote it.
func parseClientAuth(v string) (string, error) {
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
