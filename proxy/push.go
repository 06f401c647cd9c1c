package proxy

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/cork-sh/cork/policy"
	"github.com/cork-sh/cork/proxy/gitpush"
)

// Reasons of a refused git push (docs/POLICY.md, "Git push rules").
const (
	// ReasonPushRefDenied: the push updates a ref its route's push rules
	// do not allow. Git gets receive-pack's own refusal (200) and shows
	// it; a client that asked for no status report gets 403.
	ReasonPushRefDenied = "push_ref_denied"
	// ReasonPushUnparseable (403): the route restricts pushes and cork
	// cannot read this one's ref updates.
	ReasonPushUnparseable = "push_unparseable"
)

// maxPushDrain bounds what is read of a refused push's body before the
// answer. git shows an answer only after its whole request is sent:
// answered early, curl stops sending and git's remote helper posts the
// rest of the pack as a new request. Past the bound the answer goes
// anyway and the connection is closed.
const maxPushDrain = 1 << 30

// receivePack is the last path segment of a push over smart HTTP.
const receivePack = "git-receive-pack"

// checkPush applies the push rules of a host's routes (docs/POLICY.md,
// "Git push rules") to a request whose path names git-receive-pack: it
// reads the ref updates at the start of the body, and every one must pass
// every route's Push.Allows; a push with push options is refused whole. It returns nil to go on, with req.Body
// replaced by the bytes it read followed by the rest (the pack is never
// read here); or the refusal to answer, already audited, after reading the
// body to its end. sc redacts placeholders from the logged ref.
func (p *Proxy) checkPush(req *http.Request, rs *reqState, routes []*policy.Route, sc *scanner) *http.Response {
	if req.Body == nil || req.Body == http.NoBody || !pushRestricted(routes) || !isReceivePack(req.URL) {
		return nil // no body: no ref updates
	}
	if ce := req.Header.Values("Content-Encoding"); len(ce) > 0 && !(len(ce) == 1 && strings.EqualFold(strings.TrimSpace(ce[0]), "identity")) {
		// git never compresses a push (remote-curl gzips only fetches).
		_, resp := p.refuse(req, rs, deny{reason: ReasonPushUnparseable, what: rs.what})
		return resp
	}
	head, err := gitpush.ReadRequest(req.Body)
	if err != nil {
		d := deny{reason: ReasonPushUnparseable, what: rs.what}
		if !errors.Is(err, gitpush.ErrUnparseable) {
			d = deny{reason: ReasonBadRequest, what: rs.what, detail: "the request body could not be read"}
		}
		_, resp := p.refuse(req, rs, d)
		return resp
	}
	if len(head.Head) > 0 {
		req.Body = &prefixBody{Reader: io.MultiReader(bytes.NewReader(head.Head), req.Body), body: req.Body}
	}
	var denied []string
	for _, c := range head.Commands {
		if !pushAllowed(routes, c) {
			denied = append(denied, c.Ref)
		}
	}
	note := ""
	if len(denied) == 0 && len(head.Commands) > 0 && head.Has(pushOptions) {
		// Push options tell the server to act beyond the pushed refs
		// (GitLab's merge_request.target=main with
		// merge_when_pipeline_succeeds merges into main): cork cannot
		// tell what they do, so the whole push is refused.
		note = pushOptionsNote
		for _, c := range head.Commands {
			denied = append(denied, c.Ref)
		}
	}
	if len(denied) == 0 {
		return nil
	}
	return p.refusePush(req, rs, head, denied, note, sc)
}

// pushOptions is the capability with which a client sends push options
// (git push -o) after the commands.
const pushOptions = "push-options"

// pushOptionsNote is the first line git shows for a push refused for its
// options.
const pushOptionsNote = "cork: push options (git push -o) are refused where the policy restricts pushes: the server may act on other refs with them"

// refusePush answers a push with denied refs: receive-pack's refusal,
// which git shows as "remote: cork: push to REF denied by policy" (after
// note, when not empty) and "[remote rejected]", after reading the body to
// its end.
func (p *Proxy) refusePush(req *http.Request, rs *reqState, head *gitpush.Request, denied []string, note string, sc *scanner) *http.Response {
	rs.ref = sc.redact(denied[0])
	msgs := make([]string, 0, len(denied)+1)
	if note != "" {
		msgs = append(msgs, note)
	}
	isDenied := make(map[string]bool, len(denied))
	for _, ref := range denied {
		msgs = append(msgs, "cork: push to "+ref+" denied by policy")
		isDenied[ref] = true
	}
	body, err := gitpush.Refusal(head, msgs, func(c gitpush.Command) string {
		if isDenied[c.Ref] {
			return "denied by cork policy"
		}
		return "cork: another ref of this push is denied"
	})
	if err != nil { // gitpush.ErrNoReport: a 200 would read as success
		_, resp := p.refuse(req, rs, deny{reason: ReasonPushRefDenied, what: rs.what, detail: rs.ref})
		return resp
	}
	n, err := io.Copy(io.Discard, io.LimitReader(req.Body, maxPushDrain))
	rs.up.Add(n)
	rs.decision, rs.status = decisionDeny, http.StatusOK
	p.finish(rs, ReasonPushRefDenied, false)
	h := make(http.Header, 5)
	h["Content-Type"] = []string{gitpush.ContentType}
	h["Cache-Control"] = []string{"no-cache, max-age=0, must-revalidate"}
	h["X-Content-Type-Options"] = []string{"nosniff"}
	h[HeaderDenyReason] = []string{ReasonPushRefDenied}
	h["Content-Length"] = []string{strconv.Itoa(len(body))}
	resp := &http.Response{
		Status: "200 OK", StatusCode: http.StatusOK, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: h, Body: io.NopCloser(bytes.NewReader(body)), ContentLength: int64(len(body)), Request: req,
	}
	if err != nil || n == maxPushDrain {
		// The body did not end: the connection cannot carry another
		// request.
		closeAfter(resp)
	}
	return resp
}

// pushRestricted reports whether a route of the host restricts pushes.
func pushRestricted(routes []*policy.Route) bool {
	for _, rt := range routes {
		if rt.Push != nil {
			return true
		}
	}
	return false
}

// pushAllowed reports whether every route's push rules allow c.
func pushAllowed(routes []*policy.Route, c gitpush.Command) bool {
	for _, rt := range routes {
		if !rt.Push.Allows(c.Ref, c.Delete()) {
			return false
		}
	}
	return true
}

// isReceivePack reports whether u may name git's push service: the last
// segment of its path is git-receive-pack, in any case, read as written
// and percent-decoded once and twice, with '\\' as a separator, a segment
// cut at ';' and trailing white space or control characters, and with
// dot-segments removed or kept. Reading generously costs little: a
// request that is not a push has no ref updates, or is refused as
// unparseable.
func isReceivePack(u *url.URL) bool {
	p := u.EscapedPath()
	for range 3 {
		kept, removed := lastSegments(p)
		if strings.EqualFold(kept, receivePack) || strings.EqualFold(removed, receivePack) {
			return true
		}
		d, err := url.PathUnescape(p)
		if err != nil || d == p {
			return false
		}
		p = d
	}
	return false
}

// lastSegments is p's last segment, skipping empty ones and "." (kept),
// and its last segment once "." and ".." are resolved (removed).
func lastSegments(p string) (kept, removed string) {
	var stack []string
	for _, s := range strings.FieldsFunc(p, func(r rune) bool { return r == '/' || r == '\\' }) {
		s, _, _ = strings.Cut(s, ";")
		s = strings.TrimRightFunc(s, func(r rune) bool { return r <= ' ' || r == 0x7f })
		switch s {
		case "", ".":
			continue
		case "..":
			if len(stack) > 0 {
				stack = stack[:len(stack)-1]
			}
		default:
			stack = append(stack, s)
		}
		kept = s
	}
	if len(stack) > 0 {
		removed = stack[len(stack)-1]
	}
	return kept, removed
}

// prefixBody reads the part of a body already read, then the rest, and
// closes the body.
type prefixBody struct {
	io.Reader
	body io.ReadCloser
}

func (b *prefixBody) Close() error { return b.body.Close() }
