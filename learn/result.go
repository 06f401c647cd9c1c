package learn

import (
	"cmp"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	"github.com/cork-sh/cork/policy"
)

// Result is what a Recorder learned.
type Result struct {
	// Allow are the entries the run needed: whole hosts first (sorted),
	// then path-scoped entries per host (sorted by host, then path).
	Allow []policy.Allow
	// Requests counts the requests (and tunnels) that passed.
	Requests int
	// Refused are the denials, most frequent first.
	Refused []Refused
}

// Refused is one kind of request the proxy refused, with its count.
type Refused struct {
	Host   string // host, or host:port off 443 and 80
	Method string // "" for a CONNECT refused as a whole
	Path   string
	Slot   string // the credential it would have spent, if any
	Reason string
	Count  int
}

// Result returns what r learned so far. A host the proxy refused a
// placeholder to is never learned.
func (r *Recorder) Result() Result {
	r.mu.Lock()
	defer r.mu.Unlock()
	res := Result{Requests: r.requests}
	for _, hp := range sortedHosts(r.whole) {
		if !r.leaked[hp] {
			res.Allow = append(res.Allow, policy.Allow{Host: hp.String()})
		}
	}
	for _, hp := range sortedHosts(r.used) {
		if r.leaked[hp] || r.whole[hp] {
			continue
		}
		used := map[string][]string{}
		for path, ms := range r.used[hp] {
			used[path] = slices.Collect(maps.Keys(ms))
		}
		for _, u := range Collapse(used) {
			res.Allow = append(res.Allow, policy.Allow{Host: hp.String(), Path: u.Path, Methods: u.Methods})
		}
	}
	for k, n := range r.refused {
		res.Refused = append(res.Refused, Refused{Host: hostPort{k.Host, k.Port}.String(), Method: k.Method, Path: k.Path, Slot: k.Slot, Reason: k.Reason, Count: n})
	}
	slices.SortFunc(res.Refused, func(a, b Refused) int {
		return cmp.Or(b.Count-a.Count, strings.Compare(a.Host, b.Host), strings.Compare(a.Path, b.Path), strings.Compare(a.Method, b.Method), strings.Compare(a.Reason, b.Reason))
	})
	return res
}

func sortedHosts[V any](m map[hostPort]V) []hostPort {
	hs := slices.Collect(maps.Keys(m))
	slices.SortFunc(hs, func(a, b hostPort) int { return cmp.Or(strings.Compare(a.Host, b.Host), a.Port-b.Port) })
	return hs
}

// Hosts is the number of distinct hosts in res.Allow.
func (res Result) Hosts() int {
	seen := map[string]bool{}
	for _, a := range res.Allow {
		seen[a.Host] = true
	}
	return len(seen)
}

// Summary writes res for a person, one line each: what was learned and
// what was refused (at most 20 kinds of refusal).
func (res Result) Summary(w io.Writer, file string) {
	fmt.Fprintf(w, "cork: learned %d allow entries for %d hosts from %d requests; wrote %s\n", len(res.Allow), res.Hosts(), res.Requests, file)
	for _, a := range res.Allow {
		if a.Scoped() {
			fmt.Fprintf(w, "cork:   allow %s %s %s\n", a.Host, strings.Join(a.Methods, ","), a.Path)
		} else {
			fmt.Fprintf(w, "cork:   allow %s\n", a.Host)
		}
	}
	for i, f := range res.Refused {
		if i == 20 {
			fmt.Fprintf(w, "cork:   ... and %d more kinds of refusal\n", len(res.Refused)-i)
			break
		}
		what := f.Host
		if f.Method != "" && f.Method != "CONNECT" {
			what = f.Method + " " + f.Host + f.Path
		}
		if f.Slot != "" {
			what += " (credential " + f.Slot + ")"
		}
		fmt.Fprintf(w, "cork:   refused %s: %s (%d×), not learned\n", what, f.Reason, f.Count)
	}
}
