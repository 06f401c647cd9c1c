package proxy

import (
	"encoding/base64"
	"net/http"
	"strings"

	"github.com/cork-sh/cork/policy"
	"github.com/cork-sh/cork/resolve"
)

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
// header (docs/DESIGN.md, decision 2). Header keys that differ only in case
// are merged into the canonical key first, so the header is replaced, never
// duplicated. Bearer, token and raw replace the placeholder in place; Basic
// decodes the credential and swaps a user or password equal to the
// placeholder. A header without the placeholder is left alone; an absent one
// is added only when the route says add_if_missing. With echoPairs, it is the
// only code that reveals a token (doc.go).
func injectRoute(h http.Header, rt *policy.Route, ph string, tok resolve.Secret, haveTok bool) injectResult {
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
		if rt.Scheme == policy.SchemeBasic {
			user, pass, ok := basicParts(v)
			if !ok && strings.Contains(v, ph) {
				// Not Basic ("token <ph>", "Bearer <ph>"): the same
				// in-place swap as the other schemes, so that one route
				// serves a host that takes both, such as GitHub
				// Enterprise Server (API and git on one host).
				if !haveTok {
					return injectNoToken
				}
				vals[i] = strings.ReplaceAll(v, ph, tok.Reveal())
				res = injectDone
				continue
			}
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
func formatCredential(rt *policy.Route, tok string) string {
	switch rt.Scheme {
	case policy.SchemeToken:
		return "token " + tok
	case policy.SchemeRaw:
		return tok
	case policy.SchemeBasic:
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
