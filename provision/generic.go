package provision

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/cork-sh/cork/policy"
)

// genericRandomLen is the number of random characters after "cork_" in a
// placeholder for a variable the host does not set.
const genericRandomLen = 32

// genericTokenPrefixes are well-known credential prefixes that a generic
// placeholder copies; genericPrefix adds a guess for other shapes.
var genericTokenPrefixes = slices.Concat(claudeTokenPrefixes, apiKeyPrefixes, gitHubTokenPrefixes, []string{
	"glpat-", "xoxb-", "xoxp-", "xapp-", "hf_", "npm_", "pypi-", "r8_", "dop_v1_",
	"sk_live_", "sk_test_", "rk_live_", "rk_test_",
})

// Binding binds the credential in a host environment variable to a host:
// the proxy swaps the variable's placeholder for its value in Header on
// requests to Host. See ParseBinding for its flag form.
type Binding struct {
	// Host is a policy host pattern: "api.example.com", "*.example.com",
	// "api.example.com:8443".
	Host string
	// Env names the host variable holding the credential. The sandbox gets
	// a placeholder in the variable of the same name; the slot is its
	// name in lower case. Upper-case letters, digits and '_'.
	Env string
	// Header carries the credential. Empty is Authorization.
	Header string
	// Scheme is bearer, token, basic or raw. Empty is bearer on
	// Authorization and raw on any other header.
	Scheme policy.Scheme
	// BasicUser is the user name of scheme basic; empty lets the proxy
	// choose its default (x-access-token). Only with scheme basic.
	BasicUser string
	// AddIfMissing makes the proxy add the header when the sandbox sent
	// none, rather than only swapping the placeholder.
	AddIfMissing bool
	// Unscrubbable is the route's unscrubbable option: empty or
	// policy.UnscrubbableRefuse (a response body the proxy cannot scrub of the
	// credential is refused), or policy.UnscrubbablePass.
	Unscrubbable string
	// Methods limits the HTTP methods the host accepts (policy
	// Route.Methods); empty: any.
	Methods []string
	// Push limits the refs a git push may update (policy Route.Push); nil:
	// unrestricted.
	Push *policy.Push
}

// Slot is the binding's slot name: Env in lower case.
func (b Binding) Slot() string { return strings.ToLower(b.Env) }

// route is the policy route of b for slot, defaults filled in.
func (b Binding) route(slot string) policy.Route {
	r := policy.Route{Host: b.Host, Slot: slot, Header: b.Header, Scheme: b.Scheme, BasicUser: b.BasicUser, AddIfMissing: b.AddIfMissing,
		Unscrubbable: b.Unscrubbable, Methods: b.Methods, Push: b.Push}
	if r.Header == "" {
		r.Header = policy.DefaultHeader
	}
	if r.Scheme == "" {
		r.Scheme = policy.SchemeRaw
		if strings.EqualFold(r.Header, policy.DefaultHeader) {
			r.Scheme = policy.SchemeBearer
		}
	}
	return r
}

// Validate reports every problem with b, each a *policy.Error whose place
// is the field (host, env, header, scheme, basic_user, unscrubbable): the
// policy package judges b's route as the proxy will. It never prints Env
// when Env is invalid, in case a credential was given instead of its
// variable.
func (b Binding) Validate() error {
	var errs []error
	if err := checkEnvName(b.Env); err != nil {
		errs = append(errs, &policy.Error{Place: "env", Err: err})
	}
	_, err := policy.New(policy.Policy{
		Slots:  map[string]policy.Slot{checkSlot: {Placeholder: checkPlaceholder(checkSlot)}},
		Routes: []policy.Route{b.route(checkSlot)},
	})
	for _, e := range policy.Errors(err) {
		errs = append(errs, &policy.Error{Place: strings.TrimPrefix(e.Place, "routes[0]."), Err: e.Err})
	}
	return errors.Join(errs...)
}

// checkSlot names the slot of a route that is checked before cork has made
// its slot and placeholder (or whose env is invalid, so that no part of a
// pasted credential becomes a slot name).
const checkSlot = "cork-check"

// checkPlaceholder is a placeholder for checking slot's routes: valid, and
// never inside another slot's (slot names made from variables have no
// '-').
func checkPlaceholder(slot string) string { return "cork-check-" + slot + "-placeholder" }

// ParseBinding parses the --inject form of a Binding:
//
//	HOST=VAR[,header=NAME][,scheme=bearer|token|basic|raw][,basic_user=USER][,add_if_missing]
//
// e.g. "api.example.com=EXAMPLE_TOKEN" (Authorization: Bearer) or
// "api.example.com=EXAMPLE_KEY,header=X-Api-Key" (the header holds the key
// alone). Errors start with the quoted spec, except that a spec whose VAR
// is not a variable name is never echoed: it may be a pasted credential.
func ParseBinding(s string) (Binding, error) {
	fail := func(format string, a ...any) (Binding, error) {
		return Binding{}, fmt.Errorf("%q: %s", s, fmt.Sprintf(format, a...))
	}
	head, opts, hasOpts := strings.Cut(s, ",")
	host, env, ok := strings.Cut(head, "=")
	if !ok || strings.TrimSpace(host) == "" || strings.TrimSpace(env) == "" {
		return fail("want HOST=VAR[,header=NAME][,scheme=S][,basic_user=U][,add_if_missing], e.g. api.example.com=EXAMPLE_TOKEN")
	}
	b := Binding{Host: strings.TrimSpace(host), Env: strings.TrimSpace(env)}
	if err := checkEnvName(b.Env); err != nil {
		return Binding{}, fmt.Errorf("binding for host %q: VAR: %w", b.Host, err)
	}
	seen := map[string]bool{}
	for opt := range strings.SplitSeq(opts, ",") {
		if !hasOpts {
			break // SplitSeq yields one empty string
		}
		k, v, hasValue := strings.Cut(strings.TrimSpace(opt), "=")
		k = strings.ToLower(strings.TrimSpace(k))
		v = strings.TrimSpace(v)
		if k == "" {
			return fail("empty option (a stray comma?)")
		}
		if seen[k] {
			return fail("option %s given twice", k)
		}
		seen[k] = true
		switch k {
		case "header":
			b.Header = v
		case "scheme":
			b.Scheme = policy.Scheme(strings.ToLower(v))
		case "basic_user":
			b.BasicUser = v
		case "add_if_missing":
			if hasValue && v != "true" {
				return fail("add_if_missing takes no value")
			}
			b.AddIfMissing = true
			continue
		default:
			return fail("unknown option %q (want header=, scheme=, basic_user=, add_if_missing)", k)
		}
		if v == "" {
			return fail("option %s needs a value (%s=...)", k, k)
		}
	}
	if err := b.Validate(); err != nil {
		return fail("%s", strings.ReplaceAll(err.Error(), "\n", "; "))
	}
	return b, nil
}

// Generic binds host variables to hosts and headers, as given by
// `cork run --inject` and `--policy` (see ParseBinding and
// ParseGenericPolicy), and adds extra allow and block entries. Its zero
// value provisions nothing and is an error.
//
// For each variable it creates a slot (the variable's name in lower case)
// whose real value resolution reads from the host variable itself, and
// sets the variable in the sandbox to a placeholder, random per Build.
// When the host sets the variable, the placeholder has its length and
// prefix: a well-known one (sk-ant-api03-, ghp_, glpat-, xoxb-, ...), or a
// first segment of up to 8 lower-case letters and digits ending in '_' or
// '-' ("acme_..." → "acme_"); otherwise it is "cork_" and 32 characters.
// Bindings of one variable share its slot. It reads no file.
type Generic struct {
	Bindings []Binding
	Allow    []policy.Allow
	Block    []policy.Block
}

var _ Profile = Generic{}

// Name returns "generic".
func (Generic) Name() string { return "generic" }

// Provision adds the bindings' env and routes and the extra allow and
// block entries to plan. It reports every invalid binding and entry (as
// the proxy would judge them), and a host bound twice (the proxy would
// allow two headers on one host, but a plan has one route per host and
// profile).
func (g Generic) Provision(opts Options, plan *Plan) error {
	if len(g.Bindings) == 0 && len(g.Allow) == 0 && len(g.Block) == 0 {
		return errors.New("nothing to provision: give bindings (--inject HOST=VAR) or a --policy file")
	}
	var errs []error
	envOf := map[string]string{}  // slot → variable
	hostOf := map[string]string{} // canonical host → variable
	var routes []policy.Route
	var from []int // binding index of each route
	for i, b := range g.Bindings {
		place := fmt.Sprintf("bindings[%d]", i)
		if err := b.Validate(); err != nil {
			errs = append(errs, renamePlaces(err, func(p string) string { return place + "." + p }))
			continue
		}
		envOf[b.Slot()] = b.Env // upper-case names: one variable per slot
		h := hostKey(b.Host)
		if other, ok := hostOf[h]; ok {
			errs = append(errs, fmt.Errorf("%s: host %s is already bound (to %s); one binding per host", place, b.Host, other))
			continue
		}
		hostOf[h] = b.Env
		routes = append(routes, b.route(b.Slot()))
		from = append(from, i)
	}
	slots := map[string]policy.Slot{}
	for _, slot := range slices.Sorted(maps.Keys(envOf)) {
		ph, err := genericPlaceholder(opts, opts.HostEnv[envOf[slot]])
		if err != nil {
			return err
		}
		slots[slot] = policy.Slot{Placeholder: ph}
	}
	// The allow and block entries, and the routes together, as the proxy
	// will judge them; a route's errors name its binding.
	if _, err := policy.New(policy.Policy{Slots: slots, Routes: routes, Allow: g.Allow, Block: g.Block}); err != nil {
		errs = append(errs, renamePlaces(err, func(p string) string {
			var k int
			if _, serr := fmt.Sscanf(p, "routes[%d]", &k); serr == nil && k < len(from) {
				return fmt.Sprintf("bindings[%d]", from[k]) + strings.TrimPrefix(p, fmt.Sprintf("routes[%d]", k))
			}
			return p
		}))
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	for slot, s := range slots {
		env := envOf[slot]
		plan.Env[env] = s.Placeholder
		plan.Egress.TokenEnvMap[slot] = env
		plan.Egress.Slots[slot] = s
	}
	plan.Egress.Routes = append(plan.Egress.Routes, routes...)
	plan.Egress.Allow = append(plan.Egress.Allow, g.Allow...)
	plan.Egress.Block = append(plan.Egress.Block, g.Block...)
	return nil
}

// renamePlaces renames the place of each *policy.Error joined in err with
// rename; other errors pass unchanged.
func renamePlaces(err error, rename func(place string) string) error {
	var out []error
	for _, e := range policy.Errors(err) {
		out = append(out, &policy.Error{Place: rename(e.Place), Line: e.Line, Err: e.Err})
	}
	return errors.Join(out...)
}

// genericPlaceholder is shaped like real (see Generic), or "cork_" and
// genericRandomLen random characters when real is empty.
func genericPlaceholder(opts Options, real string) (string, error) {
	prefixes := genericTokenPrefixes
	if p := genericPrefix(real); p != "" {
		prefixes = append(slices.Clip(prefixes), p)
	}
	return placeholderOr(opts.Rand, real, prefixes, "cork_", genericRandomLen)
}

// genericPrefix guesses the fixed prefix of a credential of an unknown
// shape: a first segment of 1 to 8 lower-case letters and digits, with at
// least one letter that is not a hex digit, ended by '_' or '-' and
// followed by at least minRandom characters. Random base64 rarely looks
// like that, so little of a secret is copied when the guess is wrong; a
// UUID's first group always would, hence the hex rule.
func genericPrefix(real string) string {
	i := strings.IndexAny(real, "_-")
	if i < 1 || i > 8 || len(real)-i-1 < minRandom {
		return ""
	}
	letter := false
	for _, c := range real[:i] {
		switch {
		case 'g' <= c && c <= 'z':
			letter = true
		case 'a' <= c && c <= 'f':
		case '0' <= c && c <= '9':
		default:
			return ""
		}
	}
	if !letter {
		return ""
	}
	return real[:i+1]
}

// reservedEnv are variables a binding may not claim: the launcher or the
// shell own them.
var reservedEnv = []string{"PATH", "HOME", "USER", "SHELL", "PWD", "TMPDIR"}

// checkEnvName accepts an upper-case variable name, which a pasted
// credential rarely is. Its errors never quote the name.
func checkEnvName(s string) error {
	if s == "" {
		return errors.New("missing variable name")
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('A' <= c && c <= 'Z' || c == '_' || i > 0 && '0' <= c && c <= '9') {
			return errors.New("want the name of the host variable that holds the credential (A-Z, 0-9, _), not a value")
		}
	}
	switch {
	case slices.Contains(reservedEnv, s), strings.HasSuffix(s, "_PROXY"):
		return fmt.Errorf("%s is not a credential variable", s)
	case strings.HasPrefix(s, "CORK_"):
		return fmt.Errorf("%s: CORK_ variables are cork's own", s)
	}
	return nil
}
