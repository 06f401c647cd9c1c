package auditlog

import (
	"cmp"
	"maps"
	"slices"
)

// Reasons of denials that --missing reads (the proxy's ReasonNotAllowed,
// policy.DenyMethod, policy.DenyPath).
const (
	ReasonNotAllowed       = "not_allowed"
	ReasonMethodNotAllowed = "method_not_allowed"
	ReasonPathNotAllowed   = "path_not_allowed"
)

// Summary is an audit log summed up. Make one with NewSummary (or Read);
// the zero Summary is not ready for Add. It is not safe for concurrent
// use.
type Summary struct {
	Lines   int // egress lines counted
	Other   int // JSON lines that are not egress lines, ignored
	Garbage int // lines that are not JSON objects, or too long, skipped

	rows     map[rowKey]*Row
	denials  map[denialKey]*Denial
	requests map[requestKey]*Request
	sessions map[string]int
}

// Row is the traffic of one decision, host, port and slot.
type Row struct {
	Decision  string
	Host      string
	Port      int
	Slot      string // "" when no credential was involved
	Count     int
	BytesUp   int64
	BytesDown int64
}

// Denial counts the refusals of one reason on one host and port.
type Denial struct {
	Reason string
	Host   string
	Port   int
	Count  int
}

// Request counts the refusals of one method and path on one host and
// port, for the denials a human has to decide on
// (ReasonMethodNotAllowed, ReasonPathNotAllowed).
type Request struct {
	Reason string
	Host   string
	Port   int
	Method string
	Path   string
	Slot   string
	Count  int
}

type rowKey struct {
	decision, host string
	port           int
	slot           string
}

type denialKey struct {
	reason, host string
	port         int
}

type requestKey struct {
	reason, host string
	port         int
	method, path string
}

// NewSummary returns an empty Summary.
func NewSummary() *Summary {
	return &Summary{
		rows:     map[rowKey]*Row{},
		denials:  map[denialKey]*Denial{},
		requests: map[requestKey]*Request{},
		sessions: map[string]int{},
	}
}

// Add counts one egress line.
func (s *Summary) Add(l Line) {
	s.Lines++
	if l.Session != "" {
		s.sessions[l.Session]++
	}
	k := rowKey{l.Decision, l.Host, l.Port, l.Slot}
	r := s.rows[k]
	if r == nil {
		r = &Row{Decision: l.Decision, Host: l.Host, Port: l.Port, Slot: l.Slot}
		s.rows[k] = r
	}
	r.Count++
	r.BytesUp += l.BytesUp
	r.BytesDown += l.BytesDown
	if l.Decision != "deny" && l.Decision != "block" {
		return
	}
	dk := denialKey{l.Reason, l.Host, l.Port}
	d := s.denials[dk]
	if d == nil {
		d = &Denial{Reason: l.Reason, Host: l.Host, Port: l.Port}
		s.denials[dk] = d
	}
	d.Count++
	if l.Reason == ReasonMethodNotAllowed || l.Reason == ReasonPathNotAllowed {
		rk := requestKey{l.Reason, l.Host, l.Port, l.Method, l.Path}
		q := s.requests[rk]
		if q == nil {
			q = &Request{Reason: l.Reason, Host: l.Host, Port: l.Port, Method: l.Method, Path: l.Path, Slot: l.Slot}
			s.requests[rk] = q
		}
		q.Count++
	}
}

// decisionOrder sorts rows: what spent a credential first, refusals last.
var decisionOrder = map[string]int{"inject": 0, "forward": 1, "tunnel": 2, "block": 3, "deny": 4}

func orderOf(d string) int {
	if n, ok := decisionOrder[d]; ok {
		return n
	}
	return len(decisionOrder)
}

// Rows returns the traffic rows sorted by decision (inject, forward,
// tunnel, block, deny, then others), host, port and slot.
func (s *Summary) Rows() []Row {
	out := make([]Row, 0, len(s.rows))
	for _, r := range s.rows {
		out = append(out, *r)
	}
	slices.SortFunc(out, func(a, b Row) int {
		return cmp.Or(cmp.Compare(orderOf(a.Decision), orderOf(b.Decision)), cmp.Compare(a.Decision, b.Decision),
			cmp.Compare(a.Host, b.Host), cmp.Compare(a.Port, b.Port), cmp.Compare(a.Slot, b.Slot))
	})
	return out
}

// Denials returns the refusals (deny and block lines) sorted by reason,
// host and port.
func (s *Summary) Denials() []Denial {
	out := make([]Denial, 0, len(s.denials))
	for _, d := range s.denials {
		out = append(out, *d)
	}
	slices.SortFunc(out, func(a, b Denial) int {
		return cmp.Or(cmp.Compare(a.Reason, b.Reason), cmp.Compare(a.Host, b.Host), cmp.Compare(a.Port, b.Port))
	})
	return out
}

// Requests returns the method_not_allowed and path_not_allowed refusals
// by request, sorted by host, port, path, method and reason.
func (s *Summary) Requests() []Request {
	out := make([]Request, 0, len(s.requests))
	for _, q := range s.requests {
		out = append(out, *q)
	}
	slices.SortFunc(out, func(a, b Request) int {
		return cmp.Or(cmp.Compare(a.Host, b.Host), cmp.Compare(a.Port, b.Port), cmp.Compare(a.Path, b.Path),
			cmp.Compare(a.Method, b.Method), cmp.Compare(a.Reason, b.Reason))
	})
	return out
}

// Sessions returns the session ids the lines carry, sorted.
func (s *Summary) Sessions() []string {
	return slices.Sorted(maps.Keys(s.sessions))
}
