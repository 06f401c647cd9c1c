package policy

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"golang.org/x/net/idna"
)

// maxHostLen is the longest DNS name accepted (RFC 1035, without the root dot).
const maxHostLen = 253

// Errors from NormalizeHost. They never carry more than the host itself.
var (
	errEmptyHost    = errors.New("empty host")
	errHostTooLong  = errors.New("host too long")
	errEmptyLabel   = errors.New("empty label")
	errLabelTooLong = errors.New("label longer than 63 bytes")
	errHostChar     = errors.New("invalid character in host")
	errHostHyphen   = errors.New("label starts or ends with a hyphen")
	errNumericHost  = errors.New("numeric host that is not an IP address")
	errIPZone       = errors.New("IPv6 zone not allowed")
	errIDNA         = errors.New("invalid internationalised host")
)

// NormalizeHost lower-cases, strips one trailing dot and IPv6 brackets, and
// converts an IDN to ASCII (IDNA lookup profile). It rejects empty hosts and
// hosts with invalid characters.
//
// IP addresses come back in canonical form (IPv4-mapped IPv6 addresses are
// unmapped to IPv4; IPv6 without brackets). A host whose last label is
// numeric but which is not a valid IPv4 address ("127.1", "0x7f.1") is
// rejected: resolvers may read it as an address, so a name-based policy
// must not. An already-normal ASCII host is returned without allocating.
func NormalizeHost(host string) (string, error) {
	if host == "" {
		return "", errEmptyHost
	}
	if host[0] == '[' {
		if len(host) < 2 || host[len(host)-1] != ']' {
			return "", errHostChar
		}
		return normalizeIP(host[1 : len(host)-1])
	}
	if strings.IndexByte(host, ':') >= 0 {
		return normalizeIP(host)
	}
	if ascii, lower := asciiHostInfo(host); ascii {
		if !lower {
			host = strings.ToLower(host)
		}
	} else {
		h, err := idna.Lookup.ToASCII(host)
		if err != nil {
			return "", errIDNA
		}
		host = h
	}
	host = strings.TrimSuffix(host, ".")
	if host == "" {
		return "", errEmptyHost
	}
	if LooksNumeric(host) {
		a, err := netip.ParseAddr(host)
		if err != nil || !a.Is4() {
			return "", errNumericHost
		}
		return canonicalIP(a, host), nil
	}
	if err := checkDNSName(host); err != nil {
		return "", err
	}
	if hasPunycode(host) && !validPunycode(host) {
		return "", errIDNA
	}
	return host, nil
}

// validPunycode checks each "xn--" label the way IDNA lookup would, and
// rejects labels that do not round-trip.
func validPunycode(host string) bool {
	for label := range strings.SplitSeq(host, ".") {
		if !strings.HasPrefix(label, "xn--") {
			continue
		}
		if h, err := idna.Lookup.ToASCII(label); err != nil || h != label {
			return false
		}
	}
	return true
}

// asciiHostInfo reports whether s is entirely ASCII and whether it has no
// upper-case letters.
func asciiHostInfo(s string) (ascii, lower bool) {
	lower = true
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x80 {
			return false, false
		}
		if 'A' <= c && c <= 'Z' {
			lower = false
		}
	}
	return true, lower
}

func normalizeIP(s string) (string, error) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return "", errHostChar
	}
	if a.Zone() != "" {
		return "", errIPZone
	}
	return canonicalIP(a.Unmap(), s), nil
}

// canonicalIP returns a's canonical text, reusing s (no allocation) when it
// is already that.
func canonicalIP(a netip.Addr, s string) string {
	var buf [64]byte
	if b := a.AppendTo(buf[:0]); string(b) == s {
		return s
	}
	return a.String()
}

// LooksNumeric reports whether the last label of host starts like a number
// (a digit), which WHATWG URL parsing and some resolvers treat as an IPv4
// address in one of its legacy forms.
func LooksNumeric(host string) bool {
	last := host[strings.LastIndexByte(host, '.')+1:]
	if last == "" {
		return false
	}
	for i := 0; i < len(last); i++ {
		c := last[i]
		if c < '0' || c > '9' {
			// "0x7f" style hex is numeric too.
			return len(last) > 1 && last[0] == '0' && (last[1] == 'x' || last[1] == 'X')
		}
	}
	return true
}

// checkDNSName validates a lower-case ASCII DNS name: labels of letters,
// digits, hyphens and underscores, 1–63 bytes, no leading or trailing
// hyphen, at most 253 bytes in all.
func checkDNSName(host string) error {
	if len(host) > maxHostLen {
		return errHostTooLong
	}
	start := 0
	for i := 0; i <= len(host); i++ {
		if i < len(host) && host[i] != '.' {
			c := host[i]
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return errHostChar
			}
			continue
		}
		n := i - start
		switch {
		case n == 0:
			return errEmptyLabel
		case n > 63:
			return errLabelTooLong
		case host[start] == '-' || host[i-1] == '-':
			return errHostHyphen
		}
		start = i + 1
	}
	return nil
}

func hasPunycode(host string) bool {
	return strings.HasPrefix(host, "xn--") || strings.Contains(host, ".xn--")
}

// HostPattern is a parsed policy host entry.
type HostPattern struct {
	host     string     // normalised host, or the suffix after "*." for a wildcard
	wildcard bool       // "*.suffix": proper subdomains of host only
	ip       netip.Addr // valid when the pattern is an IP literal
	port     int        // 0: ports 443 and 80
}

// defaultPorts are the ports a pattern without a port matches.
var defaultPorts = [...]int{443, 80}

// ports returns the ports the pattern matches.
func (p HostPattern) ports() []int {
	if p.port == 0 {
		return defaultPorts[:]
	}
	return []int{p.port}
}

// matchesPort reports whether the pattern applies to port.
func (p HostPattern) matchesPort(port int) bool {
	if p.port == 0 {
		return port == 443 || port == 80
	}
	return p.port == port
}

// portsOverlap reports whether p and q share a port.
func (p HostPattern) portsOverlap(q HostPattern) bool {
	for _, port := range p.ports() {
		if q.matchesPort(port) {
			return true
		}
	}
	return false
}

// name is the pattern's host part as written in constraints and logs:
// "*.example.com", "example.com", "2001:db8::1" (no brackets, no port).
func (p HostPattern) name() string {
	if p.wildcard {
		return "*." + p.host
	}
	return p.host
}

// String is the canonical form of the whole pattern, port included.
func (p HostPattern) String() string {
	n := p.name()
	if p.port == 0 {
		return n
	}
	if p.ip.Is6() {
		n = "[" + n + "]"
	}
	return n + ":" + strconv.Itoa(p.port)
}

// covers reports whether every host:port q matches is also matched by p on
// some shared port: p is equal to q or broader.
func (p HostPattern) covers(q HostPattern) bool {
	if !p.portsOverlap(q) {
		return false
	}
	switch {
	case !p.wildcard:
		return !q.wildcard && p.host == q.host
	case q.wildcard:
		return q.host == p.host || IsSubdomain(q.host, p.host)
	default:
		return IsSubdomain(q.host, p.host)
	}
}

// IsSubdomain reports whether host is a proper subdomain of suffix:
// "a.example.com" and "a.b.example.com" for "example.com", but neither
// "example.com" nor "badexample.com".
func IsSubdomain(host, suffix string) bool {
	return len(host) > len(suffix)+1 &&
		host[len(host)-len(suffix)-1] == '.' &&
		host[len(host)-len(suffix):] == suffix
}

// ParseHostPattern parses a policy host entry: "example.com",
// "*.example.com", "api.test:8443", "10.0.0.1", "[2001:db8::1]:8443" or
// "2001:db8::1". Anything that looks like a URL is rejected.
func ParseHostPattern(s string) (HostPattern, error) {
	var p HostPattern
	bad := func(why string) (HostPattern, error) {
		return HostPattern{}, fmt.Errorf("invalid host pattern %q: %s", s, why)
	}
	switch {
	case s == "":
		return bad("empty")
	case strings.Contains(s, "://"):
		return bad("a host, not a URL")
	case strings.ContainsAny(s, "/?#@"):
		return bad("a host, not a URL or path")
	case strings.ContainsAny(s, " \t\r\n"):
		return bad("contains whitespace")
	}
	host := s
	switch {
	case strings.HasPrefix(s, "["):
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return bad("missing ]")
		}
		host = s[1:end]
		rest := s[end+1:]
		if rest != "" {
			if rest[0] != ':' {
				return bad("unexpected text after ]")
			}
			port, err := ParsePort(rest[1:])
			if err != nil {
				return bad(err.Error())
			}
			p.port = port
		}
		a, err := netip.ParseAddr(host)
		if err != nil || !a.Is6() || a.Zone() != "" {
			return bad("brackets hold an IPv6 address")
		}
	case strings.Count(s, ":") > 1:
		// A bare IPv6 address cannot carry a port.
	case strings.Contains(s, ":"):
		i := strings.LastIndexByte(s, ':')
		host = s[:i]
		port, err := ParsePort(s[i+1:])
		if err != nil {
			return bad(err.Error())
		}
		p.port = port
	}
	if host == "*" {
		return bad("a bare * matches everything; list hosts or use *.domain")
	}
	if strings.HasPrefix(host, "*.") {
		p.wildcard = true
		host = host[2:]
	}
	if strings.Contains(host, "*") {
		return bad("* only as the first label, as in *.example.com")
	}
	h, err := NormalizeHost(host)
	if err != nil {
		return bad(err.Error())
	}
	if a, err := netip.ParseAddr(h); err == nil {
		if p.wildcard {
			return bad("wildcard on an IP address")
		}
		p.ip = a
	}
	p.host = h
	return p, nil
}

// ParsePort parses a decimal port, 1 to 65535.
func ParsePort(s string) (int, error) {
	if s == "" || len(s) > 5 {
		return 0, errors.New("invalid port")
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, errors.New("invalid port")
		}
	}
	n, _ := strconv.Atoi(s)
	if n < 1 || n > 65535 {
		return 0, errors.New("port out of range")
	}
	return n, nil
}

// Host is the pattern's normalised host, or for a wildcard the suffix after
// "*.".
func (p HostPattern) Host() string { return p.host }

// Wildcard reports whether the pattern is "*.suffix": proper subdomains of
// Host only.
func (p HostPattern) Wildcard() bool { return p.wildcard }

// IP is the pattern's address when it is an IP literal, else the zero Addr.
func (p HostPattern) IP() netip.Addr { return p.ip }
