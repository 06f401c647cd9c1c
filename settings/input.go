package settings

import (
	"flag"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/caarlos0/env/v11"

	"github.com/cork-sh/cork/proxy"
)

// Variables that launchers name: the client credential (no flag: its
// value would be in argv), the admin listener, the readiness descriptor
// and the CA files (which `cork run` refuses).
const (
	ClientAuthVar  = "CORK_CLIENT_AUTH"
	AdminListenVar = "CORK_ADMIN_LISTEN"
	ReadyFDVar     = "CORK_READY_FD"
	SessionIDVar   = "CORK_SESSION_ID"
	CACertFileVar  = "CORK_CA_CERT_FILE"
	CAKeyFileVar   = "CORK_CA_KEY_FILE"
)

// ExitOnStdinIdleVar is the heartbeat timeout of a proxy whose token
// stream cannot end (a Kubernetes pod's stdin): a launcher that sets it
// writes a blank line to the stream more often than that (Sidecar never
// sets it).
const ExitOnStdinIdleVar = "CORK_EXIT_ON_STDIN_IDLE"

// Input is the CORK_* settings as given: from the environment (Load),
// then flags (RegisterFlags, FlagsParsed). Every field is a string so
// that Parse reports each bad value naming its variable or flag. The
// zero value is no setting at all, without the defaults Load applies.
// An Input is not safe for concurrent use.
type Input struct {
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

	ExitOnStdinEOF  string `env:"CORK_EXIT_ON_STDIN_EOF"`
	ExitOnStdinIdle string `env:"CORK_EXIT_ON_STDIN_IDLE"`
	ReadyFD         string `env:"CORK_READY_FD"`
	SessionID       string `env:"CORK_SESSION_ID"`

	set map[string]bool // flags given on the command line
}

// setting is one row of the table: a flag, its variable, its help and
// the Input field holding it.
type setting struct {
	flag, env, usage string
	// proxyOnly: a flag of `cork proxy` alone; `cork run` picks these
	// itself (its policy, token stream, listener, client credential).
	proxyOnly bool
	boolFlag  bool // --flag alone means true
	field     func(*Input) *string
}

// table lists every setting that has a flag. CORK_CLIENT_AUTH has none.
var table = []setting{
	{"listen", "CORK_LISTEN", "proxy address: host:port, or unix:/path/to/proxy.sock (a Unix socket, mode 0600, in an existing directory of mode 0700; its clients need no client credential)", true, false, func(s *Input) *string { return &s.Listen }},
	{"admin-listen", AdminListenVar, "address for /healthz, /readyz and /metrics (empty: off)", false, false, func(s *Input) *string { return &s.AdminListen }},
	{"policy-file", "CORK_POLICY_FILE", "policy file (YAML or JSON)", true, false, func(s *Input) *string { return &s.PolicyFile }},
	{"tokens-file", "CORK_TOKENS_FILE", "token map file {\"slot\":\"value\"} (mode 0600); - reads a stream of JSON objects from stdin, one per line, skipping malformed ones", true, false, func(s *Input) *string { return &s.TokensFile }},
	{"ca-cert-file", "CORK_CA_CERT_FILE", "CA certificate (PEM); empty with --ca-key-file empty: generate a session CA", false, false, func(s *Input) *string { return &s.CACertFile }},
	{"ca-key-file", "CORK_CA_KEY_FILE", "CA private key (PEM)", false, false, func(s *Input) *string { return &s.CAKeyFile }},
	{"ca-out", "CORK_CA_OUT", "write the CA certificate (never the key) here for the sandbox to trust", true, false, func(s *Input) *string { return &s.CAOut }},
	{"upstream-ca-file", "CORK_UPSTREAM_CA_FILE", "extra PEM roots for upstream TLS", false, false, func(s *Input) *string { return &s.UpstreamCAFile }},
	{"allow-private", "CORK_ALLOW_PRIVATE", "comma-separated CIDRs exempt from the private-address guard", false, false, func(s *Input) *string { return &s.AllowPrivate }},
	{"resolve", "CORK_RESOLVE", "host:port=addr:port,... dial overrides, like curl --resolve", false, false, func(s *Input) *string { return &s.Resolve }},
	{"log-level", "CORK_LOG_LEVEL", "trace, debug, info, warn or error", false, false, func(s *Input) *string { return &s.LogLevel }},
	{"log-format", "CORK_LOG_FORMAT", "json or console", false, false, func(s *Input) *string { return &s.LogFormat }},
	{"client-auth-file", "CORK_CLIENT_AUTH_FILE", "file (mode 0600) holding user:password that clients must send as Proxy-Authorization (also $CORK_CLIENT_AUTH); empty: no client authentication", true, false, func(s *Input) *string { return &s.ClientAuthFile }},
	{"response-header-timeout", "CORK_RESPONSE_HEADER_TIMEOUT", "how long an upstream may take to send its response head, e.g. 90s" + defaultDuration(proxy.DefaultResponseHeaderTimeout), false, false, func(s *Input) *string { return &s.ResponseHeaderTimeout }},
	{"max-response-header-bytes", "CORK_MAX_RESPONSE_HEADER_BYTES", fmt.Sprintf("largest upstream response head, in bytes or with a KiB or MiB suffix, e.g. 512KiB (default %dKiB)", proxy.DefaultMaxResponseHeaderBytes>>10), false, false, func(s *Input) *string { return &s.MaxResponseHeaderBytes }},
	{"read-header-timeout", "CORK_READ_HEADER_TIMEOUT", "how long a client may take to send a request head" + defaultDuration(proxy.DefaultReadHeaderTimeout), false, false, func(s *Input) *string { return &s.ReadHeaderTimeout }},
	{"client-idle-timeout", "CORK_CLIENT_IDLE_TIMEOUT", "how long a keep-alive client connection may wait for its next request" + defaultDuration(proxy.DefaultClientIdleTimeout), false, false, func(s *Input) *string { return &s.ClientIdleTimeout }},
	{"tunnel-idle-timeout", "CORK_TUNNEL_IDLE_TIMEOUT", "how long a tunnel or intercepted connection may go without traffic" + defaultDuration(proxy.DefaultTunnelIdleTimeout), false, false, func(s *Input) *string { return &s.TunnelIdleTimeout }},
	{"max-conns-per-client", "CORK_MAX_CONNS_PER_CLIENT", fmt.Sprintf("most concurrent connections from one client address; 0: no bound (default %d)", proxy.DefaultMaxConnsPerClient), false, false, func(s *Input) *string { return &s.MaxConnsPerClient }},
	{"exit-on-stdin-eof", "CORK_EXIT_ON_STDIN_EOF", "shut down cleanly when stdin ends (the docker backend's sidecar: the end of its token stream means cork is gone); default false", true, true, func(s *Input) *string { return &s.ExitOnStdinEOF }},
	{"exit-on-stdin-idle", ExitOnStdinIdleVar, "shut down cleanly when no byte has come on stdin for this long, e.g. 90s; only with --tokens-file - (the kubernetes backend's proxy pod, whose stdin never ends: cork writes a blank line as a heartbeat); empty: never", true, false, func(s *Input) *string { return &s.ExitOnStdinIdle }},
	{"ready-fd", ReadyFDVar, "file descriptor (1: stdout) on which to write one JSON line {\"ready\":true,...} once the proxy listens and has its first token map; empty: none", true, false, func(s *Input) *string { return &s.ReadyFD }},
	{"session-id", SessionIDVar, "an id written as \"session\" on every log line, to tell sessions apart in a shared log (letters, digits, - _ .); cork run sets its own; empty: none", true, false, func(s *Input) *string { return &s.SessionID }},
}

// Load reads the CORK_* variables from environ, with their defaults.
// Flags registered with RegisterFlags and parsed afterwards override them.
func Load(environ map[string]string) (*Input, error) {
	s, err := env.ParseAsWithOptions[Input](env.Options{Environment: environ})
	if err != nil {
		return nil, fmt.Errorf("settings: %w", err)
	}
	return &s, nil
}

// Command is the cork command whose settings are registered and parsed.
type Command int

const (
	// ForProxy is `cork proxy`: every flag; CORK_POLICY_FILE is required
	// and the tokens file is checked.
	ForProxy Command = iota
	// ForRun is `cork run`: it builds its own policy and token stream,
	// picks its listener and client credential, so those flags are not
	// its own.
	ForRun
)

// RegisterFlags adds the flags of cmd to fs, each defaulting to the value
// from the environment. Call FlagsParsed after fs.Parse.
func (s *Input) RegisterFlags(fs *flag.FlagSet, cmd Command) {
	for _, f := range table {
		if f.proxyOnly && cmd != ForProxy {
			continue
		}
		p := f.field(s)
		usage := f.usage + " ($" + f.env + ")"
		if f.boolFlag {
			fs.Var(boolFlag{p}, f.flag, usage)
		} else {
			fs.StringVar(p, f.flag, *p, usage)
		}
	}
}

// FlagsParsed records which flags fs was given, so that errors name them
// rather than their variables.
func (s *Input) FlagsParsed(fs *flag.FlagSet) {
	s.set = map[string]bool{}
	fs.Visit(func(f *flag.Flag) { s.set[f.Name] = true })
}

// Name returns how the user gave the setting of flagName: "--flag" if on
// the command line, else its variable.
func (s *Input) Name(flagName string) string {
	if s.set[flagName] {
		return "--" + flagName
	}
	for _, f := range table {
		if f.flag == flagName {
			return f.env
		}
	}
	return flagName
}

// boolFlag is a boolean flag kept as the text given, so that Parse
// reports a bad value naming its flag or variable.
type boolFlag struct{ p *string }

func (b boolFlag) String() string {
	if b.p == nil {
		return ""
	}
	return *b.p
}
func (b boolFlag) Set(v string) error { *b.p = v; return nil }
func (b boolFlag) IsBoolFlag() bool   { return true }

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

// envName is the variable of flagName, for rendering.
func envName(flagName string) string {
	i := slices.IndexFunc(table, func(f setting) bool { return f.flag == flagName })
	return table[i].env
}
