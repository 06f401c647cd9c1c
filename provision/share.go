package provision

import (
	"bytes"
	"maps"
	"reflect"
	"slices"
	"strings"

	"github.com/cork-sh/cork/policy"
)

// Profiles that hand the sandbox the same host credential share it: the
// github and copilot profiles both take the GitHub token from GH_TOKEN,
// GITHUB_TOKEN or gh's login, and both route api.github.com. One credential
// is one slot (docs/AGENTS.md, "GitHub Copilot CLI"), so Build merges them:
//
//   - a slot bound to the same host variable (Egress.TokenEnvMap) as a slot
//     an earlier profile contributed is that slot: it takes the earlier
//     slot's name, and its placeholder is replaced by the earlier one in the
//     profile's sandbox env and files (placeholders are random strings, so
//     the replacement touches nothing else);
//   - a route equal to one an earlier profile contributed for the host is
//     the same route, not a conflict; if the two differ only in their
//     methods, the route keeps the methods both allow (mergeRoute).
//
// Two profiles whose credentials come from different variables still
// conflict on a shared host: one header of one host carries one credential.

// shareSlots renames part's slots that are bound to the same host variable
// as a slot already merged into m, and swaps their placeholders for that
// slot's. part's maps and slices are its own (Build makes a new Plan per
// profile), so it is changed in place.
func (m *merger) shareSlots(part *Plan) {
	e := &part.Egress
	for _, s := range slices.Sorted(maps.Keys(e.TokenEnvMap)) {
		into, ok := m.slotOf[e.TokenEnvMap[s]]
		if !ok || into == s && m.plan.Egress.Slots[into] == e.Slots[s] {
			continue
		}
		if _, taken := e.TokenEnvMap[into]; taken && into != s {
			continue // part binds that name to another variable: Build reports the conflict
		}
		if _, ok := e.Slots[s]; !ok {
			continue // Validate reports it
		}
		from, to := e.Slots[s].Placeholder, m.plan.Egress.Slots[into].Placeholder
		renameSlot(e, s, into)
		if from != "" && to != "" && from != to {
			replacePlaceholder(part, from, to)
		}
	}
}

// renameSlot moves slot from to name to in e, routes included.
func renameSlot(e *EgressPlan, from, to string) {
	if from == to {
		return
	}
	e.TokenEnvMap[to] = e.TokenEnvMap[from]
	delete(e.TokenEnvMap, from)
	e.Slots[to] = e.Slots[from]
	delete(e.Slots, from)
	for i := range e.Routes {
		if e.Routes[i].Slot == from {
			e.Routes[i].Slot = to
		}
	}
}

// replacePlaceholder puts placeholder to wherever part holds from: its
// slots, sandbox env values and dummy files.
func replacePlaceholder(part *Plan, from, to string) {
	for s, sl := range part.Egress.Slots {
		if sl.Placeholder == from {
			sl.Placeholder = to
			part.Egress.Slots[s] = sl
		}
	}
	for k, v := range part.Env {
		part.Env[k] = strings.ReplaceAll(v, from, to)
	}
	for i := range part.Files {
		part.Files[i].Data = bytes.ReplaceAll(part.Files[i].Data, []byte(from), []byte(to))
	}
}

// sameSlot reports whether profile contribution (s, env, sl) is the slot
// already merged under s.
func (m *merger) sameSlot(s, env string, hasEnv bool, sl policy.Slot, hasSlot bool) bool {
	cur, ok := m.plan.Egress.Slots[s]
	curEnv, okEnv := m.plan.Egress.TokenEnvMap[s]
	return ok && okEnv && hasEnv && hasSlot && cur == sl && curEnv == env
}

// mergeRoute folds r into a merged route for the same host that says the
// same but for the methods, and reports whether it did. The merged route
// allows the methods both allow (no methods: any), so that a profile's
// narrower rule (the github profile's read-only API) holds for the other
// too; methods that have nothing in common are a conflict.
func (m *merger) mergeRoute(r policy.Route) bool {
	for i, x := range m.plan.Egress.Routes {
		methods, ok := commonMethods(x.Methods, r.Methods)
		if !ok {
			continue
		}
		y := r // r keeps its methods for the next route
		x.Methods, y.Methods = nil, nil
		if !reflect.DeepEqual(x, y) {
			continue
		}
		m.plan.Egress.Routes[i].Methods = methods
		return true
	}
	return false
}

// commonMethods is the methods in both a and b, an empty list meaning
// every method; ok is false when the two have none in common.
func commonMethods(a, b []string) (common []string, ok bool) {
	switch {
	case len(a) == 0:
		return b, true
	case len(b) == 0:
		return a, true
	}
	for _, x := range a {
		if slices.ContainsFunc(b, func(y string) bool { return strings.EqualFold(x, y) }) {
			common = append(common, x)
		}
	}
	return common, len(common) > 0
}

// routeConflict names both sides' credentials when two profiles bind one
// host to different slots, the usual cause (variable names only, never
// values).
func (m *merger) routeConflict(r policy.Route, part EgressPlan) string {
	what := "a route for " + r.Host
	for _, x := range m.plan.Egress.Routes {
		if hostKey(x.Host) != hostKey(r.Host) || x.Slot == r.Slot {
			continue
		}
		return what + " bound to different credentials (slot " + x.Slot + " from " + m.plan.Egress.TokenEnvMap[x.Slot] +
			", slot " + r.Slot + " from " + part.TokenEnvMap[r.Slot] + ")"
	}
	return what
}
