package provision

import (
	"errors"
	"fmt"
	"strings"

	"github.com/cork-sh/cork/policy"
)

// ParseGenericPolicy parses the policy file of `cork run --policy`: the
// proxy's policy format, except that cork makes the slots and placeholders
// itself, so a route names the host variable holding its credential (env)
// instead of a slot:
//
//	routes:
//	  - host: api.example.com
//	    env: EXAMPLE_TOKEN      # required; the sandbox gets a placeholder in it
//	    header: X-Api-Key       # default Authorization
//	    scheme: raw             # default bearer on Authorization, raw otherwise
//	    basic_user: ...         # scheme basic only
//	    add_if_missing: false
//	    unscrubbable: refuse    # or pass: let bodies cork cannot scrub through
//	    methods: [GET, HEAD]    # default any
//	    push: { branches: ["agent/*"] }   # git pushes: default unrestricted
//	allow:
//	  - registry.npmjs.org
//	  - { host: api.example.org, path: /v1/public, methods: [GET] }
//	block:
//	  - { host: api.example.com, path: /admin, reason: "not for agents" }
//	  - { host: api.example.com, path: /Internal, case_sensitive: true }
//
// It is read by the policy package's decoder (aliases allowed) and its
// entries are judged by the policy package as the proxy will judge them.
// Unknown keys (slots, a route's slot) are errors. All problems are
// reported at once, each a *policy.Error naming its place in the file and
// its line (`routes[1].env: ... (line 7)`). Errors never quote an env value
// that is not a variable name.
func ParseGenericPolicy(data []byte) (Generic, error) {
	var f genericFile
	lines, err := policy.Decode(data, &f)
	if err != nil {
		return Generic{}, err
	}
	// The routes, allow and block entries are judged as the proxy will
	// judge them, with stand-in slots: the places are the file's own.
	var errs []error
	p := policy.Policy{Slots: map[string]policy.Slot{}, Allow: f.Allow, Block: f.Block}
	hostOf := map[string]int{} // canonical host → route index
	g := Generic{Allow: f.Allow, Block: f.Block}
	for i, r := range f.Routes {
		place := fmt.Sprintf("routes[%d]", i)
		b := Binding{Host: r.Host, Env: r.Env, Header: r.Header, Scheme: policy.Scheme(strings.ToLower(r.Scheme)), BasicUser: r.BasicUser,
			AddIfMissing: r.AddIfMissing, Unscrubbable: strings.ToLower(r.Unscrubbable), Methods: r.Methods, Push: r.Push}
		slot := checkSlot
		if err := checkEnvName(b.Env); err != nil {
			errs = append(errs, &policy.Error{Place: place + ".env", Line: lines.Of(place + ".env"), Err: err})
		} else {
			slot = b.Slot()
		}
		p.Slots[slot] = policy.Slot{Placeholder: checkPlaceholder(slot)}
		p.Routes = append(p.Routes, b.route(slot))
		if j, ok := hostOf[hostKey(b.Host)]; ok && b.Host != "" {
			errs = append(errs, &policy.Error{Place: place + ".host", Line: lines.Of(place + ".host"),
				Err: fmt.Errorf("%s is already bound by routes[%d]; one route per host", b.Host, j)})
		} else {
			hostOf[hostKey(b.Host)] = i
		}
		g.Bindings = append(g.Bindings, b)
	}
	if _, err := policy.New(p); err != nil {
		errs = append(errs, lines.Annotate(err))
	}
	if err := errors.Join(errs...); err != nil {
		return Generic{}, err
	}
	return g, nil
}

// genericFile is the schema of a cork run policy file (policy.Decode reads
// its yaml tags).
type genericFile struct {
	Routes []genericRoute `yaml:"routes"`
	Allow  []policy.Allow `yaml:"allow" want:"a host pattern"`
	Block  []policy.Block `yaml:"block"`
	Slots  struct{}       `yaml:"slots" refuse:"cork run makes the slots and placeholders; name each route's variable with env: VAR"`
}

// genericRoute is a route of a cork run policy file: env instead of slot.
type genericRoute struct {
	Host         string       `yaml:"host"`
	Env          string       `yaml:"env"`
	Header       string       `yaml:"header"`
	Scheme       string       `yaml:"scheme"`
	BasicUser    string       `yaml:"basic_user"`
	AddIfMissing bool         `yaml:"add_if_missing"`
	Unscrubbable string       `yaml:"unscrubbable"`
	Methods      []string     `yaml:"methods" want:"an HTTP method"`
	Push         *policy.Push `yaml:"push"`
}
