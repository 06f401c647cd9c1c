package proxy

import (
	"bytes"
	"errors"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"

	"github.com/cork-sh/cork/policy"
	"github.com/cork-sh/cork/proxy/scrub"
)

// scanner finds slot placeholders where a sandbox could hide them in a
// request (docs/DESIGN.md, decision 3, the tripwire): every header name and
// value, the values of one header joined (a placeholder split over two
// lines), the URL — each as sent, percent-decoded once and twice, in any
// ASCII case, in base64 (standard or URL alphabet, at any alignment: inside
// Basic credentials too), hex, URL-, JSON- or HTML-escaped, with "_" sent as
// "+" or " ", and by its skeleton (its letters and digits, so punctuation
// changes do not hide it) — and request bodies, trailers and WebSocket
// messages through streams of the same rule set. It is built once per policy
// and safe for concurrent use.
type scanner struct {
	slots []string   // slot names, sorted
	phs   []string   // placeholders, same order; never empty
	set   *scrub.Set // every encoding of every placeholder; Rule.ID indexes slots
	skels [][]byte   // per slot: the placeholder's skeleton, or nil when too short to be telling
	pool  *sync.Pool // *[]byte skeleton buffers
}

// minSkeleton is the shortest placeholder skeleton the tripwire matches on:
// shorter ones could occur by chance.
const minSkeleton = 12

func newScanner(pol *policy.Policy) *scanner {
	s := &scanner{pool: &sync.Pool{New: func() any { b := make([]byte, 0, 256); return &b }}}
	var rules []scrub.Rule
	for _, name := range slices.Sorted(maps.Keys(pol.Slots)) {
		ph := pol.Slots[name].Placeholder
		if ph == "" {
			continue
		}
		i := len(s.slots)
		s.slots = append(s.slots, name)
		s.phs = append(s.phs, ph)
		rules = append(rules, scrub.Pairs(ph, "", i)...)
		for _, alt := range []string{strings.ReplaceAll(ph, "_", "+"), strings.ReplaceAll(ph, "_", " ")} {
			if alt != ph {
				rules = append(rules, scrub.Rule{Find: alt, Replace: alt, ID: i})
			}
		}
		var sk []byte
		if k := appendSkeleton(nil, ph); len(k) >= minSkeleton {
			sk = k
		}
		s.skels = append(s.skels, sk)
	}
	s.set = scrub.New(rules)
	return s
}

// slotSet holds slot indices found by a scan. Policies rarely have more
// than a handful of slots; the zero value is empty.
type slotSet []int

func (s slotSet) has(i int) bool { return slices.Contains(s, i) }

func (s slotSet) add(i int) slotSet {
	if s.has(i) {
		return s
	}
	return append(s, i)
}

// scanRequest appends to found the slots whose placeholder occurs in req's
// headers or URL.
func (s *scanner) scanRequest(req *http.Request, found slotSet) slotSet {
	if len(s.phs) == 0 {
		return found
	}
	found = s.scanHeader(req.Header, found)
	found = s.scanText(req.Method, found)
	found = s.scanText(req.Host, found) // the canonical authority: URL.Host names the same host
	if u := req.URL; u != nil {
		found = s.scanText(u.Path, found)
		found = s.scanText(u.RawPath, found)
		found = s.scanText(u.RawQuery, found)
		found = s.scanText(u.Fragment, found)
		if u.User != nil {
			found = s.scanText(u.User.String(), found)
		}
	}
	return found
}

// scanHeader appends to found the slots whose placeholder occurs in h: in a
// name (net/http canonicalises names, so case cannot hide one), a value, or
// the values of one name joined.
func (s *scanner) scanHeader(h http.Header, found slotSet) slotSet {
	if len(s.phs) == 0 {
		return found
	}
	for k, vs := range h {
		found = s.scanText(k, found)
		for _, v := range vs {
			found = s.scanText(v, found)
		}
		if len(vs) > 1 {
			found = s.scanText(strings.Join(vs, ""), found)
		}
	}
	return found
}

// scanText appends to found the slots whose placeholder occurs in v as
// sent, percent-decoded once and twice, or by skeleton.
func (s *scanner) scanText(v string, found slotSet) slotSet {
	if v == "" {
		return found
	}
	add := func(id int) { found = found.add(id) }
	s.set.FindString(v, add)
	for range 2 {
		d, ok := percentDecode(v)
		if !ok {
			break
		}
		v = d
		s.set.FindString(v, add)
	}
	// Most values are short: their skeleton is built on the stack, a
	// longer one in a pooled buffer.
	var small [256]byte
	if len(v) <= len(small) {
		return s.matchSkeleton(appendSkeleton(small[:0], v), found)
	}
	bp := s.pool.Get().(*[]byte)
	sk := appendSkeleton((*bp)[:0], v)
	found = s.matchSkeleton(sk, found)
	*bp = sk
	s.pool.Put(bp)
	return found
}

// matchSkeleton appends to found the slots whose placeholder's skeleton
// occurs in sk.
func (s *scanner) matchSkeleton(sk []byte, found slotSet) slotSet {
	for i, k := range s.skels {
		if k != nil && len(sk) >= len(k) && !found.has(i) && bytesContains(sk, k) {
			found = append(found, i)
		}
	}
	return found
}

// redact replaces every placeholder in v by "{slot}".
func (s *scanner) redact(v string) string {
	for i, ph := range s.phs {
		if strings.Contains(v, ph) {
			v = strings.ReplaceAll(v, ph, "{"+s.slots[i]+"}")
		}
	}
	return v
}

// unbound returns the indices of slots not bound to rules' host, or nil
// when every slot is: only those placeholders are leaks there.
func (s *scanner) unbound(rules policy.HostRules) []bool {
	var out []bool
	for i, slot := range s.slots {
		if !rules.Binds(slot) {
			if out == nil {
				out = make([]bool, len(s.slots))
			}
			out[i] = true
		}
	}
	return out
}

// appendSkeleton appends v's ASCII letters (lower-cased) and digits to dst.
func appendSkeleton(dst []byte, v string) []byte {
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
			dst = append(dst, c)
		case c >= 'A' && c <= 'Z':
			dst = append(dst, c+'a'-'A')
		}
	}
	return dst
}

func bytesContains(b, sub []byte) bool {
	return bytes.Contains(b, sub)
}

// percentDecode decodes every valid %XX in v once and "+" to a space,
// leaving malformed escapes as they are; ok is false when nothing changed.
func percentDecode(v string) (string, bool) {
	// Two IndexByte scans (vectorised) beat ContainsAny's byte set, built
	// on every call: this runs for every header value, three times.
	if strings.IndexByte(v, '%') < 0 && strings.IndexByte(v, '+') < 0 {
		return v, false
	}
	b := make([]byte, 0, len(v))
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case c == '%' && i+2 < len(v) && isHex(v[i+1]) && isHex(v[i+2]):
			b = append(b, unhex(v[i+1])<<4|unhex(v[i+2]))
			i += 2
		case c == '+':
			b = append(b, ' ')
		default:
			b = append(b, c)
		}
	}
	d := string(b)
	return d, d != v
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}

// maxPrescan is the largest request body the tripwire reads whole before
// sending anything: a small body carrying a placeholder never reaches the
// upstream at all. Longer ones stream through tripBody.
const maxPrescan = 64 << 10

// prescan reads a request body of known length up to maxPrescan and scans
// it and its trailers; it returns the first unbound slot found, or "", and
// leaves req.Body ready to send. ok is false when the body was not
// prescanned (unknown or larger length).
func (s *scanner) prescan(req *http.Request, unbound []bool) (slot string, ok bool, err error) {
	if req.ContentLength <= 0 || req.ContentLength > maxPrescan {
		return "", false, nil
	}
	body, err := io.ReadAll(io.LimitReader(req.Body, maxPrescan+1))
	_ = req.Body.Close()
	req.Body = io.NopCloser(bytes.NewReader(body))
	if err != nil {
		return "", true, err
	}
	// Whole, a body gets the header scan: decoded twice, by skeleton.
	found := s.scanText(string(body), nil)
	found = s.scanHeader(req.Trailer, found)
	for _, i := range found {
		if unbound[i] {
			return s.slots[i], true, nil
		}
	}
	return "", true, nil
}

// errPlaceholderInBody ends a request body that carries a placeholder to a
// host its slot is not bound to: the transport aborts the upstream request
// before the placeholder is sent (the stream holds back any partial match).
var errPlaceholderInBody = errors.New("request body carries a placeholder of a slot not bound to this host")

// tripBody streams a request body through the tripwire: placeholders of the
// slots in unbound, in the body or (at its end) in its trailers. On a hit
// it records the slot in rs and fails the read.
type tripBody struct {
	rc      io.ReadCloser
	sc      *scanner
	unbound []bool
	stream  *scrub.Stream
	req     *http.Request // for its trailers, read at EOF
	rs      *reqState
	buf     []byte
	out     []byte // released, not yet returned
	off     int
	hit     int // slot index, or -1
	err     error
}

func newTripBody(req *http.Request, sc *scanner, unbound []bool, rs *reqState) *tripBody {
	b := &tripBody{rc: req.Body, sc: sc, unbound: unbound, req: req, rs: rs, hit: -1, buf: make([]byte, 32<<10)}
	b.stream = sc.set.NewStream(func(id int) {
		if b.hit < 0 && id < len(unbound) && unbound[id] {
			b.hit = id
		}
	})
	return b
}

func (b *tripBody) Read(p []byte) (int, error) {
	for b.off == len(b.out) {
		if b.err != nil {
			return 0, b.err
		}
		n, err := b.rc.Read(b.buf)
		b.out, b.off = b.stream.Write(b.out[:0], b.buf[:n]), 0
		if err == io.EOF {
			b.out = b.stream.Flush(b.out)
			if b.hit < 0 {
				for _, i := range b.sc.scanHeader(b.req.Trailer, nil) {
					if b.unbound[i] {
						b.hit = i
						break
					}
				}
			}
		}
		if b.hit >= 0 {
			b.rs.setLeak(b.sc.slots[b.hit])
			b.out, b.off, b.err = nil, 0, errPlaceholderInBody
			return 0, b.err
		}
		if err != nil {
			b.err = err
		}
	}
	n := copy(p, b.out[b.off:])
	b.off += n
	return n, nil
}

func (b *tripBody) Close() error { return b.rc.Close() }
