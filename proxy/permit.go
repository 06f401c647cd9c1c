package proxy

import (
	"net/http"

	"github.com/cork-sh/cork/policy"
)

// permitDeny refuses a request that the host's method rules or path-scoped
// allows do not permit (policy.HostRules.Permits, docs/POLICY.md "Methods
// and paths"), or returns nil. It runs for intercepted and plain-HTTP
// requests alike, before anything reaches the upstream.
func permitDeny(req *http.Request, rules policy.HostRules, what string) *deny {
	switch rules.Permits(req.Method, req.URL.EscapedPath()) {
	case "":
		return nil
	case policy.DenyMethod:
		return &deny{reason: ReasonMethodNotAllowed, what: what}
	default:
		return &deny{reason: ReasonPathNotAllowed, what: what}
	}
}
