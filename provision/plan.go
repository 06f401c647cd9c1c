package provision

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"slices"
	"strings"

	"github.com/cork-sh/cork/policy"
	"github.com/cork-sh/cork/resolve"
)

// Plan is everything a launcher needs to start a sandbox for the selected
// profiles. Build returns a Plan with non-nil maps. A Plan is a value; it
// is safe for concurrent reads. It holds real credentials only in
// ProvisionedEnv, whose values print as resolve.Redacted: a Plan can be
// formatted or marshalled as it is.
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
	ProvisionedEnv resolve.Env `json:"-"`
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
	// Plan.ProvisionedEnv: the same shape, resolved the same way. Its
	// errors, like provisioning's, name the file and field and never a
	// value. Safe for concurrent use.
	Read func() (resolve.Env, error) `json:"-"`
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

// EgressPlan is the proxy's side of a Plan: the policy's entries, built
// by the profiles as policy values, and the slot → env var map.
type EgressPlan struct {
	// TokenEnvMap maps each slot to the env var holding its real value,
	// looked up by launch.Tokens in the host env overlaid by ProvisionedEnv.
	TokenEnvMap map[string]string      `json:"-"`
	Slots       map[string]policy.Slot `json:"slots,omitempty"`
	Routes      []policy.Route         `json:"routes,omitempty"`
	Allow       []policy.Allow         `json:"allow,omitempty"`
	Block       []policy.Block         `json:"block,omitempty"`
}

// Policy validates and compiles the plan's policy (policy.New): errors
// name places in the merged plan (`routes[3].host: ...`).
func (e EgressPlan) Policy() (*policy.Policy, error) {
	return policy.New(policy.Policy{Slots: e.Slots, Routes: e.Routes, Allow: e.Allow, Block: e.Block})
}

func newPlan() Plan {
	return Plan{
		Env:            map[string]string{},
		ProvisionedEnv: resolve.Env{},
		Egress: EgressPlan{
			TokenEnvMap: map[string]string{},
			Slots:       map[string]policy.Slot{},
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

// validate checks the token env map against the slots, and the policy
// itself as the proxy will (policy.New), so that a bad plan fails at
// Build, not at launch.
func (e EgressPlan) validate() []error {
	var errs []error
	for _, slot := range slices.Sorted(maps.Keys(e.Slots)) {
		if e.TokenEnvMap[slot] == "" {
			errs = append(errs, fmt.Errorf("slots.%s: no env var in the token env map", slot))
		}
	}
	for _, slot := range slices.Sorted(maps.Keys(e.TokenEnvMap)) {
		if _, ok := e.Slots[slot]; !ok {
			errs = append(errs, fmt.Errorf("token env map: unknown slot %q", slot))
		}
	}
	if _, err := e.Policy(); err != nil {
		errs = append(errs, err)
	}
	return errs
}

// hostKey is the canonical form of host pattern h, for telling whether two
// profiles name the same host; an invalid pattern is its own key (the
// plan's validation reports it).
// sameAllow reports whether allow entries a and b say the same (host
// compared as hostKey does, methods in any order and case).
func sameAllow(a, b policy.Allow) bool {
	if hostKey(a.Host) != hostKey(b.Host) || a.Path != b.Path || len(a.Methods) != len(b.Methods) {
		return false
	}
	for _, m := range a.Methods {
		if !slices.ContainsFunc(b.Methods, func(x string) bool { return strings.EqualFold(x, m) }) {
			return false
		}
	}
	return true
}

func hostKey(h string) string {
	if p, err := policy.ParseHostPattern(h); err == nil {
		return p.String()
	}
	return h
}
