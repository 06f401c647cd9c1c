package learn

import (
	"maps"
	"net/url"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// The collapsing rule (docs/POLICY.md, "Learn a policy"): the paths used on
// a host are grouped by their first KeySegments segments; a group becomes
// the longest common prefix of its paths, cut to at most MaxSegments
// segments. /repos/o/r/issues/1 and /repos/o/r/pulls (group /repos/o) give
// /repos/o/r; /user stays /user. "/" is learned only from a request for
// "/" itself. Git's smart-HTTP endpoints count as their repository's path
// first (gitRepoPath): /o/r.git/info/refs and /o/r.git/git-upload-pack
// give /o/r.git.
const (
	KeySegments = 2
	MaxSegments = 3
)

// Use is a path prefix with the methods seen under it.
type Use struct {
	Path    string   // a normalised allow path: starts with "/", no '%', '?', '#'
	Methods []string // sorted, upper-case
}

// Collapse reduces used (escaped request path → methods seen) to path
// prefixes by the rule above, sorted by path. A prefix is dropped when
// another covers it with every one of its methods. A nil or empty map
// gives nil.
func Collapse(used map[string][]string) []Use {
	groups := map[string][][]string{} // key → segment lists
	methods := map[string]map[string]bool{}
	for raw, ms := range used {
		segs := gitRepoPath(segments(raw))
		n := min(len(segs), KeySegments)
		key := "/" + strings.Join(segs[:n], "/")
		groups[key] = append(groups[key], segs)
		if methods[key] == nil {
			methods[key] = map[string]bool{}
		}
		for _, m := range ms {
			methods[key][strings.ToUpper(m)] = true
		}
	}
	byPath := map[string]map[string]bool{}
	for key, list := range groups {
		p := commonPrefix(list)
		p = p[:min(len(p), MaxSegments)]
		path := "/" + strings.Join(p, "/")
		if byPath[path] == nil {
			byPath[path] = map[string]bool{}
		}
		for m := range methods[key] {
			byPath[path][m] = true
		}
	}
	var uses []Use
	for path, ms := range byPath {
		uses = append(uses, Use{Path: path, Methods: slices.Sorted(maps.Keys(ms))})
	}
	slices.SortFunc(uses, func(a, b Use) int { return strings.Compare(a.Path, b.Path) })
	return slices.DeleteFunc(uses, func(u Use) bool {
		for _, v := range uses {
			if v.Path != u.Path && covers(v.Path, u.Path) && subset(u.Methods, v.Methods) {
				return true
			}
		}
		return false
	})
}

// segments splits an escaped request path into decoded segments, stopping
// before the first segment an allow path cannot hold as written (an empty
// segment, an escape that does not decode to a plain segment, '.', '..',
// a ';', a backslash, a truncation mark), and giving back one more segment
// for each dot-segment that may follow (a server that removes them may
// climb that far): the prefix left covers the path under every reading
// the proxy makes (docs/POLICY.md, "Methods and paths"). Counting is
// generous; a shorter prefix only covers more.
func segments(escaped string) []string {
	escaped, truncated := strings.CutSuffix(escaped, "...")
	parts := strings.Split(strings.TrimPrefix(escaped, "/"), "/")
	if truncated {
		parts = parts[:len(parts)-1]
	}
	var segs []string
	for i, s := range parts {
		d, err := url.PathUnescape(s)
		if s == "" || err != nil || d == "." || d == ".." || strings.ContainsAny(d, "/\\;%?#") || d != strings.TrimSpace(d) || hasControl(d) {
			if s == "" && i == len(parts)-1 {
				break // a trailing "/"
			}
			return segs[:max(0, len(segs)-climbs(parts[i:]))]
		}
		segs = append(segs, d)
	}
	return segs
}

// climbs counts the segments of rest that might be a ".." in some
// reading: every one with a '.', or an escape that may decode to one.
func climbs(rest []string) int {
	n := 0
	for _, p := range rest {
		p = strings.ToLower(p)
		for _, sep := range []string{"\\", "%5c", "%2f"} {
			p = strings.ReplaceAll(p, sep, "/")
		}
		for _, seg := range strings.Split(p, "/") {
			if strings.Contains(seg, ".") || strings.Contains(seg, "%2e") || strings.Contains(seg, "%25") {
				n++
			}
		}
	}
	return n
}

// gitRepoPath cuts a git smart-HTTP (or LFS) request path to its
// repository's: the segments before info/refs, info/lfs, git-upload-pack
// or git-receive-pack, when there are any.
func gitRepoPath(segs []string) []string {
	for i := 1; i < len(segs); i++ {
		switch {
		case segs[i] == "git-upload-pack" || segs[i] == "git-receive-pack",
			segs[i] == "info" && i+1 < len(segs) && (segs[i+1] == "refs" || segs[i+1] == "lfs"):
			return segs[:i]
		}
	}
	return segs
}

// hasControl reports a control character or invalid UTF-8 in s.
func hasControl(s string) bool {
	return !utf8.ValidString(s) || strings.ContainsFunc(s, unicode.IsControl)
}

// commonPrefix is the longest list of segments that starts every list.
func commonPrefix(lists [][]string) []string {
	p := lists[0]
	for _, l := range lists[1:] {
		n := 0
		for n < len(p) && n < len(l) && p[n] == l[n] {
			n++
		}
		p = p[:n]
	}
	return p
}

// covers reports whether allow path a covers path b (segment-wise).
func covers(a, b string) bool {
	return a == "/" || b == a || strings.HasPrefix(b, a+"/")
}

func subset(a, b []string) bool {
	for _, x := range a {
		if !slices.Contains(b, x) {
			return false
		}
	}
	return true
}
