package policy

import (
	"encoding/json"
	"fmt"

	"go.yaml.in/yaml/v3"
)

// Allow is an allow entry: traffic to Host passes without a credential.
//
// An entry with only Host (written as a bare host string in a policy file)
// allows the whole host: its TLS is tunnelled blind. An entry with a Path
// or Methods is scoped: the host's TLS is intercepted (no credential is
// injected) and only requests under Path (segment-wise, case-sensitive;
// "" = any path) with one of Methods (empty = any) pass. See
// docs/POLICY.md. Path is stored normalised like Block.Path, Methods
// upper-case. The zero Allow is invalid (Host is required). An Allow is a
// plain value, safe for concurrent use when not modified.
type Allow struct {
	Host    string   `yaml:"host" json:"host"`
	Path    string   `yaml:"path,omitempty" json:"path,omitempty"`                             // path prefix; "" = whole host
	Methods []string `yaml:"methods,omitempty" json:"methods,omitempty" want:"an HTTP method"` // empty = any
}

// Scoped reports whether a restricts its host to paths or methods.
func (a Allow) Scoped() bool { return a.Path != "" || len(a.Methods) > 0 }

// allowFields is Allow without its Go methods, so that decoding and
// encoding it do not recurse.
type allowFields Allow

// UnmarshalYAML reads a host string or a mapping {host, path, methods}.
// Decode checks the shape first and reports problems with their places.
func (a *Allow) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		*a = Allow{Host: n.Value}
		return nil
	}
	var f allowFields
	if err := n.Decode(&f); err != nil {
		return err
	}
	*a = Allow(f)
	return nil
}

// MarshalYAML writes a bare host string for an entry with only a host, a
// mapping otherwise.
func (a Allow) MarshalYAML() (any, error) {
	if !a.Scoped() {
		return a.Host, nil
	}
	return allowFields(a), nil
}

// UnmarshalJSON reads a host string or an object {host, path, methods}.
func (a *Allow) UnmarshalJSON(data []byte) error {
	var s string
	if err := json.Unmarshal(data, &s); err == nil {
		*a = Allow{Host: s}
		return nil
	}
	var f allowFields
	if err := json.Unmarshal(data, &f); err != nil {
		return fmt.Errorf("allow entry: want a host string or an object with host, path and methods: %w", err)
	}
	*a = Allow(f)
	return nil
}

// MarshalJSON writes a bare host string for an entry with only a host, an
// object otherwise.
func (a Allow) MarshalJSON() ([]byte, error) {
	if !a.Scoped() {
		return json.Marshal(a.Host)
	}
	return json.Marshal(allowFields(a))
}

// shorthandField is implemented by a schema struct that a policy file may
// also write as a single scalar: the value of the field it names (Decode
// accepts either).
func (Allow) shorthandField() string { return "host" }

// AllowHosts returns a whole-host allow entry for each of hosts.
func AllowHosts(hosts ...string) []Allow {
	out := make([]Allow, len(hosts))
	for i, h := range hosts {
		out[i] = Allow{Host: h}
	}
	return out
}
