package proxy

import (
	"encoding/base64"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/cork-sh/cork/resolve"
)

// scanner finds slot placeholders in a request: every header name and
// value (with Basic credentials decoded) and the URL. It is built once per
// policy; scanning is plain substring search, no regexps.
type scanner struct {
	slots []string // slot names, sorted
	phs   []string // placeholders, same order; never empty
}

func newScanner(pol *Policy) *scanner {
	s := &scanner{}
	for _, name := range slices.Sorted(maps.Keys(pol.Slots)) {
		if ph := pol.Slots[name].Placeholder; ph != "" {
			s.slots = append(s.slots, name)
			s.phs = append(s.phs, ph)
		}
	}
	return s
}

// slotSet holds slot indices found by a scan. Policies rarely have more
// than a handful of slots; the zero value is empty.
type slotSet []int

func (s slotSet) has(i int) bool { return slices.Contains(s, i) }

// scanRequest appends to found the slots whose placeholder occurs in req.
func (s *scanner) scanRequest(req *http.Request, found slotSet) slotSet {
	if len(s.phs) == 0 {
		return found
	}
	for k, vs := range req.Header {
		found = s.scanString(k, found)
		for _, v := range vs {
			found = s.scanString(v, found)
			if d, ok := decodeBasic(v); ok {
				found = s.scanString(d, found)
			}
		}
	}
	if u := req.URL; u != nil {
		found = s.scanString(u.Path, found)
		found = s.scanString(u.RawPath, found)
		found = s.scanString(u.RawQuery, found)
		if strings.ContainsAny(u.RawQuery, "%+") {
			if q, err := url.QueryUnescape(u.RawQuery); err == nil {
				found = s.scanString(q, found)
			}
		}
		if u.User != nil {
			found = s.scanString(u.User.String(), found)
			if pw, ok := u.User.Password(); ok {
				found = s.scanString(pw, found)
			}
			found = s.scanString(u.User.Username(), found)
		}
	}
	return found
}

func (s *scanner) scanString(v string, found slotSet) slotSet {
	if v == "" {
		return found
	}
	for i, ph := range s.phs {
		if strings.Contains(v, ph) && !found.has(i) {
			found = append(found, i)
		}
	}
	return found
}

// redact replaces every placeholder in s by "{slot}".
func (s *scanner) redact(v string) string {
	for i, ph := range s.phs {
		if strings.Contains(v, ph) {
			v = strings.ReplaceAll(v, ph, "{"+s.slots[i]+"}")
		}
	}
	return v
}

// decodeBasic returns the decoded "user:pass" of a Basic credential.
func decodeBasic(v string) (string, bool) {
	const prefix = "Basic "
	if len(v) <= len(prefix) || !strings.EqualFold(v[:len(prefix)], prefix) {
		return "", false
	}
	p := strings.TrimSpace(v[len(prefix):])
	b, err := base64.StdEncoding.DecodeString(p)
	if err != nil {
		if b, err = base64.RawStdEncoding.DecodeString(p); err != nil {
			return "", false
		}
	}
	return string(b), true
}

// injectResult says what injectRoute did.
type injectResult uint8

const (
	injectNone    injectResult = iota // header absent or without the placeholder: untouched
	injectDone                        // the token is in the header
	injectNoToken                     // the token was needed but the slot has none
)

// injectRoute swaps the slot placeholder ph for the token in the route's
// header (Decision 2). Header keys that differ only in case are merged into
// the canonical key first, so the header is replaced, never duplicated.
// Bearer, token and raw replace the placeholder in place; Basic decodes
// the credential and swaps a user or password equal to the placeholder. A
// header without the placeholder is left alone; an absent one is added
// only when the route says add_if_missing. With echoPairs, it is the only
// code that reveals a token (doc.go).
func injectRoute(h http.Header, rt *Route, ph string, tok resolve.Secret, haveTok bool) injectResult {
	name := rt.Header // canonical, never empty: validated by the policy
	for k := range h {
		if k != name && strings.EqualFold(k, name) {
			h[name] = append(h[name], h[k]...)
			delete(h, k)
		}
	}
	vals := h[name]
	if len(vals) == 0 {
		if !rt.AddIfMissing {
			return injectNone
		}
		if !haveTok {
			return injectNoToken
		}
		h[name] = []string{formatCredential(rt, tok.Reveal())}
		return injectDone
	}
	res := injectNone
	for i, v := range vals {
		if rt.Scheme == SchemeBasic {
			user, pass, ok := basicParts(v)
			if !ok || (user != ph && pass != ph) {
				continue
			}
			if !haveTok {
				return injectNoToken
			}
			if user == ph {
				user = tok.Reveal()
			}
			if pass == ph {
				pass = tok.Reveal()
			}
			vals[i] = "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
			res = injectDone
			continue
		}
		if !strings.Contains(v, ph) {
			continue
		}
		if !haveTok {
			return injectNoToken
		}
		vals[i] = strings.ReplaceAll(v, ph, tok.Reveal())
		res = injectDone
	}
	return res
}

func basicParts(v string) (user, pass string, ok bool) {
	d, ok := decodeBasic(v)
	if !ok {
		return "", "", false
	}
	return strings.Cut(d, ":")
}

// formatCredential is the header value add_if_missing sets.
func formatCredential(rt *Route, tok string) string {
	switch rt.Scheme {
	case SchemeToken:
		return "token " + tok
	case SchemeRaw:
		return tok
	case SchemeBasic:
		return "Basic " + base64.StdEncoding.EncodeToString([]byte(rt.BasicUser+":"+tok))
	default:
		return "Bearer " + tok
	}
}

// stripProxyAuth removes Proxy-Authorization in any spelling: it is for
// cork, never for the upstream.
func stripProxyAuth(h http.Header) {
	for k := range h {
		if strings.EqualFold(k, "Proxy-Authorization") {
			delete(h, k)
		}
	}
}

// echoPairs returns old/new string pairs that undo rt's injection in h:
// the token back to the placeholder and, for Basic, the encoded
// credential back to its placeholder form. scrubEcho applies them to what
// the upstream sends back, so an upstream that reflects request headers
// (debug endpoints, error details) cannot hand the token to the sandbox.
func echoPairs(h http.Header, rt *Route, ph string, tok resolve.Secret) []string {
	t := tok.Reveal()
	var pairs []string
	if rt.Scheme == SchemeBasic {
		for _, v := range h[rt.Header] {
			_, enc, ok := strings.Cut(v, " ")
			if !ok {
				continue
			}
			if dec, err := base64.StdEncoding.DecodeString(enc); err == nil && strings.Contains(string(dec), t) {
				pairs = append(pairs, enc, base64.StdEncoding.EncodeToString([]byte(strings.ReplaceAll(string(dec), t, ph))))
			}
		}
	}
	return append(pairs, t, ph)
}

// scrubEcho replaces, in every response header value, each old string of
// pairs with its new one. Without a match it allocates nothing.
func scrubEcho(h http.Header, pairs []string) {
	for _, vals := range h {
		for i, v := range vals {
			for j := 0; j+1 < len(pairs); j += 2 {
				if strings.Contains(v, pairs[j]) {
					v = strings.ReplaceAll(v, pairs[j], pairs[j+1])
				}
			}
			vals[i] = v
		}
	}
}
