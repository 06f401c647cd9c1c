package policy

import (
	"errors"
	"fmt"
	"net/textproto"
	"slices"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// entry is one host-bearing policy item with its parsed pattern.
type entry struct {
	place string // "routes[0]", "allow[1]", "block[2]"
	pat   HostPattern
	route *Route
	allow bool
	block *Block
}

type validator struct {
	p       *Policy
	errs    []error
	entries []entry // valid entries only, in file order: routes, allow, block
}

// fail records a problem at place.
func (v *validator) fail(place, format string, args ...any) {
	v.errs = append(v.errs, &Error{Place: place, Err: fmt.Errorf(format, args...)})
}

func (v *validator) slots() {
	names := make([]string, 0, len(v.p.Slots))
	for name := range v.p.Slots {
		names = append(names, name)
	}
	slices.Sort(names)
	var good []string
	for _, name := range names {
		place := "slots." + name
		if !validSlotName(name) {
			v.fail(place, "invalid slot name (want letters, digits, '-', '_' or '.')")
		}
		ph := v.p.Slots[name].Placeholder
		switch {
		case ph == "":
			v.fail(place+".placeholder", "empty")
		case strings.TrimSpace(ph) != ph:
			v.fail(place+".placeholder", "leading or trailing whitespace (a stray newline?)")
		case !visibleASCII(ph):
			v.fail(place+".placeholder", "want printable ASCII without spaces")
		case len(ph) < MinPlaceholderLen:
			v.fail(place+".placeholder", "shorter than %d characters", MinPlaceholderLen)
		default:
			good = append(good, name)
		}
	}
	// The tripwire searches requests for placeholders: one inside another
	// would make a sighting ambiguous.
	for i, a := range good {
		for _, b := range good[i+1:] {
			pa, pb := v.p.Slots[a].Placeholder, v.p.Slots[b].Placeholder
			switch {
			case pa == pb:
				v.fail("slots."+b+".placeholder", "same as slots.%s.placeholder", a)

			case strings.Contains(pa, pb):
				v.fail("slots."+a+".placeholder", "contains slots.%s.placeholder; placeholders must not overlap", b)

			case strings.Contains(pb, pa):
				v.fail("slots."+b+".placeholder", "contains slots.%s.placeholder; placeholders must not overlap", a)

			}
		}
	}
}

// forbiddenRouteHeaders are headers the proxy owns or strips: a credential
// in them would be lost or would corrupt the request.
var forbiddenRouteHeaders = []string{
	"Host", "Connection", "Content-Length", "Transfer-Encoding", "Te", "Trailer",
	"Upgrade", "Keep-Alive", "Proxy-Authorization", "Proxy-Connection", "Proxy-Authenticate",
}

func (v *validator) routes() {
	for i := range v.p.Routes {
		r := &v.p.Routes[i]
		place := fmt.Sprintf("routes[%d]", i)
		ok := true
		pat, err := v.host(place+".host", r.Host)
		if err != nil {
			ok = false
		} else {
			r.Host = pat.String()
		}
		switch _, defined := v.p.Slots[r.Slot]; {
		case r.Slot == "":
			v.fail(place+".slot", "required")
			ok = false
		case !defined:
			v.fail(place+".slot", "unknown slot %q", r.Slot)
			ok = false
		}
		switch {
		case r.Header == "":
			r.Header = DefaultHeader
		case !httpguts.ValidHeaderFieldName(r.Header):
			v.fail(place+".header", "invalid header name %q", r.Header)
			ok = false
		default:
			r.Header = textproto.CanonicalMIMEHeaderKey(r.Header)
			if slices.Contains(forbiddenRouteHeaders, r.Header) {
				v.fail(place+".header", "%s cannot carry a credential", r.Header)
				ok = false
			}
		}
		schemeOK := true
		switch s := Scheme(strings.ToLower(string(r.Scheme))); s {
		case "":
			r.Scheme = DefaultScheme
		case SchemeBearer, SchemeToken, SchemeBasic, SchemeRaw:
			r.Scheme = s
		default:
			v.fail(place+".scheme", "unknown scheme %q (want bearer, token, basic, raw)", r.Scheme)
			ok, schemeOK = false, false
		}
		switch {
		case r.Scheme == SchemeBasic && r.BasicUser == "":
			r.BasicUser = DefaultBasicUser
		case r.Scheme == SchemeBasic && (strings.Contains(r.BasicUser, ":") || !visibleASCII(r.BasicUser)):
			v.fail(place+".basic_user", "want printable ASCII without ':' or spaces")
			ok = false
		case r.Scheme != SchemeBasic && r.BasicUser != "" && schemeOK:
			v.fail(place+".basic_user", "only with scheme basic (scheme is %s)", r.Scheme)
			ok = false
		}
		switch u := strings.ToLower(r.Unscrubbable); u {
		case "":
			r.Unscrubbable = DefaultUnscrubbable
		case UnscrubbableRefuse, UnscrubbablePass:
			r.Unscrubbable = u
		default:
			v.fail(place+".unscrubbable", "unknown value %q (want refuse or pass)", r.Unscrubbable)
			ok = false
		}
		if ok {
			v.entries = append(v.entries, entry{place: place, pat: pat, route: r})
		}
	}
}

func (v *validator) allow() {
	for i, h := range v.p.Allow {
		place := fmt.Sprintf("allow[%d]", i)
		pat, err := v.host(place, h)
		if err != nil {
			continue
		}
		v.p.Allow[i] = pat.String()
		v.entries = append(v.entries, entry{place: place, pat: pat, allow: true})
	}
}

func (v *validator) blocks() {
	for i := range v.p.Block {
		b := &v.p.Block[i]
		place := fmt.Sprintf("block[%d]", i)
		ok := true
		pat, err := v.host(place+".host", b.Host)
		if err != nil {
			ok = false
		} else {
			b.Host = pat.String()
		}
		switch {
		case b.Path == "" && b.CaseSensitive:
			v.fail(place+".case_sensitive", "only with a path")
			ok = false
		case b.Path == "":
		case b.Path[0] != '/':
			v.fail(place+".path", "must start with \"/\"")
			ok = false
		case strings.ContainsAny(b.Path, "?#"):
			v.fail(place+".path", "a path only, without query or fragment")
			ok = false
		case strings.Contains(b.Path, "%"):
			v.fail(place+".path", "write the path decoded (it is matched after percent-decoding)")
			ok = false
		case !validUTF8NoControl(b.Path):
			v.fail(place+".path", "contains control characters")
			ok = false
		default:
			b.Path = normalizePath(b.Path)
		}
		b.Reason = strings.TrimSpace(b.Reason)
		switch {
		case b.Reason == "":
			b.Reason = DefaultBlockReason
		case !validUTF8NoControl(b.Reason):
			v.fail(place+".reason", "contains control characters")
			ok = false
		}
		if ok {
			v.entries = append(v.entries, entry{place: place, pat: pat, block: b})
		}
	}
}

// host parses a host pattern, reporting a missing or invalid one at place.
func (v *validator) host(place, s string) (HostPattern, error) {
	if s == "" {
		err := errors.New("required")
		v.fail(place, "%w", err)
		return HostPattern{}, err
	}
	pat, err := ParseHostPattern(s)
	if err != nil {
		v.fail(place, "%w", err)
	}
	return pat, err
}

// conflicts reports duplicate entries and entries that contradict each
// other, at the later entry, naming the earlier one.
func (v *validator) conflicts() {
	for j, b := range v.entries {
		for _, a := range v.entries[:j] {
			if msg := duplicate(a, b); msg != "" {
				v.fail(b.place, "%s", msg)
				continue
			}
			why := contradiction(a, b)
			if why == "" {
				why = contradiction(b, a)
			}
			if why != "" {
				v.fail(b.place, "conflicts with %s: %s", a.place, why)
			}
		}
	}
}

// duplicate checks the later entry b against the earlier a for the same
// thing said twice (or, for routes, two slots on one header).
func duplicate(a, b entry) string {
	if a.pat.host != b.pat.host || a.pat.wildcard != b.pat.wildcard || !a.pat.portsOverlap(b.pat) {
		return ""
	}
	switch {
	case a.route != nil && b.route != nil && a.route.Header == b.route.Header:
		if a.route.Slot == b.route.Slot {
			return fmt.Sprintf("duplicates %s (host %s, header %s)", a.place, b.pat, b.route.Header)
		}
		return fmt.Sprintf("conflicts with %s (host %s, header %s): slots %s and %s",
			a.place, b.pat, b.route.Header, a.route.Slot, b.route.Slot)
	case a.allow && b.allow:
		return fmt.Sprintf("duplicates %s (host %s)", a.place, b.pat)
	case a.block != nil && b.block != nil && sameBlockPath(a.block, b.block):
		if a.block.Path == "" {
			return fmt.Sprintf("duplicates %s (host %s)", a.place, b.pat)
		}
		return fmt.Sprintf("duplicates %s (host %s, path %s)", a.place, b.pat, b.block.Path)
	}
	return ""
}

// sameBlockPath reports whether blocks a and b match the same paths.
func sameBlockPath(a, b *Block) bool {
	if a.CaseSensitive || b.CaseSensitive {
		return a.Path == b.Path && a.CaseSensitive == b.CaseSensitive
	}
	return strings.EqualFold(a.Path, b.Path)
}

// contradiction explains why broad, whose pattern covers narrow's (equal or
// broader), contradicts it: a route over an allowed host (intercept versus
// tunnel), or a host-wide block over a route, an allow or a path block.
// The reverse — a narrower route or block inside an allowed wildcard, a
// narrower block inside a routed wildcard — is the point of having both.
func contradiction(broad, narrow entry) string {
	if !broad.pat.covers(narrow.pat) {
		return ""
	}
	hostBlock := broad.block != nil && broad.block.Path == ""
	switch {
	case broad.route != nil && narrow.allow && broad.pat == narrow.pat:
		return fmt.Sprintf("%s is both routed (TLS intercepted) and allowed (blind tunnel)", broad.pat)
	case broad.route != nil && narrow.allow:
		return fmt.Sprintf("%s is routed (TLS intercepted) and %s is allowed (blind tunnel)", broad.pat, narrow.pat)
	case hostBlock && narrow.route != nil:
		return fmt.Sprintf("%s is blocked and %s is routed", broad.pat, narrow.pat)
	case hostBlock && narrow.allow:
		return fmt.Sprintf("%s is blocked and %s is allowed", broad.pat, narrow.pat)
	case hostBlock && narrow.block != nil && narrow.block.Path != "":
		return fmt.Sprintf("%s is blocked entirely, so the path block on %s never applies", broad.pat, narrow.pat)
	}
	return ""
}

func validSlotName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// visibleASCII reports whether s is printable ASCII without spaces.
func visibleASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return false
		}
	}
	return true
}

func validUTF8NoControl(s string) bool {
	for _, r := range s {
		if r < ' ' || r == 0x7f || r == '\uFFFD' {
			return false
		}
	}
	return true
}
