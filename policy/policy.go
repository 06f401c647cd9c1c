package policy

import (
	"errors"
	"fmt"
	"slices"
)

// Scheme says how a route's credential appears in its header.
type Scheme string

// Schemes.
const (
	SchemeBearer Scheme = "bearer" // "Bearer <token>"
	SchemeToken  Scheme = "token"  // "token <token>" (GitHub)
	SchemeBasic  Scheme = "basic"  // "Basic base64(user:token)"
	SchemeRaw    Scheme = "raw"    // the header value is the token
)

// Policy defaults and limits.
const (
	DefaultHeader       = "Authorization"     // a route's header when none is given
	DefaultScheme       = SchemeBearer        // a route's scheme when none is given
	DefaultBasicUser    = "x-access-token"    // user name added for scheme basic
	DefaultBlockReason  = "blocked by policy" // a block's reason when none is given
	DefaultUnscrubbable = UnscrubbableRefuse  // a route's unscrubbable when none is given
	MinPlaceholderLen   = 8                   // shortest placeholder accepted
	MaxFileSize         = 1 << 20             // Load refuses larger files
)

// Policy is the egress policy: credential slots, the routes that bind them
// to hosts, and the allow and block lists.
//
// A Policy literal (or one decoded from a file) is a plain value: its
// fields say what was written, and it has no compiled rules, so Lookup
// denies everything. A *Policy returned by Parse, Load or New is validated
// and compiled: its fields hold the normalised entries (canonical host
// patterns, canonical header names, defaults filled in) and must not be
// modified; it is immutable and safe for concurrent use.
type Policy struct {
	Slots  map[string]Slot `yaml:"slots,omitempty" json:"slots,omitempty"`
	Routes []Route         `yaml:"routes,omitempty" json:"routes,omitempty"`
	Allow  []Allow         `yaml:"allow,omitempty" json:"allow,omitempty" want:"a host pattern"`
	Block  []Block         `yaml:"block,omitempty" json:"block,omitempty"`

	c *compiledPolicy // nil: deny everything
}

// Slot is a credential slot: its value arrives separately (resolve.Tokens).
type Slot struct {
	Placeholder string `yaml:"placeholder" json:"placeholder"`
}

// Values of Route.Unscrubbable: what happens to a response body of the
// route's host that cork cannot scrub of tokens (a Content-Encoding it
// cannot decode).
const (
	UnscrubbableRefuse = "refuse" // answer 502 instead (the default)
	UnscrubbablePass   = "pass"   // pass the body on unscrubbed
)

// Route binds a slot to a host: requests to it are intercepted and the
// placeholder in Header is replaced by the slot's token.
type Route struct {
	Host         string `yaml:"host" json:"host"`
	Slot         string `yaml:"slot" json:"slot"`
	Header       string `yaml:"header,omitempty" json:"header,omitempty"` // default "Authorization" (canonicalised)
	Scheme       Scheme `yaml:"scheme,omitempty" json:"scheme,omitempty"` // default bearer
	BasicUser    string `yaml:"basic_user,omitempty" json:"basic_user,omitempty"`
	AddIfMissing bool   `yaml:"add_if_missing,omitempty" json:"add_if_missing,omitempty"`
	InsecureHTTP bool   `yaml:"insecure_http,omitempty" json:"insecure_http,omitempty"`
	Unscrubbable string `yaml:"unscrubbable,omitempty" json:"unscrubbable,omitempty"` // refuse (default) or pass; see HostRules.PassUnscrubbable

	// Methods, when not empty, lists the HTTP methods the route's host
	// accepts (stored upper-case); with several routes on a host, their
	// union. Empty: any method. See docs/POLICY.md.
	Methods []string `yaml:"methods,omitempty" json:"methods,omitempty" want:"an HTTP method"`
	// Push restricts the refs a git push through the route may update.
	// Nil: pushes are unrestricted. See Push.Allows.
	Push *Push `yaml:"push,omitempty" json:"push,omitempty"`
}

// Block answers matching requests with 403 and Reason. An empty Path
// blocks the whole host (at CONNECT); a Path blocks that path, the paths
// below it and its format variants (/oauth/token.json) inside an
// intercepted connection, however the request spells it: see
// HostRules.BlockFor. Path is stored normalised (decoded form, no dot
// segments, no ";params", no trailing "/").
type Block struct {
	Host          string `yaml:"host" json:"host"`
	Path          string `yaml:"path,omitempty" json:"path,omitempty"`
	CaseSensitive bool   `yaml:"case_sensitive,omitempty" json:"case_sensitive,omitempty"` // compare Path exactly; default: ignoring case
	Reason        string `yaml:"reason,omitempty" json:"reason,omitempty"`
}

// New validates and compiles a policy built in code (by provisioning, say)
// the way Parse does a file. p is copied; the result is immutable and safe
// for concurrent use. All problems are returned at once (errors.Join),
// each an *Error naming its place.
func New(p Policy) (*Policy, error) {
	out := &Policy{
		Slots:  make(map[string]Slot, len(p.Slots)),
		Routes: slices.Clone(p.Routes),
		Allow:  slices.Clone(p.Allow),
		Block:  slices.Clone(p.Block),
	}
	for k, v := range p.Slots {
		out.Slots[k] = v
	}
	for i, r := range out.Routes {
		if r.Push != nil {
			push := *r.Push
			push.Branches = slices.Clone(push.Branches)
			out.Routes[i].Push = &push
		}
	}
	v := validator{p: out}
	v.slots()
	v.routes()
	v.allow()
	v.blocks()
	v.conflicts()
	if len(v.errs) > 0 {
		return nil, errors.Join(v.errs...)
	}
	out.c = compile(v.entries)
	return out, nil
}

// Error is one problem in a policy. Place is where, in the policy's own
// terms ("routes[2].slot", "slots.codex.placeholder", "policy" for the
// document itself); Line is its 1-based line in the file, or 0 when the
// policy was not read from one. An Error never holds a token value.
type Error struct {
	Place string
	Line  int
	Err   error
}

// Error prints `place: problem (line n)`.
func (e *Error) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s: %v (line %d)", e.Place, e.Err, e.Line)
	}
	return fmt.Sprintf("%s: %v", e.Place, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// Errors returns the problems joined in err (from Parse, Load, New or
// Decode) as *Error values, in order; problems that have no place (a YAML
// syntax error) are left out. It lets a caller that built part of a policy
// name the places in its own terms.
func Errors(err error) []*Error {
	var out []*Error
	for _, e := range unjoin(err) {
		var pe *Error
		if errors.As(e, &pe) {
			out = append(out, pe)
		}
	}
	return out
}

// unjoin returns the errors joined in err, or err alone.
func unjoin(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}
