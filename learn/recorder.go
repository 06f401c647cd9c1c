package learn

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
)

// Audit vocabulary read here (proxy/audit.go writes it; docs/DESIGN.md).
const (
	msgEgress       = "egress"
	reasonAsked     = "asked"
	reasonLeak      = "placeholder_leak"
	reasonProxyAuth = "proxy_auth_required"
	reasonMethod    = "method_not_allowed"
	reasonPath      = "path_not_allowed"
	decisionDeny    = "deny"
	decisionBlock   = "block"
	decisionTunnel  = "tunnel"
	decisionForward = "forward"
	decisionInject  = "inject"
	maxLine         = 64 << 10
)

// Recorder is an io.Writer for the proxy's JSON audit log: it learns from
// each "egress" line and ignores every other line. Lines may arrive whole
// or in pieces. The zero Recorder is ready and records every host; set
// Scoped before the first Write. Safe for concurrent use.
type Recorder struct {
	// Scoped, if non-nil, reports the hosts the run's policy already
	// restricts to paths or methods: their passing requests are not
	// learned again (a learned entry could only widen them).
	Scoped func(host string, port int) bool

	mu       sync.Mutex
	partial  []byte
	requests int
	whole    map[hostPort]bool                           // asked and passed: the whole host
	asked    map[hostPort]bool                           // a method/path question was asked (Note)
	used     map[hostPort]map[string]map[string]struct{} // path → methods
	refused  map[refusal]int
	leaked   map[hostPort]bool
	slots    map[hostPort]string // the credential a host:port's requests spend
}

type hostPort struct {
	Host string
	Port int
}

// String is host, or host:port when the port is not 443 or 80: an allow
// entry's host pattern.
func (h hostPort) String() string {
	if h.Port == 443 || h.Port == 80 || h.Port == 0 {
		return h.Host
	}
	if strings.Contains(h.Host, ":") {
		return fmt.Sprintf("[%s]:%d", h.Host, h.Port)
	}
	return fmt.Sprintf("%s:%d", h.Host, h.Port)
}

type refusal struct {
	Host, Method, Path, Slot, Reason string
	Port                             int
}

type egressLine struct {
	Msg      string `json:"msg"`
	Decision string `json:"decision"`
	Host     string `json:"host"`
	Port     int    `json:"port"`
	Method   string `json:"method"`
	Path     string `json:"path"`
	Slot     string `json:"slot"`
	Reason   string `json:"reason"`
}

// Write records the complete lines in p.
func (r *Recorder) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	data := append(r.partial, p...)
	for {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			break
		}
		r.line(data[:i])
		data = data[i+1:]
	}
	if len(data) > maxLine {
		data = nil // not an audit line
	}
	r.partial = slices.Clone(data)
	return len(p), nil
}

// Note records a question the proxy asked: about a whole host, or about
// a method or path (then a request to that host:port passed with reason
// "asked" is learned as a path-scoped entry, not a whole host); slot is
// the credential the request would spend ("" for none), named in the
// refusals.
func (r *Recorder) Note(host string, port int, slot string, wholeHost bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	hp := hostPort{strings.ToLower(host), port}
	r.noteSlot(hp, slot)
	if wholeHost {
		return
	}
	if r.asked == nil {
		r.asked = map[hostPort]bool{}
	}
	r.asked[hp] = true
}

func (r *Recorder) noteSlot(hp hostPort, slot string) {
	if slot == "" {
		return
	}
	if r.slots == nil {
		r.slots = map[hostPort]string{}
	}
	r.slots[hp] = slot
}

func (r *Recorder) line(b []byte) {
	var e egressLine
	if json.Unmarshal(bytes.TrimSpace(b), &e) != nil || e.Msg != msgEgress || e.Host == "" {
		return
	}
	hp := hostPort{strings.ToLower(e.Host), e.Port}
	switch e.Decision {
	case decisionDeny, decisionBlock:
		if e.Reason == reasonProxyAuth {
			return // a client's first try without the session credential: not the policy's
		}
		if r.refused == nil {
			r.refused = map[refusal]int{}
		}
		if e.Slot == "" && (e.Reason == reasonMethod || e.Reason == reasonPath) {
			e.Slot = r.slots[hp] // a denied request's line names no slot
		}
		r.refused[refusal{Host: hp.Host, Port: hp.Port, Method: e.Method, Path: e.Path, Slot: e.Slot, Reason: e.Reason}]++
		if e.Reason == reasonLeak {
			if r.leaked == nil {
				r.leaked = map[hostPort]bool{}
			}
			r.leaked[hp] = true
		}
		return
	case decisionTunnel, decisionForward, decisionInject:
	default:
		return
	}
	r.requests++
	r.noteSlot(hp, e.Slot)
	switch {
	case e.Reason == reasonAsked && !r.asked[hp]:
		if r.whole == nil {
			r.whole = map[hostPort]bool{}
		}
		r.whole[hp] = true
	case e.Method == "" || e.Method == "CONNECT":
		// A tunnel's line: the host was allowed whole already.
	case e.Reason == reasonAsked || e.Decision == decisionInject && (r.Scoped == nil || !r.Scoped(hp.Host, hp.Port)):
		if r.used == nil {
			r.used = map[hostPort]map[string]map[string]struct{}{}
		}
		if r.used[hp] == nil {
			r.used[hp] = map[string]map[string]struct{}{}
		}
		if r.used[hp][e.Path] == nil {
			r.used[hp][e.Path] = map[string]struct{}{}
		}
		r.used[hp][e.Path][e.Method] = struct{}{}
	}
}
