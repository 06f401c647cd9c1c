package provision

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
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
//	allow: ["registry.npmjs.org", "*.example.org"]
//	block:
//	  - { host: api.example.com, path: /admin, reason: "not for agents" }
//	  - { host: api.example.com, path: /Internal, case_sensitive: true }
//
// Unknown keys (slots, a route's slot) are errors. All problems are
// reported at once, each naming its place (`routes[1].env: ...`) and, for
// the document's shape, its line. Errors never quote an env value that is
// not a variable name.
func ParseGenericPolicy(data []byte) (Generic, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return Generic{}, errors.New("empty policy")
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var root yaml.Node
	if err := dec.Decode(&root); err != nil {
		if errors.Is(err, io.EOF) {
			return Generic{}, errors.New("empty policy")
		}
		return Generic{}, fmt.Errorf("%s", strings.TrimPrefix(err.Error(), "yaml: "))
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return Generic{}, errors.New("more than one YAML document; a policy is one document")
	}
	doc := &root
	if doc.Kind == yaml.DocumentNode && len(doc.Content) == 1 {
		doc = doc.Content[0]
	}
	if errs := checkGenericSchema(doc); len(errs) > 0 {
		return Generic{}, errors.Join(errs...)
	}
	var p struct {
		Routes []struct {
			Host         string `yaml:"host"`
			Env          string `yaml:"env"`
			Header       string `yaml:"header"`
			Scheme       string `yaml:"scheme"`
			BasicUser    string `yaml:"basic_user"`
			AddIfMissing bool   `yaml:"add_if_missing"`
			Unscrubbable string `yaml:"unscrubbable"`
		} `yaml:"routes"`
		Allow []string `yaml:"allow"`
		Block []Block  `yaml:"block"`
	}
	if err := doc.Decode(&p); err != nil {
		return Generic{}, fmt.Errorf("%s", strings.TrimPrefix(err.Error(), "yaml: "))
	}
	var g Generic
	var errs []error
	for i, r := range p.Routes {
		b := Binding{Host: r.Host, Env: r.Env, Header: r.Header, Scheme: strings.ToLower(r.Scheme), BasicUser: r.BasicUser,
			AddIfMissing: r.AddIfMissing, Unscrubbable: strings.ToLower(r.Unscrubbable)}
		if err := b.Validate(); err != nil {
			errs = append(errs, prefixLines(fmt.Sprintf("routes[%d]", i), err))
			continue
		}
		g.Bindings = append(g.Bindings, b)
	}
	for i, h := range p.Allow {
		if err := checkHostPattern(h); err != nil {
			errs = append(errs, fmt.Errorf("allow[%d]: %w", i, err))
			continue
		}
		g.Allow = append(g.Allow, h)
	}
	for i, b := range p.Block {
		if err := checkBlock(b); err != nil {
			errs = append(errs, prefixLines(fmt.Sprintf("block[%d]", i), err))
			continue
		}
		g.Block = append(g.Block, b)
	}
	if err := errors.Join(errs...); err != nil {
		return Generic{}, err
	}
	return g, nil
}

// Keys of a cork run policy.
var (
	genericRouteKeys = []string{"host", "env", "header", "scheme", "basic_user", "add_if_missing", "unscrubbable"}
	genericBlockKeys = []string{"host", "path", "case_sensitive", "reason"}
	genericBoolKeys  = []string{"add_if_missing", "case_sensitive"}
)

// checkGenericSchema reports unknown keys and wrongly shaped values with
// their place and line, before decoding.
func checkGenericSchema(doc *yaml.Node) []error {
	var errs []error
	fail := func(n *yaml.Node, place, format string, a ...any) {
		errs = append(errs, fmt.Errorf("%s: %s (line %d)", place, fmt.Sprintf(format, a...), n.Line))
	}
	isNull := func(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" }
	want := func(n *yaml.Node, kind yaml.Kind, place, what string) bool {
		if n.Kind == kind {
			return true
		}
		if !isNull(n) {
			fail(n, place, "want %s", what)
		}
		return false
	}
	mapping := func(n *yaml.Node, place string, keys []string) {
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			sub := place + "." + k.Value
			switch {
			case !slices.Contains(keys, k.Value):
				fail(k, sub, "unknown field (want %s)", strings.Join(keys, ", "))
			case !want(v, yaml.ScalarNode, sub, "a single value"):
			case slices.Contains(genericBoolKeys, k.Value) && v.ShortTag() != "!!bool":
				fail(v, sub, "want true or false")
			}
		}
	}
	if isNull(doc) {
		return []error{errors.New("empty policy")}
	}
	if !want(doc, yaml.MappingNode, "policy", "a mapping with routes, allow and block") {
		return errs
	}
	for i := 0; i+1 < len(doc.Content); i += 2 {
		k, v := doc.Content[i], doc.Content[i+1]
		switch k.Value {
		case "routes", "block":
			keys := genericRouteKeys
			if k.Value == "block" {
				keys = genericBlockKeys
			}
			if !want(v, yaml.SequenceNode, k.Value, "a list") {
				continue
			}
			for j, e := range v.Content {
				place := fmt.Sprintf("%s[%d]", k.Value, j)
				if want(e, yaml.MappingNode, place, "a mapping") {
					mapping(e, place, keys)
				}
			}
		case "allow":
			if !want(v, yaml.SequenceNode, "allow", "a list of host patterns") {
				continue
			}
			for j, e := range v.Content {
				want(e, yaml.ScalarNode, fmt.Sprintf("allow[%d]", j), "a host pattern")
			}
		case "slots":
			fail(k, "slots", "cork run makes the slots and placeholders; name each route's variable with env: VAR")
		default:
			fail(k, k.Value, "unknown field (want routes, allow, block)")
		}
	}
	return errs
}
