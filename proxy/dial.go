package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"syscall"

	"code.dny.dev/ssrf"
)

// ErrPrivateAddress is wrapped by dial errors for destinations the
// private-address guard refuses: loopback, RFC 1918, link-local (cloud
// metadata), CGNAT, multicast, unspecified, reserved and documentation
// ranges, IPv6 outside global unicast (ULA, link-local, IPv4-mapped), unless
// inside Config.AllowPrivate.
var ErrPrivateAddress = errors.New("private address")

var errBadPort = errors.New("invalid port")

// privateAddressError names the refused destination (a host or an IP the
// client asked for; never anything secret).
type privateAddressError struct {
	target string
}

func (e *privateAddressError) Error() string {
	return "dial " + e.target + ": " + ErrPrivateAddress.Error()
}

func (e *privateAddressError) Unwrap() error { return ErrPrivateAddress }

// dialer is the only way out: the Transport and goproxy's tunnels both dial
// through DialContext. It resolves a name once, refuses the whole answer if
// any address is guarded, then dials only the checked addresses; Control
// checks the socket address again before connect(2), so a rebinding
// resolver cannot slip another address in.
type dialer struct {
	guard   *ssrf.Guardian
	resolve map[string]string // normalised "host:port" → "addr:port"
	// lookup and dial are replaced in tests.
	lookup func(ctx context.Context, host string) ([]netip.Addr, error)
	dial   func(ctx context.Context, network, addr string) (net.Conn, error)
}

func newDialer(cfg Config) (*dialer, error) {
	var v4, v6 []netip.Prefix
	for _, p := range cfg.AllowPrivate {
		if p.Addr().Is4() {
			v4 = append(v4, p.Masked())
		} else {
			v6 = append(v6, p.Masked())
		}
	}
	d := &dialer{
		guard: ssrf.New(
			ssrf.WithAnyPort(),
			ssrf.WithAllowedV4Prefixes(v4...),
			ssrf.WithAllowedV6Prefixes(v6...),
		),
		resolve: make(map[string]string, len(cfg.Resolve)),
		lookup: func(ctx context.Context, host string) ([]netip.Addr, error) {
			return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		},
	}
	for k, v := range cfg.Resolve {
		nk, err := resolveKey(k)
		if err != nil {
			return nil, fmt.Errorf("resolve %q: %w", k, err)
		}
		d.resolve[nk] = v
	}
	nd := &net.Dialer{
		Timeout: orDefault(cfg.DialTimeout, DefaultDialTimeout),
		Control: d.control,
	}
	d.dial = nd.DialContext
	return d, nil
}

// control runs on the socket before connect(2): the last line of defence.
func (d *dialer) control(network, address string, _ syscall.RawConn) error {
	if err := d.guard.Safe(network, address, nil); err != nil {
		return &privateAddressError{target: address}
	}
	return nil
}

// DialContext dials addr ("host:port") after the guard approves it.
func (d *dialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	host, port, err := splitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	key := net.JoinHostPort(host, strconv.Itoa(port))
	if o, ok := d.resolve[key]; ok {
		// The override target is guarded like any other address.
		host, port, _ = splitHostPort(o) // validated by Config.Validate
	}
	var ips []netip.Addr
	if ip, err := netip.ParseAddr(host); err == nil {
		ips = []netip.Addr{ip}
	} else {
		ips, err = d.lookup(ctx, host)
		if err != nil {
			return nil, fmt.Errorf("resolve %s: %w", host, err)
		}
		if len(ips) == 0 {
			return nil, fmt.Errorf("resolve %s: no addresses", host)
		}
		for i, ip := range ips {
			ips[i] = ip.Unmap() // resolvers return A records as ::ffff:a.b.c.d
		}
	}
	for _, ip := range ips {
		if d.guard.SafeAddr(ip) != nil {
			return nil, &privateAddressError{target: key}
		}
	}
	var first error
	for _, ip := range ips {
		c, err := d.dial(ctx, network, netip.AddrPortFrom(ip, uint16(port)).String())
		if err == nil {
			return c, nil
		}
		if first == nil {
			first = err
		}
		if ctx.Err() != nil {
			break
		}
	}
	return nil, first
}

// splitHostPort splits and normalises "host:port"; the port must be there
// and 1–65535.
func splitHostPort(hp string) (host string, port int, err error) {
	if _, _, err := net.SplitHostPort(hp); err != nil {
		return "", 0, errors.New("want host:port")
	}
	return hostPortOf(hp, 0)
}

// resolveKey normalises a Config.Resolve key.
func resolveKey(k string) (string, error) {
	h, p, err := splitHostPort(k)
	if err != nil {
		return "", err
	}
	return net.JoinHostPort(h, strconv.Itoa(p)), nil
}

func joinHostPort(host string, port int) string {
	return net.JoinHostPort(host, strconv.Itoa(port))
}
