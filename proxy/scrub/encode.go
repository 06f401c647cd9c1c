package scrub

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"html"
	"net/url"
	"strings"
)

// MinFind is the shortest encoding that Encodings returns, apart from the
// exact string: shorter forms would match innocent text.
const MinFind = 8

// forms returns every encoding of v, one per kind, always in the same order,
// so that the forms of two strings line up kind by kind:
//
//	0 exact, 1 url.QueryEscape, 2 url.PathEscape,
//	3 JSON as Go writes it with "/" as "\/", 4 JSON as Go writes it,
//	5 html.EscapeString, 6 hex,
//	7.. base64 cores: for StdEncoding then URLEncoding, for alignments
//	0, 1, 2: the core, then url.QueryEscape of the core.
func forms(v string) []string {
	j := jsonString(v)
	f := []string{
		v,
		url.QueryEscape(v),
		url.PathEscape(v),
		strings.ReplaceAll(j, "/", `\/`),
		j,
		html.EscapeString(v),
		hex.EncodeToString([]byte(v)),
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding} {
		for a := range 3 {
			c := base64Core(enc, v, a)
			f = append(f, c, url.QueryEscape(c))
		}
	}
	return f
}

// jsonString is v as encoding/json writes it inside the quotes: <, > and &
// as \u003c, \u003e, \u0026.
func jsonString(v string) string {
	b, _ := json.Marshal(v) // a string always marshals
	return string(b[1 : len(b)-1])
}

// base64Core returns the part of enc's encoding of v, preceded by a bytes
// (a < 3), that does not depend on the bytes around v: the characters whose 6
// bits all come from v. Every padded or unpadded encoding of a text that
// holds v at an offset ≡ a (mod 3) contains it.
func base64Core(enc *base64.Encoding, v string, a int) string {
	buf := make([]byte, a+len(v))
	copy(buf[a:], v)
	e := enc.EncodeToString(buf)
	first := (8*a + 5) / 6      // first character starting at or after bit 8a
	end := 8 * (a + len(v)) / 6 // characters ending at or before the last bit of v
	if end <= first {
		return ""
	}
	return e[first:end]
}

// encodingKinds returns the indexes into forms(secret) that Encodings keeps:
// the exact string, then every form of at least MinFind bytes that differs,
// case-folded, from every form kept before it.
func encodingKinds(f []string) []int {
	keep := []int{0}
	seen := map[string]bool{string(foldString(f[0])): true}
	for i, v := range f[1:] {
		k := string(foldString(v))
		if len(v) < MinFind || seen[k] {
			continue
		}
		seen[k] = true
		keep = append(keep, i+1)
	}
	return keep
}

// Encodings returns the forms in which a server plausibly reflects secret,
// each once (case-folded), in a fixed order: the exact string;
// url.QueryEscape and url.PathEscape; JSON as Go's encoding/json writes it
// with "/" as "\/", then without; html.EscapeString; hex; then the base64
// cores — for StdEncoding and URLEncoding and each alignment of secret
// inside a larger base64 text (preceded by 0, 1 or 2 bytes), the characters
// that do not depend on the surrounding bytes, each followed by its
// url.QueryEscape. Forms equal to an earlier one or shorter than MinFind are
// left out, except the exact string. So padded, unpadded, URL-alphabet and
// URL-encoded Basic "user:token" credentials contain one of them, whatever
// the user name. A secret shorter than 7 bytes has base64 cores shorter than
// MinFind at some alignment, so those are left out. Encodings("") is [""].
func Encodings(secret string) []string {
	f := forms(secret)
	var out []string
	for _, i := range encodingKinds(f) {
		out = append(out, f[i])
	}
	return out
}

// Pairs returns one Rule per element of Encodings(secret), in the same
// order: Find is that encoding of secret, Replace the same encoding (same
// kind, same alignment) of replacement, ID is id. When replacement is ""
// (detection only), Replace is Find.
//
// The base64 cores leave the boundary characters as they were, and those mix
// a few bits of the neighbouring bytes with a few bits of secret; a
// replacement of another length also shifts what follows. The replaced
// text holds no core of secret either way.
func Pairs(secret, replacement string, id int) []Rule {
	f := forms(secret)
	var rf []string
	if replacement != "" {
		rf = forms(replacement)
	}
	var out []Rule
	for _, i := range encodingKinds(f) {
		r := Rule{Find: f[i], Replace: f[i], ID: id}
		if rf != nil {
			r.Replace = rf[i]
		}
		out = append(out, r)
	}
	return out
}
