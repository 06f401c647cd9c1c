package provision

import (
	"reflect"
	"testing"

	"github.com/cork-sh/cork/policy"
)

// mergeRoute keeps the narrower methods of the route it merges whatever
// routes for other hosts come before the one it merges into.
func TestMergeRouteKeepsMethodsPastOtherHosts(t *testing.T) {
	m := newMerger()
	m.plan.Egress.Routes = []policy.Route{
		{Host: "a.example.test", Slot: "s", Header: "Authorization", Scheme: policy.SchemeBearer, Methods: []string{"GET"}},
		{Host: "b.example.test", Slot: "s", Header: "Authorization", Scheme: policy.SchemeBearer},
	}
	r := policy.Route{Host: "b.example.test", Slot: "s", Header: "Authorization", Scheme: policy.SchemeBearer, Methods: []string{"GET"}}
	if !m.mergeRoute(r) {
		t.Fatal("mergeRoute = false, want the route merged into b.example.test's")
	}
	if got := m.plan.Egress.Routes[1].Methods; !reflect.DeepEqual(got, []string{"GET"}) {
		t.Errorf("merged b.example.test methods = %v, want [GET]", got)
	}
	if got := m.plan.Egress.Routes[0].Methods; !reflect.DeepEqual(got, []string{"GET"}) {
		t.Errorf("a.example.test methods = %v, want [GET] untouched", got)
	}
}
