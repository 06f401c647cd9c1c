package policy

import (
	"strings"
	"unicode"
)

// Path matching for path-scoped blocks (Block.Path, HostRules.BlockFor).
//
// A block must hold however the sandbox spells the path, so a request path
// is read the ways common servers route it and the block applies when any
// reading matches (docs/POLICY.md has the user's version):
//
//   - percent-decoded once, and (when that leaves a '%') twice, for servers
//     and frameworks that decode again;
//   - split into segments at '/', '\' and an encoded "%2F" left after
//     decoding (so "%252F" is a slash too);
//   - each segment cut at its first ';' (Tomcat, Jetty and Spring matrix
//     parameters: "/a;x=1/b" is "/a/b", "/..;/" is "/../") or control
//     character (NUL truncates in C servers), then trimmed of trailing
//     white space ("%20", "%09", ...);
//   - empty segments dropped: "//" and a trailing "/" do not matter;
//   - with dot-segments removed (RFC 3986 section 5.2.4: "." dropped, ".."
//     drops the segment before it), and also with them kept as plain
//     segments, for servers that route before (or without) removing them.
//
// The canonical reading (decoded once, dot-segments removed) is
// normalizePath; a block's own path is stored in that form.

// inlineSegments is how many segments a reading holds without allocating.
const inlineSegments = 16

// maxFormatSuffix is the longest ".ext" chunk a block's last segment may be
// followed by: /oauth/token blocks /oauth/token.json, and /oauth/token.
// (an empty ext: IIS drops trailing dots, Spring's suffix match allows it).
const maxFormatSuffix = 8

// pathDecode decodes every valid %XX escape in s once; an invalid escape
// stays as written. It returns s itself when s has no '%'.
func pathDecode(s string) string {
	i := strings.IndexByte(s, '%')
	if i < 0 {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	b.WriteString(s[:i])
	for ; i < len(s); i++ {
		c := s[i]
		if c == '%' && i+2 < len(s) {
			hi, ok1 := fromHex(s[i+1])
			lo, ok2 := fromHex(s[i+2])
			if ok1 && ok2 {
				b.WriteByte(hi<<4 | lo)
				i += 2
				continue
			}
		}
		b.WriteByte(c)
	}
	return b.String()
}

// fromHex returns the value of the hex digit c.
func fromHex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// separatorAt returns the length of the path separator at p[i]: 1 for '/'
// or '\', 3 for an encoded slash "%2F" (either case), 0 for none.
func separatorAt(p string, i int) int {
	switch p[i] {
	case '/', '\\':
		return 1
	case '%':
		if i+2 < len(p) && p[i+1] == '2' && (p[i+2] == 'F' || p[i+2] == 'f') {
			return 3
		}
	}
	return 0
}

// appendSegments appends the segments of the decoded path p to dst (which
// must be empty) and returns the result. With dots, dot-segments are
// removed; without, they are kept as plain segments.
func appendSegments(dst []string, p string, dots bool) []string {
	start := 0
	for i := 0; i <= len(p); {
		n := 1
		if i < len(p) {
			if n = separatorAt(p, i); n == 0 {
				i++
				continue
			}
		}
		seg := cleanSegment(p[start:i])
		i += n
		start = i
		switch {
		case seg == "":
		case dots && seg == ".":
		case dots && seg == "..":
			if len(dst) > 0 {
				dst = dst[:len(dst)-1]
			}
		default:
			dst = append(dst, seg)
		}
	}
	return dst
}

// cleanSegment cuts s at its first ';' or control character and trims
// trailing white space.
func cleanSegment(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == ';' || c < ' ' || c == 0x7f {
			s = s[:i]
			break
		}
	}
	return strings.TrimRightFunc(s, unicode.IsSpace)
}

// normalizePath returns the canonical reading of the escaped path p: decoded
// once, dot-segments removed, "/"-joined with a leading "/" and no trailing
// one ("/" for the root).
func normalizePath(p string) string {
	var buf [inlineSegments]string
	segs := appendSegments(buf[:0], pathDecode(p), true)
	return "/" + strings.Join(segs, "/")
}

// blockMatches reports whether the block path p (as normalizePath returns it)
// matches the segments of one reading of a request path. p matches N when
// N's segments start with p's, where the last of p's may also be followed
// by one or more format suffixes ".ext" (ext: 0 to 8 ASCII letters and
// digits), so /oauth/token matches /oauth/token, /oauth/token/x,
// /oauth/token.json, /oauth/token. and /oauth/token.json/x, not
// /oauth/tokens. The root "/" matches everything. Segments compare with
// Unicode case folding unless caseSensitive.
func blockMatches(segs []string, p string, caseSensitive bool) bool {
	rest := strings.TrimPrefix(p, "/")
	if rest == "" {
		return true
	}
	for i := 0; ; i++ {
		want, more, found := strings.Cut(rest, "/")
		if i >= len(segs) {
			return false
		}
		if !found {
			return segmentEqual(segs[i], want, caseSensitive) || hasFormatSuffix(segs[i], want, caseSensitive)
		}
		if !segmentEqual(segs[i], want, caseSensitive) {
			return false
		}
		rest = more
	}
}

func segmentEqual(a, b string, caseSensitive bool) bool {
	if caseSensitive {
		return a == b
	}
	return strings.EqualFold(a, b)
}

// hasFormatSuffix reports whether seg is want followed by one or more
// ".ext" chunks.
func hasFormatSuffix(seg, want string, caseSensitive bool) bool {
	for {
		i := strings.LastIndexByte(seg, '.')
		if i < 0 || !isFormatExt(seg[i+1:]) {
			return false
		}
		seg = seg[:i]
		if segmentEqual(seg, want, caseSensitive) {
			return true
		}
	}
}

func isFormatExt(s string) bool {
	if len(s) > maxFormatSuffix {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}

// firstBlock returns the first of blocks whose path matches a reading of
// the escaped request path p, or nil. The readings live on the stack: a
// path without escapes and with at most inlineSegments segments costs no
// allocation.
func firstBlock(blocks []*Block, p string) *Block {
	var bufs [4][inlineSegments]string
	var readings [4][]string
	once := pathDecode(p)
	readings[0] = appendSegments(bufs[0][:0], once, true)
	readings[1] = appendSegments(bufs[1][:0], once, false)
	n := 2
	if strings.IndexByte(once, '%') >= 0 {
		if twice := pathDecode(once); twice != once {
			readings[2] = appendSegments(bufs[2][:0], twice, true)
			readings[3] = appendSegments(bufs[3][:0], twice, false)
			n = 4
		}
	}
	for _, b := range blocks {
		for _, segs := range readings[:n] {
			if blockMatches(segs, b.Path, b.CaseSensitive) {
				return b
			}
		}
	}
	return nil
}
