package policy

import (
	"errors"
	"fmt"
	"net/textproto"
	"path"
	"slices"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// entry is one host-bearing policy item with its parsed pattern.
type entry struct {
	place string // "routes[0]", "allow[1]", "block[2]"
	pat   HostPattern
	route *Route
	allow *Allow
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
		if ms, good := v.methods(place+".methods", r.Methods); good {
			r.Methods = ms
		} else {
			ok = false
		}
		if !v.push(place+".push", r.Push) {
			ok = false
		}
		if ok {
			v.entries = append(v.entries, entry{place: place, pat: pat, route: r})
		}
	}
}

func (v *validator) allow() {
	for i := range v.p.Allow {
		a := &v.p.Allow[i]
		place := fmt.Sprintf("allow[%d]", i)
		hostPlace := place
		if a.Scoped() {
			hostPlace = place + ".host"
		}
		ok := true
		pat, err := v.host(hostPlace, a.Host)
		if err != nil {
			ok = false
		} else {
			a.Host = pat.String()
		}
		if a.Path != "" {
			if p, good := v.path(place+".path", a.Path); good {
				a.Path = p
			} else {
				ok = false
			}
		}
		if ms, good := v.methods(place+".methods", a.Methods); good {
			a.Methods = ms
		} else {
			ok = false
		}
		if ok {
			v.entries = append(v.entries, entry{place: place, pat: pat, allow: a})
		}
	}
}

// methods checks a list of HTTP methods and returns it upper-cased.
func (v *validator) methods(place string, ms []string) ([]string, bool) {
	if len(ms) == 0 {
		return nil, true
	}
	out := make([]string, 0, len(ms))
	ok := true
	for i, m := range ms {
		sub := fmt.Sprintf("%s[%d]", place, i)
		up := strings.ToUpper(m)
		switch {
		case m == "":
			v.fail(sub, "empty")
			ok = false
		case !httpguts.ValidHeaderFieldName(m):
			v.fail(sub, "invalid HTTP method %q", m)
			ok = false
		case up == "CONNECT":
			v.fail(sub, "CONNECT cannot be allowed: cork answers it itself")
			ok = false
		case slices.Contains(out, up):
			v.fail(sub, "%s listed twice", up)
			ok = false
		default:
			out = append(out, up)
		}
	}
	return out, ok
}

// push checks a route's push rules.
func (v *validator) push(place string, p *Push) bool {
	if p == nil {
		return true
	}
	ok := true
	for i, b := range p.Branches {
		sub := fmt.Sprintf("%s.branches[%d]", place, i)
		_, err := path.Match(b, "")
		switch {
		case b == "":
			v.fail(sub, "empty")
			ok = false
		case strings.HasPrefix(b, "refs/"):
			v.fail(sub, "write the branch name without refs/heads/ (%q)", strings.TrimPrefix(b, "refs/heads/"))
			ok = false
		case err != nil:
			v.fail(sub, "invalid pattern %q: %w", b, err)
			ok = false
		}
	}
	return ok
}

// path checks a block's or an allow's path and returns it normalised
// (normalizePath).
func (v *validator) path(place, p string) (string, bool) {
	switch {
	case p[0] != '/':
		v.fail(place, "must start with \"/\"")
	case strings.ContainsAny(p, "?#"):
		v.fail(place, "a path only, without query or fragment")
	case strings.Contains(p, "%"):
		v.fail(place, "write the path decoded (it is matched after percent-decoding)")
	case !validUTF8NoControl(p):
		v.fail(place, "contains control characters")
	default:
		return normalizePath(p), true
	}
	return p, false
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
		default:
			if p, good := v.path(place+".path", b.Path); good {
				b.Path = p
			} else {
				ok = false
			}
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
	case a.allow != nil && b.allow != nil && sameAllow(a.allow, b.allow):
		if b.allow.Scoped() {
			return fmt.Sprintf("duplicates %s (host %s, path %s, methods %v)", a.place, b.pat, b.allow.Path, b.allow.Methods)
		}
		return fmt.Sprintf("duplicates %s (host %s)", a.place, b.pat)
	case a.block != nil && b.block != nil && sameBlockPath(a.block, b.block):
		if a.block.Path == "" {
			return fmt.Sprintf("duplicates %s (host %s)", a.place, b.pat)
		}
		return fmt.Sprintf("duplicates %s (host %s, path %s)", a.place, b.pat, b.block.Path)
	}
	return ""
}

// sameAllow reports whether allows a and b (on the same host) say the same.
func sameAllow(a, b *Allow) bool {
	if a.Path != b.Path || len(a.Methods) != len(b.Methods) {
		return false
	}
	for _, m := range a.Methods {
		if !slices.Contains(b.Methods, m) {
			return false
		}
	}
	return true
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
// tunnel), a scoped allow over a whole-host allow (the scoped entries
// restrict the host, so the whole-host allow says nothing), or a host-wide
// block over a route, an allow or a path block. The reverse — a narrower
// route, block or scoped allow inside an allowed wildcard, a narrower block
// inside a routed wildcard — is the point of having both; so is a scoped
// allow on a routed host (it restricts what the credential may do).
func contradiction(broad, narrow entry) string {
	if !broad.pat.covers(narrow.pat) {
		return ""
	}
	hostBlock := broad.block != nil && broad.block.Path == ""
	switch {
	case broad.route != nil && plainAllow(narrow) && broad.pat == narrow.pat:
		return fmt.Sprintf("%s is both routed (TLS intercepted) and allowed (blind tunnel)", broad.pat)
	case broad.route != nil && plainAllow(narrow):
		return fmt.Sprintf("%s is routed (TLS intercepted) and %s is allowed (blind tunnel)", broad.pat, narrow.pat)
	case broad.allow != nil && broad.allow.Scoped() && plainAllow(narrow):
		return fmt.Sprintf("%s is allowed whole, but the path-scoped allow on %s restricts it to its paths and methods", narrow.pat, broad.pat)
	case hostBlock && narrow.route != nil:
		return fmt.Sprintf("%s is blocked and %s is routed", broad.pat, narrow.pat)
	case hostBlock && narrow.allow != nil:
		return fmt.Sprintf("%s is blocked and %s is allowed", broad.pat, narrow.pat)
	case hostBlock && narrow.block != nil && narrow.block.Path != "":
		return fmt.Sprintf("%s is blocked entirely, so the path block on %s never applies", broad.pat, narrow.pat)
	}
	return ""
}

// plainAllow reports whether e is a whole-host allow.
func plainAllow(e entry) bool { return e.allow != nil && !e.allow.Scoped() }

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
