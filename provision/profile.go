package provision

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/cork-sh/cork/policy"
)

// Profile provisions one agent. Provision adds the agent's dummy files,
// sandbox env, provisioned env and egress rules to plan, which Build hands
// it empty (maps allocated); opts has its defaults filled in. A profile
// keeps all of its steps in one file and reads the host only through opts.
type Profile interface {
	Name() string
	Provision(opts Options, plan *Plan) error
}

// Profiles returns a new map of every known profile by name. Profiles are
// listed here explicitly; there is no init registration. Generic is not
// listed: it needs its bindings (see ParseBinding).
func Profiles() map[string]Profile {
	return map[string]Profile{
		"claude":  Claude{},
		"codex":   Codex{},
		"copilot": Copilot{},
		"gemini":  Gemini{},
		"github":  GitHub{},
	}
}

// Names returns the known profile names, sorted.
func Names() []string { return slices.Sorted(maps.Keys(Profiles())) }

// Lookup returns the profile called name. An unknown name is an error that
// lists the known ones.
func Lookup(name string) (Profile, error) {
	if p, ok := Profiles()[name]; ok {
		return p, nil
	}
	return nil, fmt.Errorf("unknown agent profile %q (known: %s)", name, strings.Join(Names(), ", "))
}

// Build runs profiles in order and merges what they contribute into one
// validated Plan. It reports every failing profile at once, each prefixed
// with its name. Two profiles writing the same file, slot, route host or
// variable (with a different value) are in conflict, which is an error;
// except that profiles handing the sandbox the same host credential share
// one slot and placeholder, and may contribute the same route (share.go).
func Build(opts Options, profiles ...Profile) (Plan, error) {
	if len(profiles) == 0 {
		return Plan{}, errors.New("provision: no agent profile selected")
	}
	opts = opts.withDefaults()
	m := newMerger()
	var errs []error
	for _, p := range profiles {
		name := p.Name()
		if m.profiles[name] {
			errs = append(errs, fmt.Errorf("%s: profile selected twice", name))
			continue
		}
		m.profiles[name] = true
		part := newPlan()
		if err := p.Provision(opts, &part); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
			continue
		}
		errs = append(errs, m.add(name, part)...)
	}
	if err := errors.Join(errs...); err != nil {
		return Plan{}, err
	}
	narrowCopilot(&m.plan.Egress)
	if err := m.plan.Validate(); err != nil {
		return Plan{}, fmt.Errorf("provision: invalid plan: %w", err)
	}
	return m.plan, nil
}

// merger accumulates profile contributions and remembers who added what,
// to name both sides of a conflict.
type merger struct {
	plan     Plan
	profiles map[string]bool
	owner    map[string]string // "file:<path>", "slot:<slot>", "route:<host>", "env:<k>", "penv:<k>" → profile
	slotOf   map[string]string // host variable → the merged slot bound to it (share.go)
}

func newMerger() *merger {
	return &merger{plan: newPlan(), profiles: map[string]bool{}, owner: map[string]string{}, slotOf: map[string]string{}}
}

// claim records that profile owns key and returns a conflict error if
// another profile already does.
func (m *merger) claim(profile, key, what string) error {
	if _, ok := m.owner[key]; ok {
		return m.conflict(profile, key, what)
	}
	m.owner[key] = profile
	return nil
}

func (m *merger) conflict(profile, key, what string) error {
	return fmt.Errorf("%s: conflict with profile %s: both provide %s", profile, m.owner[key], what)
}

// mergeEnv adds profile name's variables src to dst; a variable another
// profile set to a different value is a conflict (key prefix, what names
// the kind). Values are compared, never shown.
func mergeEnv[V comparable](m *merger, name, prefix, what string, dst, src map[string]V) []error {
	var errs []error
	for _, k := range slices.Sorted(maps.Keys(src)) {
		if v, ok := dst[k]; ok && v != src[k] {
			errs = append(errs, m.conflict(name, prefix+k, "different values for "+what+k))
			continue
		}
		m.owner[prefix+k] = name
		dst[k] = src[k]
	}
	return errs
}

func (m *merger) add(name string, part Plan) []error {
	var errs []error
	dst := &m.plan
	m.shareSlots(&part)
	for _, f := range part.Files {
		if err := m.claim(name, "file:"+f.Path, "file "+f.Path); err != nil {
			errs = append(errs, err)
			continue
		}
		dst.Files = append(dst.Files, f)
	}
	errs = append(errs, mergeEnv(m, name, "env:", "sandbox env ", dst.Env, part.Env)...)
	errs = append(errs, mergeEnv(m, name, "penv:", "provisioned env ", dst.ProvisionedEnv, part.ProvisionedEnv)...)
	e := part.Egress
	slots := slices.Sorted(maps.Keys(e.Slots))
	for _, s := range slices.Sorted(maps.Keys(e.TokenEnvMap)) {
		if !slices.Contains(slots, s) {
			slots = append(slots, s) // Validate reports it
		}
	}
	for _, s := range slots {
		sl, hasSlot := e.Slots[s]
		env, hasEnv := e.TokenEnvMap[s]
		if m.sameSlot(s, env, hasEnv, sl, hasSlot) {
			continue // a shared credential (share.go)
		}
		if err := m.claim(name, "slot:"+s, "slot "+s); err != nil {
			errs = append(errs, err)
			continue
		}
		if hasSlot {
			dst.Egress.Slots[s] = sl
		}
		if hasEnv {
			dst.Egress.TokenEnvMap[s] = env
			m.slotOf[env] = s
		}
	}
	for _, r := range e.Routes {
		if m.mergeRoute(r) {
			continue
		}
		if err := m.claim(name, "route:"+hostKey(r.Host), m.routeConflict(r, e)); err != nil {
			errs = append(errs, err)
			continue
		}
		dst.Egress.Routes = append(dst.Egress.Routes, r)
	}
	dst.Sources = append(dst.Sources, part.Sources...)
	for _, a := range e.Allow {
		if !slices.ContainsFunc(dst.Egress.Allow, func(x policy.Allow) bool { return sameAllow(x, a) }) {
			dst.Egress.Allow = append(dst.Egress.Allow, a)
		}
	}
	for _, b := range e.Block {
		if !slices.Contains(dst.Egress.Block, b) {
			dst.Egress.Block = append(dst.Egress.Block, b)
		}
	}
	return errs
}
