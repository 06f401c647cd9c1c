package policy

import (
	"slices"
	"strings"
)

// HostRules is everything the policy says about one host:port.
//
// Precedence, most specific pattern first: a HostBlock wins over everything
// (and then the other fields are empty); a route, path block or scoped
// allow means intercept (Intercept); otherwise Allowed means tunnel or
// forward; otherwise deny. Requests that pass are further limited by
// Permits (route methods, scoped allows). The zero HostRules denies. The slices are shared with the Policy
// (and capped, so an append copies): do not modify the values they point to.
type HostRules struct {
	Routes     []*Route // routes bound to this host (exact entries before wildcard ones)
	Allowed    bool     // an allow entry matches (whole-host or scoped)
	AllowedBy  *Allow   // the first allow entry that matches (nearest pattern, then policy order); nil when !Allowed
	HostBlock  *Block   // a host-wide block (Path == "")
	PathBlocks []*Block // path-scoped blocks for this host
	Allows     []*Allow // scoped allows (a path or methods) for this host: see Permits
}

// Binds reports whether one of the host's routes is for slot: see SlotBound.
func (h HostRules) Binds(slot string) bool {
	for _, r := range h.Routes {
		if r.Slot == slot {
			return true
		}
	}
	return false
}

// Intercept reports whether TLS to this host must be intercepted: it has a
// route, a path-scoped block or a scoped allow (whose paths and methods
// must be seen; no credential is injected for it).
func (h HostRules) Intercept() bool {
	return len(h.Routes) > 0 || len(h.PathBlocks) > 0 || len(h.Allows) > 0
}

// PassUnscrubbable reports whether a response body that cannot be scrubbed
// of tokens may pass unscrubbed: only when the host has routes and every
// one of them says unscrubbable: pass.
func (h HostRules) PassUnscrubbable() bool {
	for _, r := range h.Routes {
		if r.Unscrubbable != UnscrubbablePass {
			return false
		}
	}
	return len(h.Routes) > 0
}

// BlockFor returns the first path block (in policy order) matching the
// request path, or nil.
//
// Pass the escaped path (req.URL.EscapedPath()), without the query: it is
// percent-decoded here, once and (when that leaves a '%') twice, so that
// /oauth%2Ftoken and /oauth%252Ftoken are caught too. The path is read the
// ways servers route it — segments split at '/', '\' and "%2F", each cut at
// ';' or a control character and trimmed of trailing white space, empty
// segments dropped, dot-segments removed and also kept — and a block
// matches when it matches any reading: the block's segments start the
// path's, compared ignoring case unless CaseSensitive, and its last segment
// may carry format suffixes (".json", "."). /oauth/token blocks /OAuth/Token,
// /oauth/token/, /oauth/token/x, /oauth/token;x=1, /oauth/token.json and
// /a/../oauth/token, but not /oauth/tokens. See docs/POLICY.md.
//
// It allocates only for paths with escapes or more than 16 segments. A
// zero HostRules blocks nothing.
func (h HostRules) BlockFor(escapedPath string) *Block {
	if len(h.PathBlocks) == 0 {
		return nil
	}
	return firstBlock(h.PathBlocks, escapedPath)
}

// hostKey is a compiled lookup key: a normalised host (or wildcard suffix)
// and one port.
type hostKey struct {
	host string
	port int
}

// compiledPolicy holds the precomputed answer for every key that appears in
// the policy, with the wildcard entries that also cover it merged in, so a
// lookup is at most one map probe per label and allocates nothing.
type compiledPolicy struct {
	exact     map[hostKey]*HostRules
	wildcard  map[hostKey]*HostRules // keyed by the suffix after "*."
	intercept []string
	places    map[any]string // *Route, *Allow or *Block → "routes[2]", "allow[0]", "block[1]"
}

// level collects one pattern's own rules before merging.
type level struct {
	routes     []*Route
	allowed    bool
	allowedBy  *Allow
	hostBlock  *Block
	pathBlocks []*Block
	allows     []*Allow
}

func compile(entries []entry) *compiledPolicy {
	exact := map[hostKey]*level{}
	wild := map[hostKey]*level{}
	seen := map[string]bool{}
	var intercept []string
	places := make(map[any]string, len(entries))
	for _, e := range entries {
		switch {
		case e.route != nil:
			places[e.route] = e.place
		case e.allow != nil:
			places[e.allow] = e.place
		default:
			places[e.block] = e.place
		}
		m := exact
		if e.pat.wildcard {
			m = wild
		}
		for _, port := range e.pat.ports() {
			k := hostKey{e.pat.host, port}
			l := m[k]
			if l == nil {
				l = &level{}
				m[k] = l
			}
			switch {
			case e.route != nil:
				l.routes = append(l.routes, e.route)
			case e.allow != nil:
				l.allowed = true
				if l.allowedBy == nil {
					l.allowedBy = e.allow
				}
				if e.allow.Scoped() {
					l.allows = append(l.allows, e.allow)
				}
			case e.block.Path == "":
				if l.hostBlock == nil {
					l.hostBlock = e.block
				}
			default:
				l.pathBlocks = append(l.pathBlocks, e.block)
			}
		}
		intercepted := e.route != nil || e.block != nil && e.block.Path != "" || e.allow != nil && e.allow.Scoped()
		if intercepted && !seen[e.pat.name()] {
			seen[e.pat.name()] = true
			intercept = append(intercept, e.pat.name())
		}
	}
	slices.Sort(intercept)

	// merge folds the own rules of k's level and of every broader wildcard
	// level (nearest first) into one answer.
	merge := func(own *level, k hostKey) *HostRules {
		levels := []*level{own}
		for s := parentDomain(k.host); s != ""; s = parentDomain(s) {
			if l := wild[hostKey{s, k.port}]; l != nil {
				levels = append(levels, l)
			}
		}
		var r HostRules
		for _, l := range levels {
			if l.hostBlock != nil {
				if len(r.Routes) == 0 && !r.Allowed && len(r.PathBlocks) == 0 && len(r.Allows) == 0 {
					r.HostBlock = l.hostBlock
				}
				break // a broader block never overrides a narrower entry
			}
			r.Routes = append(r.Routes, l.routes...)
			r.Allowed = r.Allowed || l.allowed
			if r.AllowedBy == nil {
				r.AllowedBy = l.allowedBy
			}
			r.PathBlocks = append(r.PathBlocks, l.pathBlocks...)
			r.Allows = append(r.Allows, l.allows...)
		}
		r.Routes = slices.Clip(r.Routes)
		r.PathBlocks = slices.Clip(r.PathBlocks)
		r.Allows = slices.Clip(r.Allows)
		return &r
	}
	c := &compiledPolicy{
		exact:     make(map[hostKey]*HostRules, len(exact)),
		wildcard:  make(map[hostKey]*HostRules, len(wild)),
		intercept: intercept,
		places:    places,
	}
	for k, l := range exact {
		// An exact host's own level, then the wildcards on its parents.
		c.exact[k] = merge(l, k)
	}
	for k, l := range wild {
		c.wildcard[k] = merge(l, k)
	}
	return c
}

// parentDomain strips the first label: "a.b.c" → "b.c", "c" → "".
func parentDomain(h string) string {
	i := strings.IndexByte(h, '.')
	if i < 0 {
		return ""
	}
	return h[i+1:]
}

// Lookup returns the rules for host:port. host may be any case, carry a
// trailing dot, be an IDN (normalised to ASCII), or an IPv6 literal with or
// without brackets. A pattern without a port matches ports 443 and 80; with a
// port, only that port. An invalid host gets empty rules (deny). It does no
// allocation on the hot path beyond what normalisation needs.
func (p *Policy) Lookup(host string, port int) HostRules {
	if p == nil || p.c == nil {
		return HostRules{}
	}
	h, err := NormalizeHost(host)
	if err != nil {
		return HostRules{}
	}
	return p.c.lookup(h, port)
}

func (c *compiledPolicy) lookup(h string, port int) HostRules {
	if r := c.exact[hostKey{h, port}]; r != nil {
		return *r
	}
	if len(c.wildcard) == 0 || strings.IndexByte(h, ':') >= 0 || LooksNumeric(h) {
		return HostRules{} // IP addresses never match a wildcard
	}
	for s := parentDomain(h); s != ""; s = parentDomain(s) {
		if r := c.wildcard[hostKey{s, port}]; r != nil {
			return *r
		}
	}
	return HostRules{}
}

// SlotBound reports whether host:port is bound to slot — a real token for
// slot may go there. The tripwire uses it: a placeholder seen in a request
// to a host its slot is not bound to is refused.
func (p *Policy) SlotBound(slot, host string, port int) bool {
	return p.Lookup(host, port).Binds(slot)
}

// InterceptHosts lists the host patterns whose TLS is intercepted (routes,
// path-scoped blocks and scoped allows), port stripped, normalised: for CA name
// constraints. The list is sorted, without duplicates, and a fresh copy.
func (p *Policy) InterceptHosts() []string {
	if p == nil || p.c == nil {
		return nil
	}
	return slices.Clone(p.c.intercept)
}
