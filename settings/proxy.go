package settings

import (
	"crypto/x509"
	"io"
	"net/netip"
	"time"

	"github.com/rs/zerolog"

	"github.com/cork-sh/cork/proxy"
	"github.com/cork-sh/cork/proxy/pki"
	"github.com/cork-sh/cork/resolve"
)

// Proxy is the parsed form of the settings (Input.Parse): typed, checked
// values. The zero value is a proxy with every default, no admin
// listener, no client authentication and no file named; its LogLevel is
// zerolog's zero, debug. A Proxy is not modified by its methods, which
// are safe for concurrent use.
type Proxy struct {
	Listen      string // host:port (port 0: any free port), or unix:PATH (ListenAddr)
	AdminListen string // empty: no admin listener
	PolicyFile  string // empty: the caller supplies the policy (`cork run`)
	TokensFile  string // "-": a stream of token maps on stdin

	// CACertFile and CAKeyFile name the CA given, which CA holds; all
	// empty or nil: the proxy generates a session CA.
	CACertFile, CAKeyFile string
	CA                    *pki.CA
	CAOut                 string // empty: the CA certificate is not written

	// UpstreamCAFile names extra roots for upstream TLS, UpstreamCA is its
	// PEM and UpstreamRootCAs the system roots plus them; empty and nil:
	// the system roots.
	UpstreamCAFile  string
	UpstreamCA      []byte
	UpstreamRootCAs *x509.CertPool

	AllowPrivate []netip.Prefix    // masked
	Resolve      map[string]string // host:port (host normalised) -> addr:port

	LogLevel  zerolog.Level
	LogFormat string // "json" or "console"; empty: json

	ClientAuth resolve.Secret // "user:password"; zero: none

	Limits Limits

	ExitOnStdinEOF bool // shut down when stdin ends
	// ExitOnStdinIdle shuts the proxy down when no byte has come on stdin,
	// its token stream (TokensFile "-"), for that long; 0: never.
	ExitOnStdinIdle time.Duration
	ReadyFD         int // 0: no readiness line
	// SessionID is proxy.Config.SessionID: written as "session" on every
	// log line; empty: none. `cork run` sets its session's.
	SessionID string
}

// Limits are the proxy's timeouts and bounds. Each field is the
// proxy.Config field of the same name: zero means the proxy's default,
// and a negative MaxConnsPerClient means no bound.
type Limits struct {
	ResponseHeaderTimeout  time.Duration
	MaxResponseHeaderBytes int64
	ReadHeaderTimeout      time.Duration
	ClientIdleTimeout      time.Duration
	TunnelIdleTimeout      time.Duration
	MaxConnsPerClient      int
}

// Config is the proxy.Config of these settings, the one mapping that
// `cork proxy` and the in-process proxy of `cork run` share. The caller
// sets what the settings do not hold: Policy, Tokens and Logger (and may
// replace ClientAuth with a session credential). On a Unix socket
// (Listen unix:PATH) the socket's clients need no ClientAuth
// (TrustUnixSockets): its directory, private to this user, decides who
// connects.
func (p *Proxy) Config() proxy.Config {
	network, _ := p.ListenAddr()
	return proxy.Config{
		CA:               p.CA,
		UpstreamRootCAs:  p.UpstreamRootCAs,
		AllowPrivate:     p.AllowPrivate,
		Resolve:          p.Resolve,
		ClientAuth:       p.ClientAuth,
		TrustUnixSockets: network == "unix",
		SessionID:        p.SessionID,

		ResponseHeaderTimeout:  p.Limits.ResponseHeaderTimeout,
		MaxResponseHeaderBytes: p.Limits.MaxResponseHeaderBytes,
		ReadHeaderTimeout:      p.Limits.ReadHeaderTimeout,
		ClientIdleTimeout:      p.Limits.ClientIdleTimeout,
		TunnelIdleTimeout:      p.Limits.TunnelIdleTimeout,
		MaxConnsPerClient:      p.Limits.MaxConnsPerClient,
	}
}

// Logger builds the process's one logger, writing to w in LogFormat at
// LogLevel.
func (p *Proxy) Logger(w io.Writer) zerolog.Logger {
	out := zerolog.New(w)
	if p.LogFormat == "console" {
		out = zerolog.New(zerolog.ConsoleWriter{Out: w, TimeFormat: "15:04:05.000"})
	}
	return out.Level(p.LogLevel).With().Timestamp().Logger()
}
