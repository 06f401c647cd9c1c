package policy

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// YAML aliases and merge keys work like writing the value out.
func TestParseAliases(t *testing.T) {
	const src = `
slots:
  api: { placeholder: &ph "sk-cork-00000000" }
routes:
  - &route
    host: api.example.com
    slot: api
    header: X-Api-Key
    scheme: raw
  - <<: *route
    host: api2.example.com
  - <<: [*route]
    host: api3.example.com
    header: X-Other
allow: &hosts
  - registry.npmjs.org
block:
  - host: api.example.com
    path: /admin
    reason: *ph
`
	p, err := Parse([]byte(src))
	if err != nil {
		t.Fatalf("Parse() error = %v", err)
	}
	want := []Route{
		{Host: "api.example.com", Slot: "api", Header: "X-Api-Key", Scheme: SchemeRaw, Unscrubbable: UnscrubbableRefuse},
		{Host: "api2.example.com", Slot: "api", Header: "X-Api-Key", Scheme: SchemeRaw, Unscrubbable: UnscrubbableRefuse},
		{Host: "api3.example.com", Slot: "api", Header: "X-Other", Scheme: SchemeRaw, Unscrubbable: UnscrubbableRefuse},
	}
	if !reflect.DeepEqual(p.Routes, want) {
		t.Errorf("Routes = %+v, want %+v", p.Routes, want)
	}
	if p.Block[0].Reason != "sk-cork-00000000" || !reflect.DeepEqual(p.Allow, AllowHosts("registry.npmjs.org")) {
		t.Errorf("Block = %+v, Allow = %v; want the aliased values", p.Block, p.Allow)
	}

	// An alias is checked where it is used: an unknown key merged into a
	// route is named at the route.
	_, err = Parse([]byte("x: &bad { host: a.com, hots: b }\nroutes:\n  - <<: *bad\n"))
	if err == nil || !strings.Contains(err.Error(), `routes[0]: unknown field "hots"`) {
		t.Errorf("Parse(merged unknown key) error = %v, want routes[0]: unknown field \"hots\"", err)
	}
}

// Every problem, not only the document's shape, names its line; Errors
// and errors.As give each as an *Error, through Load's file prefix too.
func TestParseErrorLines(t *testing.T) {
	const src = "slots:\n  api: { placeholder: sk-cork-00000000 }\nroutes:\n  - host: api.example.com:99999\n    slot: api\n  - host: b.example.com\n    slot: nope\nallow:\n  - a b\n"
	want := []Error{
		{Place: "routes[0].host", Line: 4},
		{Place: "routes[1].slot", Line: 7},
		{Place: "allow[0]", Line: 9},
	}
	path := filepath.Join(t.TempDir(), "p.yaml")
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	_, perr := Parse([]byte(src))
	_, lerr := Load(path)
	for name, err := range map[string]error{"Parse": perr, "Load": lerr} {
		got := Errors(err)
		if len(got) != len(want) {
			t.Fatalf("%s: Errors() = %v, want %d errors", name, got, len(want))
		}
		for i, w := range want {
			if got[i].Place != w.Place || got[i].Line != w.Line {
				t.Errorf("%s: error %d = %q at line %d, want %q at line %d", name, i, got[i].Place, got[i].Line, w.Place, w.Line)
			}
		}
		var pe *Error
		if !errors.As(err, &pe) || pe.Place != "routes[0].host" {
			t.Errorf("%s: errors.As(*Error) = %v, want routes[0].host", name, pe)
		}
	}
	if msg := perr.Error(); !strings.HasPrefix(msg, `routes[0].host: invalid host pattern "api.example.com:99999": port out of range (line 4)`) {
		t.Errorf("Parse() error = %q, want the place, the problem and the line", msg)
	}
	for _, line := range strings.Split(lerr.Error(), "\n") {
		if !strings.HasPrefix(line, path+": ") {
			t.Errorf("Load() error line %q does not start with the path", line)
		}
	}
}

// Decode reads a caller's variant of the format by its yaml tags: want
// describes a value, refuse names a key that is known but not accepted.
func TestDecodeVariant(t *testing.T) {
	type variant struct {
		Routes []struct {
			Host string `yaml:"host"`
			Env  string `yaml:"env"`
		} `yaml:"routes"`
		Allow []string `yaml:"allow" want:"a host pattern"`
		Slots struct{} `yaml:"slots" refuse:"made for you"`
	}
	var v variant
	_, err := Decode([]byte("base: &r { host: a.test, env: A }\n"), &v)
	if err == nil || !strings.Contains(err.Error(), `policy: unknown field "base" (want routes, allow) (line 1)`) {
		t.Errorf("Decode(unknown top key) = %v, want the known keys without the refused one", err)
	}
	_, err = Decode([]byte("routes:\n  - host: a.test\n    env: A\nallow:\n  - [x]\nslots: {}\n"), &v)
	for _, w := range []string{"allow[0]: want a host pattern (line 5)", "slots: made for you (line 6)"} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("Decode() error = %v, want %q", err, w)
		}
	}
	lines, err := Decode([]byte("routes:\n  - host: a.test\n    env: A\n  - env: B\n"), &v)
	if err != nil || len(v.Routes) != 2 || v.Routes[1].Env != "B" {
		t.Fatalf("Decode() = %+v, %v", v, err)
	}
	if got := lines.Of("routes[1].host"); got != 4 {
		t.Errorf("Lines.Of(routes[1].host) = %d, want 4 (the route's line: it has no host)", got)
	}
	if got := lines.Of("routes[0].env"); got != 3 {
		t.Errorf("Lines.Of(routes[0].env) = %d, want 3", got)
	}
}
