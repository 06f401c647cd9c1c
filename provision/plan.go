package provision

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"slices"
	"strings"
)

// Plan is everything a launcher needs to start a sandbox for the selected
// profiles. Build returns a Plan with non-nil maps. A Plan is a value; it
// is safe for concurrent reads.
//
// Plan formats (fmt, encoding/json) without the values of ProvisionedEnv,
// which holds real credentials.
type Plan struct {
	// Files are dummy files to create in the sandbox.
	Files []File `json:"files"`
	// Env is the environment to set in the sandbox, in addition to the
	// launcher's proxy and CA variables. Only placeholders and non-secret
	// values. A value starting with "~/" is relative to the sandbox HOME;
	// the launcher expands it.
	Env map[string]string `json:"env"`
	// ProvisionedEnv holds values read on the host during provisioning
	// (e.g. the Codex access token from the host auth.json), keyed by the
	// env var that Egress.TokenEnvMap names. It overrides the host
	// environment in launch.Tokens and never enters the sandbox.
	ProvisionedEnv map[string]string `json:"-"`
	// Egress is the proxy's policy plus the slot → env var map.
	Egress EgressPlan `json:"egress"`
	// Sources are the host files provisioning read credentials from, for
	// the launcher to watch while the sandbox runs.
	Sources []Source `json:"sources,omitempty"`
}

// Source is a host credential file that provisioning read.
type Source struct {
	// Path is the host path, to watch.
	Path string `json:"path"`
	// Read re-reads the file and returns the provisioned env values it
	// yields now (e.g. a refreshed access token), to overlay on
	// Plan.ProvisionedEnv. Its errors, like provisioning's, name the file
	// and field and never a value. Safe for concurrent use.
	Read func() (map[string]string, error) `json:"-"`
}

// File is a dummy file for the sandbox.
type File struct {
	// Path is slash-separated and relative to the sandbox user's HOME,
	// e.g. ".codex/auth.json"; it satisfies fs.ValidPath. Launchers place
	// it under whatever directory serves as HOME in the sandbox (a
	// temporary directory for local, a bind mount for docker).
	Path string `json:"path"`
	// Mode holds the permission bits; directories are created 0700.
	Mode fs.FileMode `json:"mode"`
	// Data is the content: dummy values only.
	Data []byte `json:"data"`
}

// EgressPlan is the proxy's side of a Plan. Its YAML form, without
// TokenEnvMap, is a policy file (see PolicyYAML).
type EgressPlan struct {
	// TokenEnvMap maps each slot to the env var holding its real value,
	// looked up by launch.Tokens in the host env overlaid by ProvisionedEnv.
	TokenEnvMap map[string]string `yaml:"-" json:"-"`
	Slots       map[string]Slot   `yaml:"slots,omitempty" json:"slots,omitempty"`
	Routes      []Route           `yaml:"routes,omitempty" json:"routes,omitempty"`
	Allow       []string          `yaml:"allow,omitempty" json:"allow,omitempty"`
	Block       []Block           `yaml:"block,omitempty" json:"block,omitempty"`
}

// Slot is a credential slot; its real value is resolved separately.
type Slot struct {
	// Placeholder is what the sandbox holds instead of the credential.
	Placeholder string `yaml:"placeholder" json:"placeholder"`
}

// Route binds a slot to a host: the proxy intercepts TLS to Host and
// replaces the placeholder in Header with the real token.
type Route struct {
	Host         string `yaml:"host" json:"host"`
	Slot         string `yaml:"slot" json:"slot"`
	Header       string `yaml:"header,omitempty" json:"header,omitempty"`
	Scheme       string `yaml:"scheme,omitempty" json:"scheme,omitempty"`
	BasicUser    string `yaml:"basic_user,omitempty" json:"basic_user,omitempty"`
	AddIfMissing bool   `yaml:"add_if_missing,omitempty" json:"add_if_missing,omitempty"`
	InsecureHTTP bool   `yaml:"insecure_http,omitempty" json:"insecure_http,omitempty"`
	// Unscrubbable is what the proxy does with a response body it cannot
	// scrub of the token: UnscrubbableRefuse (empty: the default, 502) or
	// UnscrubbablePass.
	Unscrubbable string `yaml:"unscrubbable,omitempty" json:"unscrubbable,omitempty"`
}

// Block makes the proxy answer 403 with Reason. An empty Path blocks the
// whole host; a Path blocks that path, however spelled, and the paths
// below it, ignoring case unless CaseSensitive (docs/POLICY.md).
type Block struct {
	Host          string `yaml:"host" json:"host"`
	Path          string `yaml:"path,omitempty" json:"path,omitempty"`
	CaseSensitive bool   `yaml:"case_sensitive,omitempty" json:"case_sensitive,omitempty"`
	Reason        string `yaml:"reason,omitempty" json:"reason,omitempty"`
}

// Route schemes, as in the policy file.
const (
	SchemeBearer = "bearer"
	SchemeToken  = "token"
	SchemeBasic  = "basic"
	SchemeRaw    = "raw"
)

// Route.Unscrubbable values, as in the policy file.
const (
	UnscrubbableRefuse = "refuse"
	UnscrubbablePass   = "pass"
)

func newPlan() Plan {
	return Plan{
		Env:            map[string]string{},
		ProvisionedEnv: map[string]string{},
		Egress: EgressPlan{
			TokenEnvMap: map[string]string{},
			Slots:       map[string]Slot{},
		},
	}
}

// Validate reports every inconsistency in p at once, each naming its
// place (`routes[2].slot: unknown slot "gh"`). It never prints a value.
func (p Plan) Validate() error {
	var errs []error
	seen := map[string]bool{}
	for i, f := range p.Files {
		switch {
		case !fs.ValidPath(f.Path) || f.Path == ".":
			errs = append(errs, fmt.Errorf("files[%d].path: %q is not a clean relative path", i, f.Path))
		case seen[f.Path]:
			errs = append(errs, fmt.Errorf("files[%d].path: %q appears twice", i, f.Path))
		}
		seen[f.Path] = true
		if f.Mode&^fs.ModePerm != 0 {
			errs = append(errs, fmt.Errorf("files[%d].mode: want permission bits only, got %v", i, f.Mode))
		}
	}
	for i, s := range p.Sources {
		if s.Path == "" || s.Read == nil {
			errs = append(errs, fmt.Errorf("sources[%d]: want a path and a Read function", i))
		}
	}
	errs = append(errs, p.Egress.validate()...)
	return errors.Join(errs...)
}

func (e EgressPlan) validate() []error {
	var errs []error
	for _, slot := range slices.Sorted(maps.Keys(e.Slots)) {
		if e.Slots[slot].Placeholder == "" {
			errs = append(errs, fmt.Errorf("slots.%s.placeholder: empty", slot))
		}
		if e.TokenEnvMap[slot] == "" {
			errs = append(errs, fmt.Errorf("slots.%s: no env var in the token env map", slot))
		}
	}
	for _, slot := range slices.Sorted(maps.Keys(e.TokenEnvMap)) {
		if _, ok := e.Slots[slot]; !ok {
			errs = append(errs, fmt.Errorf("token env map: unknown slot %q", slot))
		}
	}
	for i, r := range e.Routes {
		if r.Host == "" {
			errs = append(errs, fmt.Errorf("routes[%d].host: empty", i))
		}
		if _, ok := e.Slots[r.Slot]; !ok {
			errs = append(errs, fmt.Errorf("routes[%d].slot: unknown slot %q", i, r.Slot))
		}
		switch r.Scheme {
		case "", SchemeBearer, SchemeToken, SchemeBasic, SchemeRaw:
		default:
			errs = append(errs, fmt.Errorf("routes[%d].scheme: unknown scheme %q", i, r.Scheme))
		}
		if err := checkUnscrubbable(r.Unscrubbable); err != nil {
			errs = append(errs, fmt.Errorf("routes[%d].%w", i, err))
		}
	}
	for i, h := range e.Allow {
		if h == "" {
			errs = append(errs, fmt.Errorf("allow[%d]: empty", i))
		}
	}
	for i, b := range e.Block {
		if b.Host == "" {
			errs = append(errs, fmt.Errorf("block[%d].host: empty", i))
		}
		if err := checkBlockPath(b); err != nil {
			errs = append(errs, fmt.Errorf("block[%d].%w", i, err))
		}
	}
	return errs
}

// String summarises p by names only: ProvisionedEnv holds real credentials.
func (p Plan) String() string {
	paths := make([]string, len(p.Files))
	for i, f := range p.Files {
		paths[i] = f.Path
	}
	sources := make([]string, len(p.Sources))
	for i, s := range p.Sources {
		sources[i] = s.Path
	}
	return fmt.Sprintf("provision.Plan{Files:%v Env:%v ProvisionedEnv:%v Slots:%v Routes:%d Allow:%d Block:%d Sources:%v}",
		paths,
		slices.Sorted(maps.Keys(p.Env)),
		slices.Sorted(maps.Keys(p.ProvisionedEnv)),
		slices.Sorted(maps.Keys(p.Egress.Slots)),
		len(p.Egress.Routes), len(p.Egress.Allow), len(p.Egress.Block), sources)
}

// GoString is String, so that %#v redacts too.
func (p Plan) GoString() string { return p.String() }

// Format implements fmt.Formatter: every verb prints String.
func (p Plan) Format(f fmt.State, verb rune) {
	if verb == 'q' {
		fmt.Fprintf(f, "%q", p.String())
		return
	}
	fmt.Fprint(f, p.String())
}

// normHost lower-cases h and drops a trailing dot, as the proxy matches.
func normHost(h string) string { return strings.TrimSuffix(strings.ToLower(h), ".") }
