package policy

import (
	"bytes"
	"reflect"
	"testing"
)

// fields returns p's exported fields, for comparing policies.
func fields(p *Policy) Policy {
	return Policy{Slots: p.Slots, Routes: p.Routes, Allow: p.Allow, Block: p.Block}
}

// Marshal's file parses back as the same policy, and looks the same up.
func TestMarshalRoundTrip(t *testing.T) {
	built, err := New(Policy{
		Slots: map[string]Slot{"api": {Placeholder: "sk-cork-00000000"}, "gh": {Placeholder: testGithubPH}},
		Routes: []Route{
			{Host: "API.example.com.", Slot: "api", Header: "x-api-key", Scheme: SchemeRaw, Unscrubbable: UnscrubbablePass},
			{Host: "[2001:db8::1]:8443", Slot: "api", InsecureHTTP: true},
			{Host: "github.com", Slot: "gh", Scheme: SchemeBasic, AddIfMissing: true},
		},
		Allow: AllowHosts("*.githubusercontent.com", "example.org:8080"),
		Block: []Block{{Host: "api.example.com", Path: "/Admin/", CaseSensitive: true, Reason: "no"}, {Host: "uploads.github.com"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		p    *Policy
	}{
		{"sample.yaml", mustParsePolicy(t, string(readFixture(t, "sample.yaml")))},
		{"lookup policy", mustParsePolicy(t, lookupPolicy)},
		{"built in code", built},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := Marshal(*tt.p)
			if err != nil {
				t.Fatalf("Marshal() error = %v", err)
			}
			back, err := Parse(out)
			if err != nil {
				t.Fatalf("Parse(Marshal()) error = %v\n%s", err, out)
			}
			if got, want := fields(back), fields(tt.p); !reflect.DeepEqual(got, want) {
				t.Errorf("Parse(Marshal()) = %+v, want %+v\n%s", got, want, out)
			}
			if !reflect.DeepEqual(back.InterceptHosts(), tt.p.InterceptHosts()) {
				t.Errorf("InterceptHosts() = %v, want %v", back.InterceptHosts(), tt.p.InterceptHosts())
			}
			again, err := Marshal(*back)
			if err != nil || !bytes.Equal(again, out) {
				t.Errorf("Marshal(Parse(Marshal())) = %s, %v; want the same file", again, err)
			}
		})
	}
}
