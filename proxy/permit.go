package proxy

import (
	"net/http"
	"net/url"
	"strings"

	"github.com/cork-sh/cork/policy"
)

// methodOverrideHeaders are the request headers with which frameworks
// (Rack, Google APIs, Express's method-override, ASP.NET, ...) let a
// request act as another method than its own.
var methodOverrideHeaders = [...]string{"X-Http-Method-Override", "X-Http-Method", "X-Method-Override"}

// methodOverrideParam is the query parameter that does the same (Rack,
// Symfony, Laravel).
const methodOverrideParam = "_method"

// permitDeny refuses a request that the host's method rules or path-scoped
// allows do not permit (policy.HostRules.Permits, docs/POLICY.md "Methods
// and paths"), or returns nil. A method override (a header of
// methodOverrideHeaders or a _method query parameter) must be permitted
// too: the upstream may act on it instead of the request's method. It runs
// for intercepted and plain-HTTP requests alike, before anything reaches
// the upstream.
func permitDeny(req *http.Request, rules policy.HostRules, what string) *deny {
	path := req.URL.EscapedPath()
	reason := rules.Permits(req.Method, path)
	if reason == "" {
		forEachMethodOverride(req, func(m string) bool {
			reason = rules.Permits(m, path)
			return reason == ""
		})
	}
	switch reason {
	case "":
		return nil
	case policy.DenyMethod:
		return &deny{reason: ReasonMethodNotAllowed, what: what}
	default:
		return &deny{reason: ReasonPathNotAllowed, what: what}
	}
}

// forEachMethodOverride calls f with each method req's override headers
// and _method query parameters name (upper-cased; a comma-separated header
// value names several), until f returns false.
func forEachMethodOverride(req *http.Request, f func(method string) bool) {
	each := func(v string) bool {
		for _, m := range strings.Split(v, ",") {
			if m = strings.TrimSpace(m); m != "" && !f(strings.ToUpper(m)) {
				return false
			}
		}
		return true
	}
	for _, h := range methodOverrideHeaders {
		for _, v := range req.Header.Values(h) {
			if !each(v) {
				return
			}
		}
	}
	q := req.URL.RawQuery
	if !strings.Contains(strings.ToLower(q), "method") && !strings.Contains(q, "%") {
		return
	}
	// Read as generously as servers do: pairs split at '&' and ';', names
	// and values decoded when they can be.
	for _, pair := range strings.FieldsFunc(q, func(r rune) bool { return r == '&' || r == ';' }) {
		k, v, _ := strings.Cut(pair, "=")
		if dk, err := url.QueryUnescape(k); err == nil {
			k = dk
		}
		if strings.TrimSpace(k) != methodOverrideParam {
			continue
		}
		if dv, err := url.QueryUnescape(v); err == nil {
			v = dv
		}
		if !each(v) {
			return
		}
	}
}
