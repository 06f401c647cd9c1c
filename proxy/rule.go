package proxy

import "github.com/cork-sh/cork/policy"

// The audit line's rule field names the policy entry that decided, as the
// proxy holds the policy: "routes[2]", "allow[0]", "block[1]"
// (docs/DESIGN.md, section 6). A request no entry names (not_allowed) has
// none. These run on every request: they allocate nothing.

// passedBy names the entry that let a request through: the host's first
// route (the one whose credential is injected first), else the first
// allow entry that matches the host.
func passedBy(pol *policy.Policy, rules policy.HostRules) string {
	if len(rules.Routes) > 0 {
		return pol.RoutePlace(rules.Routes[0])
	}
	return pol.AllowPlace(rules.AllowedBy)
}

// deniedBy names the entry behind a refusal for reason of a request to
// escapedPath on a host with rules: the matching block; for a method, the
// host's first route that lists methods, else its first scoped allow; for
// a path, its first scoped allow; for insecure_route, the first route that
// does not say insecure_http. Other reasons name no entry.
func deniedBy(pol *policy.Policy, rules policy.HostRules, escapedPath, reason string) string {
	switch reason {
	case ReasonBlocked:
		if rules.HostBlock != nil {
			return pol.BlockPlace(rules.HostBlock)
		}
		return pol.BlockPlace(rules.BlockFor(escapedPath))
	case ReasonMethodNotAllowed:
		for _, r := range rules.Routes {
			if len(r.Methods) > 0 {
				return pol.RoutePlace(r)
			}
		}
		if len(rules.Allows) > 0 {
			return pol.AllowPlace(rules.Allows[0])
		}
	case ReasonPathNotAllowed:
		if len(rules.Allows) > 0 {
			return pol.AllowPlace(rules.Allows[0])
		}
	case ReasonInsecureRoute:
		for _, r := range rules.Routes {
			if !r.InsecureHTTP {
				return pol.RoutePlace(r)
			}
		}
	}
	return ""
}
