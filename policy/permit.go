package policy

import "strings"

// Reasons Permits returns: the values of the proxy's X-Cork-Deny-Reason
// for a request outside the host's method and path rules.
const (
	DenyMethod = "method_not_allowed" // a route's methods or a matching scoped allow's methods exclude it
	DenyPath   = "path_not_allowed"   // no scoped allow of the host covers the path
)

// Permits checks a request against the host's method rules and scoped
// allows (docs/POLICY.md, "Methods and paths") and returns "" when it may
// pass, else DenyMethod or DenyPath:
//
//  1. If one of the host's routes lists Methods, method must be in the
//     union of the routes' Methods (a route without Methods permits all).
//  2. If the host has scoped allows (Allows), one of them must cover the
//     path and list the method (or list none). A scoped allow's Path
//     covers a request path when its segments start the request's under
//     every reading of it (see below), compared case-sensitively; so
//     /repos/o/r covers /repos/o/r and /repos/o/r/x, not /repos/o/rx or
//     /repos/o/r.git. An empty Path covers every path.
//
// method is compared exactly (HTTP methods are case-sensitive). Pass the
// escaped path (req.URL.EscapedPath()), without the query. The readings
// are those of BlockFor (percent-decoded once and, when that leaves a '%',
// twice; split at '/', '\' and "%2F"; segments cut at ';' or a control
// character and trimmed; empty segments dropped; dot-segments removed and
// kept) and the literal ones (split at '/' only, each segment decoded,
// nothing cut or dropped): a path that only some server would route under
// the allowed prefix is refused.
//
// It allocates nothing when the host has neither (the zero HostRules
// permits everything: whether the host is allowed at all is Allowed's
// business), and for scoped allows only for paths with escapes or more
// than 16 segments.
func (h HostRules) Permits(method, escapedPath string) string {
	limited := false
	for _, r := range h.Routes {
		if len(r.Methods) == 0 {
			limited = false
			break
		}
		limited = true
	}
	if !limited && len(h.Allows) == 0 {
		return ""
	}
	if limited && !routesPermit(h.Routes, method) {
		return DenyMethod
	}
	if len(h.Allows) == 0 {
		return ""
	}
	return allowsPermit(h.Allows, method, escapedPath)
}

// routesPermit reports whether method is in one of the routes' Methods.
func routesPermit(routes []*Route, method string) bool {
	for _, r := range routes {
		if methodListed(r.Methods, method) {
			return true
		}
	}
	return false
}

// methodListed reports whether method is in ms, or ms is empty.
func methodListed(ms []string, method string) bool {
	if len(ms) == 0 {
		return true
	}
	for _, m := range ms {
		if m == method {
			return true
		}
	}
	return false
}

// maxReadings is the number of readings permitReadings makes at most:
// decoded once or twice, times split everywhere or at '/' only, times
// dot-segments removed or kept, times segments cleaned or literal.
const maxReadings = 16

// allowsPermit applies scoped allows (rule 2 of Permits).
func allowsPermit(allows []*Allow, method, p string) string {
	var bufs [maxReadings][inlineSegments]string
	var readings [maxReadings][]string
	n := 0
	add := func(decoded string, slashOnly, twice bool) {
		for _, dots := range [2]bool{true, false} {
			for _, clean := range [2]bool{true, false} {
				if slashOnly {
					readings[n] = appendLiteralSegments(bufs[n][:0], p, twice, dots, clean)
				} else {
					readings[n] = appendReading(bufs[n][:0], decoded, dots, clean)
				}
				n++
			}
		}
	}
	once := pathDecode(p)
	add(once, false, false)
	add("", true, false)
	if strings.IndexByte(once, '%') >= 0 {
		if twice := pathDecode(once); twice != once {
			add(twice, false, true)
			add("", true, true)
		}
	}
	pathMatched := false
	for _, a := range allows {
		if !allowCovers(readings[:n], a.Path) {
			continue
		}
		pathMatched = true
		if methodListed(a.Methods, method) {
			return ""
		}
	}
	if pathMatched {
		return DenyMethod
	}
	return DenyPath
}

// allowCovers reports whether the allow path p (normalizePath form, or ""
// for any) starts every reading.
func allowCovers(readings [][]string, p string) bool {
	want := strings.TrimPrefix(p, "/")
	if want == "" {
		return true
	}
	for _, segs := range readings {
		rest := want
		for i := 0; rest != ""; i++ {
			seg, more, _ := strings.Cut(rest, "/")
			if i >= len(segs) || segs[i] != seg {
				return false
			}
			rest = more
		}
	}
	return true
}

// appendReading appends the segments of the decoded path p split at '/',
// '\' and "%2F" (as appendSegments), with segments cleaned and empty ones
// dropped when clean, kept as they are otherwise.
func appendReading(dst []string, p string, dots, clean bool) []string {
	if clean {
		return appendSegments(dst, p, dots)
	}
	start := 0
	first := true
	for i := 0; i <= len(p); {
		n := 1
		if i < len(p) {
			if n = separatorAt(p, i); n == 0 {
				i++
				continue
			}
		}
		seg := p[start:i]
		i += n
		start = i
		if first {
			first = false
			if seg == "" {
				continue // the path's leading '/'
			}
		}
		dst = pushSegment(dst, seg, dots)
	}
	return dst
}

// appendLiteralSegments appends the segments of the escaped path p split at
// '/' only, each percent-decoded once (twice when twice), cleaned and
// without empty ones when clean.
func appendLiteralSegments(dst []string, p string, twice, dots, clean bool) []string {
	rest := strings.TrimPrefix(p, "/")
	for {
		raw, more, found := strings.Cut(rest, "/")
		seg := pathDecode(raw)
		if twice {
			seg = pathDecode(seg)
		}
		if clean {
			if seg = cleanSegment(seg); seg != "" {
				dst = pushSegment(dst, seg, dots)
			}
		} else if found || raw != "" {
			dst = pushSegment(dst, seg, dots)
		}
		if !found {
			return dst
		}
		rest = more
	}
}

// pushSegment appends seg to dst, applying a dot-segment when dots.
func pushSegment(dst []string, seg string, dots bool) []string {
	switch {
	case dots && seg == ".":
	case dots && seg == "..":
		if len(dst) > 0 {
			dst = dst[:len(dst)-1]
		}
	default:
		dst = append(dst, seg)
	}
	return dst
}
