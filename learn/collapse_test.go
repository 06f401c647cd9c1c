package learn

import (
	"reflect"
	"testing"
)

func TestCollapse(t *testing.T) {
	tests := []struct {
		name string
		used map[string][]string
		want []Use
	}{
		{"empty", nil, nil},
		{"one repository", map[string][]string{
			"/repos/o/r/issues/1": {"GET"},
			"/repos/o/r/pulls":    {"POST"},
		}, []Use{{"/repos/o/r", []string{"GET", "POST"}}}},
		{"a single long path is cut to three segments", map[string][]string{
			"/repos/o/r/issues/1": {"GET"},
		}, []Use{{"/repos/o/r", []string{"GET"}}}},
		{"git smart HTTP", map[string][]string{
			"/o/r.git/info/refs":        {"GET"},
			"/o/r.git/git-upload-pack":  {"POST"},
			"/o/r.git/git-receive-pack": {"POST"},
		}, []Use{{"/o/r.git", []string{"GET", "POST"}}}},
		{"git at the top, and LFS", map[string][]string{
			"/repo.git/info/refs":               {"GET"},
			"/repo.git/git-upload-pack":         {"POST"},
			"/g/o/r/info/lfs/objects/batch":     {"POST"},
			"/g/o/r/info/refs":                  {"GET"},
			"/info/refs":                        {"GET"},
			"/docs/git-upload-pack/explanation": {"GET"},
		}, []Use{
			{"/docs", []string{"GET"}},
			{"/g/o/r", []string{"GET", "POST"}},
			{"/info/refs", []string{"GET"}},
			{"/repo.git", []string{"GET", "POST"}},
		}},
		{"separate groups stay apart", map[string][]string{
			"/user":         {"GET"},
			"/repos/o/r":    {"GET"},
			"/repos/o/x/y":  {"GET"},
			"/graphql":      {"POST"},
			"/simple/pkg/":  {"GET"},
			"/simple/other": {"GET"},
		}, []Use{
			{"/graphql", []string{"POST"}},
			{"/repos/o", []string{"GET"}},
			{"/simple/other", []string{"GET"}},
			{"/simple/pkg", []string{"GET"}},
			{"/user", []string{"GET"}},
		}},
		{"root only from a request for root", map[string][]string{
			"/":       {"GET"},
			"/api/x":  {"POST"},
			"/static": {"GET"},
		}, []Use{{"/", []string{"GET"}}, {"/api/x", []string{"POST"}}}},
		{"escapes decoded, stopped at what an allow path cannot hold", map[string][]string{
			"/a/%62/c":      {"GET"},
			"/q/b%2Fc/d":    {"GET"},
			"/s/x;y=1":      {"GET"},
			"/t/u/v/w...":   {"GET"},
			"/p/%zz/x":      {"PUT"},
			"/m/n%20":       {"GET"},
			"/lower/Case/X": {"get"},
		}, []Use{
			{"/a/b/c", []string{"GET"}},
			{"/lower/Case/X", []string{"GET"}},
			{"/m", []string{"GET"}},
			{"/p", []string{"PUT"}},
			{"/q", []string{"GET"}},
			{"/s", []string{"GET"}},
			{"/t/u/v", []string{"GET"}},
		}},
		{"dot-segments give back what they may climb", map[string][]string{
			"/z/../etc":         {"GET"},
			"/a/b/c/%2e%2e/d":   {"POST"},
			"/k/l/%252e%252e/m": {"PUT"},
			"//n":               {"DELETE"},
			"/trailing/slash/":  {"HEAD"},
		}, []Use{
			{"/", []string{"DELETE", "GET"}},
			{"/a/b", []string{"POST"}},
			{"/k", []string{"PUT"}},
			{"/trailing/slash", []string{"HEAD"}},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Collapse(tt.used); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Collapse(%v) = %v, want %v", tt.used, got, tt.want)
			}
		})
	}
}
