package proxy

import (
	"maps"
	"net/http"
	"slices"
	"strings"

	"github.com/cork-sh/cork/policy"
	"github.com/cork-sh/cork/proxy/scrub"
	"github.com/cork-sh/cork/resolve"
)

// tokenState is a token map with what the hot path derives from it and the
// policy's placeholders: the response scrubber (every encoding of every
// real token → the same encoding of its placeholder). It is immutable.
type tokenState struct {
	toks        resolve.Tokens // usable tokens only
	unusable    []string       // slots whose value was refused (resolve.CheckToken), sorted
	scrub       *scrub.Set     // nil without tokens; Rule.ID indexes slots
	fixed       *scrub.Set     // scrub with every replacement fitted to its match's length (bodies of known length)
	partial     []*scrub.Partial
	partialSlot []int    // partial[i] belongs to slots[partialSlot[i]]
	slots       []string // token slots, sorted
}

// partialRun is the shortest run of a token's bytes that counts as an echo
// of part of it in a response header (an oracle for guessing the rest).
const partialRun = 12

// redactedValue replaces a response header value or name that echoes part
// of a token.
const redactedValue = "cork-redacted"

// maxRetired is how many replaced values per slot the scrubber keeps
// matching after a rotation.
const maxRetired = 4

// retire remembers a replaced token value of slot; setMu is held.
func (p *Proxy) retire(slot string, old resolve.Secret) {
	if p.retired == nil {
		p.retired = map[string][]resolve.Secret{}
	}
	r := slices.DeleteFunc(p.retired[slot], func(s resolve.Secret) bool { return s.Equal(old.Reveal()) })
	r = append(r, old)
	if len(r) > maxRetired {
		r = r[len(r)-maxRetired:]
	}
	p.retired[slot] = r
}

// newTokenState derives the state for the tokens raw: usable ones are
// injected; they and the retired values of every slot are scrubbed.
func newTokenState(raw resolve.Tokens, retired map[string][]resolve.Secret, pol *policy.Policy) *tokenState {
	ts := &tokenState{toks: resolve.Tokens{}}
	var rules, fixed []scrub.Rule
	slots := slices.Sorted(maps.Keys(raw))
	for slot := range retired {
		if _, ok := raw[slot]; !ok {
			slots = append(slots, slot)
		}
	}
	slices.Sort(slots)
	for _, slot := range slots {
		values := retired[slot]
		if tok := raw[slot]; !tok.IsZero() {
			if resolve.CheckToken(tok.Reveal()) != nil {
				ts.unusable = append(ts.unusable, slot)
			} else {
				ts.toks[slot] = tok
				values = append(values, tok)
			}
		}
		if len(values) == 0 {
			continue
		}
		id := len(ts.slots)
		ts.slots = append(ts.slots, slot)
		repl := "cork-redacted-" + slot // a token no policy slot names
		if s, ok := pol.Slots[slot]; ok && s.Placeholder != "" {
			repl = s.Placeholder
		}
		for _, tok := range values {
			if resolve.CheckToken(tok.Reveal()) != nil {
				continue // never sent: nothing to echo
			}
			for _, r := range scrub.Pairs(tok.Reveal(), repl, id) {
				rules = append(rules, r)
				r.Replace = fitLength(r.Replace, len(r.Find))
				fixed = append(fixed, r)
			}
			ts.partial = append(ts.partial, partialOf(tok.Reveal()))
			ts.partialSlot = append(ts.partialSlot, id)
		}
	}
	if len(rules) > 0 {
		ts.scrub, ts.fixed = scrub.New(rules), scrub.New(fixed)
	}
	return ts
}

// fitLength cuts s to n bytes or pads it with '*': a replacement that keeps
// a body's length.
func fitLength(s string, n int) string {
	if len(s) >= n {
		return s[:n]
	}
	return s + strings.Repeat("*", n-len(s))
}

// partialOf is the partial-echo detector of one token: runs of its random
// part. A JWT's header and claims are shared with every other token of its
// issuer, so only its signature counts; a token too short to split into
// two runs gets none.
func partialOf(tok string) *scrub.Partial {
	if i := strings.LastIndexByte(tok, '.'); i >= 0 && len(tok)-i-1 >= 2*partialRun {
		tok = tok[i+1:]
	}
	if len(tok) < 2*partialRun {
		return nil
	}
	return scrub.NewPartial([]string{tok}, partialRun)
}

// scrubErr is err's text with every encoding of every token the proxy
// holds (and held) replaced: Go quotes what a misbehaving upstream sent in
// its errors (a malformed header line, an HTTP/2 GOAWAY's debug data), and
// that may echo a token. Every error the proxy logs goes through it.
func (p *Proxy) scrubErr(err error) string {
	if err == nil {
		return ""
	}
	return p.scrubLog(err.Error())
}

// scrubLog is scrubErr for a formatted message.
func (p *Proxy) scrubLog(s string) string {
	if ts := p.tokens.Load(); ts != nil && ts.scrub != nil {
		s, _ = ts.scrub.ReplaceString(s)
	}
	return s
}

// scrubHeader replaces every encoding of every real token in h's names and
// values by the same encoding of its placeholder, and a name or value that
// echoes a run of a token's random part by redactedValue. It calls hit for
// each replacement with the token's slot.
func (ts *tokenState) scrubHeader(h http.Header, hit func(slot string)) {
	if ts.scrub == nil || len(h) == 0 {
		return
	}
	var renames map[string]string
	for k, vs := range h {
		if nk := ts.scrubText(k, hit); nk != k {
			if renames == nil {
				renames = map[string]string{}
			}
			renames[k] = http.CanonicalHeaderKey(nk)
		}
		for i, v := range vs {
			vs[i] = ts.scrubText(v, hit)
		}
		if len(vs) > 1 {
			// A token split over two values of one header.
			joined := strings.Join(vs, "")
			if ts.scrubText(joined, func(string) {}) != joined {
				for i := range vs {
					vs[i] = redactedValue
				}
				ts.countAll(hit, joined)
			}
		}
	}
	for k, nk := range renames {
		vs := h[k]
		delete(h, k)
		h[nk] = append(h[nk], vs...)
	}
}

// scrubText is v with every token encoding replaced, or redactedValue
// when it echoes part of a token.
func (ts *tokenState) scrubText(v string, hit func(slot string)) string {
	n := 0
	ts.scrub.FindString(v, func(id int) {
		n++
		hit(ts.slots[id])
	})
	if n > 0 {
		v, _ = ts.scrub.ReplaceString(v)
	}
	for i, pt := range ts.partial {
		if pt != nil && pt.Has(v) {
			hit(ts.slots[ts.partialSlot[i]])
			return redactedValue
		}
	}
	return v
}

// countAll reports a hit for each slot whose token shows in v.
func (ts *tokenState) countAll(hit func(slot string), v string) {
	ts.scrub.FindString(v, func(id int) { hit(ts.slots[id]) })
	for i, pt := range ts.partial {
		if pt != nil && pt.Has(v) {
			hit(ts.slots[ts.partialSlot[i]])
		}
	}
}
