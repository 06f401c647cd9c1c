package resolve

import (
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
)

// Env is an environment whose values are, or may be, credentials:
// variable name → Secret. It is the shape of the provisioned environment
// (values read on the host during provisioning, such as the Codex access
// token from ~/.codex/auth.json) and of the merged environment that
// Values resolves. Formatted or marshalled, it shows names only. A nil
// Env is empty.
type Env map[string]Secret

// Names returns the variable names in sorted order.
func (e Env) Names() []string { return slices.Sorted(maps.Keys(e)) }

// Merge returns a new Env holding host overlaid by provisioned: where
// both name a variable, provisioned wins. Neither input is modified.
func Merge(host map[string]string, provisioned Env) Env {
	out := make(Env, len(host)+len(provisioned))
	for k, v := range host {
		out[k] = NewSecret(v)
	}
	maps.Copy(out, provisioned)
	return out
}

// Missing names one slot whose environment variable is unset or empty.
type Missing struct {
	Slot string
	Env  string
}

// MissingError lists every slot whose variable is missing, sorted by
// variable then slot. It never holds a value.
type MissingError struct {
	Missing []Missing
}

func (e *MissingError) Error() string {
	var b strings.Builder
	if len(e.Missing) == 1 {
		b.WriteString("missing credential: ")
	} else {
		fmt.Fprintf(&b, "missing %d credentials: ", len(e.Missing))
	}
	for i, m := range e.Missing {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s (slot %s)", m.Env, m.Slot)
	}
	b.WriteString(" unset or empty")
	return b.String()
}

// Values resolves every slot of tokenEnvMap (slot → env var name) against
// env. A missing or empty variable is an error that lists every missing
// variable with its slot, in one message, and no value. There are no
// special cases: whatever a slot needs must already be in env.
func Values(tokenEnvMap map[string]string, env Env) (Tokens, error) {
	out := make(Tokens, len(tokenEnvMap))
	var missing []Missing
	for slot, name := range tokenEnvMap {
		v := env[name]
		if name == "" || v.IsZero() {
			missing = append(missing, Missing{Slot: slot, Env: name})
			continue
		}
		out[slot] = v
	}
	if len(missing) > 0 {
		sort.Slice(missing, func(i, j int) bool {
			if missing[i].Env != missing[j].Env {
				return missing[i].Env < missing[j].Env
			}
			return missing[i].Slot < missing[j].Slot
		})
		return nil, &MissingError{Missing: missing}
	}
	return out, nil
}
