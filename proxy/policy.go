package proxy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/textproto"
	"os"
	"slices"
	"strings"
	"syscall"

	"go.yaml.in/yaml/v3"
	"golang.org/x/net/http/httpguts"
)

// Scheme says how a route's credential appears in its header.
type Scheme string

// Schemes.
const (
	SchemeBearer Scheme = "bearer" // "Bearer <token>"
	SchemeToken  Scheme = "token"  // "token <token>" (GitHub)
	SchemeBasic  Scheme = "basic"  // "Basic base64(user:token)"
	SchemeRaw    Scheme = "raw"    // the header value is the token
)

// Policy defaults and limits.
const (
	DefaultHeader       = "Authorization"     // a route's header when none is given
	DefaultScheme       = SchemeBearer        // a route's scheme when none is given
	DefaultBasicUser    = "x-access-token"    // user name added for scheme basic
	DefaultBlockReason  = "blocked by policy" // a block's reason when none is given
	DefaultUnscrubbable = UnscrubbableRefuse  // a route's unscrubbable when none is given
	MinPlaceholderLen   = 8                   // shortest placeholder accepted
	MaxPolicyFileSize   = 1 << 20             // LoadPolicy refuses larger files
	noHostsReservedName = "cork.invalid"      // RFC 2606: never resolves
)

// Policy is a parsed and validated policy file. A *Policy is immutable
// once returned by ParsePolicy, LoadPolicy or NewPolicy and safe for
// concurrent use; its exported fields hold the normalised entries (canonical
// host patterns, canonical header names, defaults filled in) and must not
// be modified. A Policy that did not come from one of those functions (the
// zero value, a literal) has no compiled rules and denies everything.
type Policy struct {
	Slots  map[string]Slot `yaml:"slots"`
	Routes []Route         `yaml:"routes"`
	Allow  []string        `yaml:"allow"`
	Block  []Block         `yaml:"block"`

	c *compiledPolicy // nil: deny everything
}

// Slot is a credential slot: its value arrives separately (resolve.Tokens).
type Slot struct {
	Placeholder string `yaml:"placeholder"`
}

// Values of Route.Unscrubbable: what happens to a response body of the
// route's host that cork cannot scrub of tokens (a Content-Encoding it
// cannot decode).
const (
	UnscrubbableRefuse = "refuse" // answer 502 instead (the default)
	UnscrubbablePass   = "pass"   // pass the body on unscrubbed
)

// Route binds a slot to a host: requests to it are intercepted and the
// placeholder in Header is replaced by the slot's token.
type Route struct {
	Host         string `yaml:"host"`
	Slot         string `yaml:"slot"`
	Header       string `yaml:"header"` // default "Authorization" (canonicalised)
	Scheme       Scheme `yaml:"scheme"` // default bearer
	BasicUser    string `yaml:"basic_user"`
	AddIfMissing bool   `yaml:"add_if_missing"`
	InsecureHTTP bool   `yaml:"insecure_http"`
	Unscrubbable string `yaml:"unscrubbable"` // refuse (default) or pass; see HostRules.PassUnscrubbable
}

// Block answers matching requests with 403 and Reason. An empty Path
// blocks the whole host (at CONNECT); a Path blocks that path, the paths
// below it and its format variants (/oauth/token.json) inside an
// intercepted connection, however the request spells it: see
// HostRules.BlockFor. Path is stored normalised (decoded form, no dot
// segments, no ";params", no trailing "/").
type Block struct {
	Host          string `yaml:"host"`
	Path          string `yaml:"path"`
	CaseSensitive bool   `yaml:"case_sensitive"` // compare Path exactly; default: ignoring case
	Reason        string `yaml:"reason"`
}

// ParsePolicy decodes YAML (or JSON) and validates it. Unknown keys are
// errors; all problems are returned at once (errors.Join), each naming its
// place, e.g. `routes[2].slot: unknown slot "gh"`. The input must be a
// single document.
func ParsePolicy(data []byte) (*Policy, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, errors.New("empty policy")
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var root yaml.Node
	if err := dec.Decode(&root); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("empty policy")
		}
		return nil, yamlError(err, data)
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case err == nil:
		return nil, fmt.Errorf("line %d: more than one YAML document; a policy is one document", extra.Line)
	case !errors.Is(err, io.EOF):
		return nil, yamlError(err, data)
	}
	doc := &root
	if doc.Kind == yaml.DocumentNode && len(doc.Content) == 1 {
		doc = doc.Content[0]
	}
	if doc.Kind == yaml.ScalarNode && doc.ShortTag() == "!!null" {
		return nil, errors.New("empty policy")
	}
	if errs := checkSchema(doc); len(errs) > 0 {
		return nil, errors.Join(errs...)
	}

	// The schema walk has reported unknown keys with their paths; decoding
	// with KnownFields again keeps the struct tags the single source of truth.
	var p Policy
	dec = yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&p); err != nil {
		return nil, yamlError(err, data)
	}
	return NewPolicy(p)
}

// LoadPolicy reads and parses the policy file at path; errors name the path,
// one line per problem. Anything but a regular file (a FIFO, a device, a
// directory) is refused without blocking, so a reload cannot hang.
func LoadPolicy(path string) (*Policy, error) {
	// O_NONBLOCK: opening a FIFO would otherwise wait for a writer, and
	// the SIGHUP reload loop with it. It does not affect regular files.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("policy %s: not a regular file", path)
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxPolicyFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	if len(data) > MaxPolicyFileSize {
		return nil, fmt.Errorf("policy %s: larger than %d bytes", path, MaxPolicyFileSize)
	}
	p, err := ParsePolicy(data)
	if err != nil {
		return nil, prefixErrors(path, err)
	}
	return p, nil
}

// prefixErrors puts prefix in front of each joined error, so that every
// printed line names the file.
func prefixErrors(prefix string, err error) error {
	var errs []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	} else {
		errs = []error{err}
	}
	out := make([]error, len(errs))
	for i, e := range errs {
		out[i] = fmt.Errorf("%s: %w", prefix, e)
	}
	return errors.Join(out...)
}

// yamlError turns a yaml error into one error per problem, without the
// library's "yaml: unmarshal errors:" preamble, and explains the usual
// cause of a syntax error: a tab in the indentation.
func yamlError(err error, data []byte) error {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		errs := make([]error, len(te.Errors))
		for i, e := range te.Errors {
			errs[i] = errors.New(strings.TrimSpace(e))
		}
		return errors.Join(errs...)
	}
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	var line int
	if _, serr := fmt.Sscanf(msg, "line %d:", &line); serr == nil && tabIndented(data, line) {
		msg += " (YAML indentation must use spaces, not tabs)"
	}
	return errors.New(msg)
}

// tabIndented reports whether line n (1-based) or the one before it is
// indented with a tab.
func tabIndented(data []byte, n int) bool {
	i := 0
	for line := range bytes.SplitSeq(data, []byte("\n")) {
		i++
		if i < n-1 {
			continue
		}
		if i > n {
			break
		}
		indent := line[:len(line)-len(bytes.TrimLeft(line, " \t"))]
		if bytes.IndexByte(indent, '\t') >= 0 {
			return true
		}
	}
	return false
}

// Schema of the policy file, for the unknown-key walk.
var (
	routeKeys = []string{"host", "slot", "header", "scheme", "basic_user", "add_if_missing", "insecure_http", "unscrubbable"}
	boolKeys  = []string{"add_if_missing", "insecure_http", "case_sensitive"}
	blockKeys = []string{"host", "path", "case_sensitive", "reason"}
)

// checkSchema reports unknown keys and wrongly shaped values with their
// policy path and line.
func checkSchema(doc *yaml.Node) []error {
	var errs []error
	fail := func(n *yaml.Node, place, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s (line %d)", place, fmt.Sprintf(format, args...), n.Line))
	}
	deref := func(n *yaml.Node) *yaml.Node {
		for n.Kind == yaml.AliasNode && n.Alias != nil {
			n = n.Alias
		}
		return n
	}
	isNull := func(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" }
	kind := func(n *yaml.Node, want yaml.Kind, place, what string) bool {
		if n.Kind == want || isNull(n) {
			return n.Kind == want
		}
		fail(n, place, "want %s", what)
		return false
	}
	fields := func(n *yaml.Node, place string, known []string) {
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], deref(n.Content[i+1])
			if !slices.Contains(known, k.Value) {
				fail(k, place, "unknown field %q (want %s)", k.Value, strings.Join(known, ", "))
				continue
			}
			sub := place + "." + k.Value
			if !kind(v, yaml.ScalarNode, sub, "a single value") {
				continue
			}
			if slices.Contains(boolKeys, k.Value) && v.ShortTag() != "!!bool" {
				fail(v, sub, "want true or false, got %q", v.Value)
			}
		}
	}
	if !kind(doc, yaml.MappingNode, "policy", "a mapping with slots, routes, allow and block") {
		return errs
	}
	for i := 0; i+1 < len(doc.Content); i += 2 {
		k, v := doc.Content[i], deref(doc.Content[i+1])
		switch k.Value {
		case "slots":
			if !kind(v, yaml.MappingNode, "slots", "a mapping of slot names") {
				continue
			}
			for j := 0; j+1 < len(v.Content); j += 2 {
				name, s := v.Content[j], deref(v.Content[j+1])
				place := "slots." + name.Value
				if kind(s, yaml.MappingNode, place, "a mapping with placeholder") {
					fields(s, place, []string{"placeholder"})
				}
			}
		case "routes", "block":
			keys := routeKeys
			if k.Value == "block" {
				keys = blockKeys
			}
			if !kind(v, yaml.SequenceNode, k.Value, "a list") {
				continue
			}
			for j, e := range v.Content {
				place := fmt.Sprintf("%s[%d]", k.Value, j)
				if kind(deref(e), yaml.MappingNode, place, "a mapping") {
					fields(deref(e), place, keys)
				}
			}
		case "allow":
			if !kind(v, yaml.SequenceNode, "allow", "a list of host patterns") {
				continue
			}
			for j, e := range v.Content {
				kind(deref(e), yaml.ScalarNode, fmt.Sprintf("allow[%d]", j), "a host pattern")
			}
		default:
			fail(k, "policy", "unknown field %q (want slots, routes, allow, block)", k.Value)
		}
	}
	return errs
}

// NewPolicy validates and compiles a policy built in code (from a
// provision.EgressPlan, say) the way ParsePolicy does a file. p is copied;
// the result is immutable and safe for concurrent use.
func NewPolicy(p Policy) (*Policy, error) {
	out := &Policy{
		Slots:  make(map[string]Slot, len(p.Slots)),
		Routes: slices.Clone(p.Routes),
		Allow:  slices.Clone(p.Allow),
		Block:  slices.Clone(p.Block),
	}
	for k, v := range p.Slots {
		out.Slots[k] = v
	}
	v := validator{p: out}
	v.slots()
	v.routes()
	v.allow()
	v.blocks()
	v.conflicts()
	if len(v.errs) > 0 {
		return nil, errors.Join(v.errs...)
	}
	out.c = compile(v.entries)
	return out, nil
}

// entry is one host-bearing policy item with its parsed pattern.
type entry struct {
	place string // "routes[0]", "allow[1]", "block[2]"
	pat   hostPattern
	route *Route
	allow bool
	block *Block
}

type validator struct {
	p       *Policy
	errs    []error
	entries []entry // valid entries only, in file order: routes, allow, block
}

func (v *validator) errf(format string, args ...any) {
	v.errs = append(v.errs, fmt.Errorf(format, args...))
}

func (v *validator) slots() {
	names := make([]string, 0, len(v.p.Slots))
	for name := range v.p.Slots {
		names = append(names, name)
	}
	slices.Sort(names)
	var good []string
	for _, name := range names {
		place := "slots." + name
		if !validSlotName(name) {
			v.errf("%s: invalid slot name (want letters, digits, '-', '_' or '.')", place)
		}
		ph := v.p.Slots[name].Placeholder
		switch {
		case ph == "":
			v.errf("%s.placeholder: empty", place)
		case strings.TrimSpace(ph) != ph:
			v.errf("%s.placeholder: leading or trailing whitespace (a stray newline?)", place)
		case !visibleASCII(ph):
			v.errf("%s.placeholder: want printable ASCII without spaces", place)
		case len(ph) < MinPlaceholderLen:
			v.errf("%s.placeholder: shorter than %d characters", place, MinPlaceholderLen)
		default:
			good = append(good, name)
		}
	}
	// The tripwire searches requests for placeholders: one inside another
	// would make a sighting ambiguous.
	for i, a := range good {
		for _, b := range good[i+1:] {
			pa, pb := v.p.Slots[a].Placeholder, v.p.Slots[b].Placeholder
			switch {
			case pa == pb:
				v.errf("slots.%s.placeholder: same as slots.%s.placeholder", b, a)
			case strings.Contains(pa, pb):
				v.errf("slots.%s.placeholder: contains slots.%s.placeholder; placeholders must not overlap", a, b)
			case strings.Contains(pb, pa):
				v.errf("slots.%s.placeholder: contains slots.%s.placeholder; placeholders must not overlap", b, a)
			}
		}
	}
}

// forbiddenRouteHeaders are headers the proxy owns or strips: a credential
// in them would be lost or would corrupt the request.
var forbiddenRouteHeaders = []string{
	"Host", "Connection", "Content-Length", "Transfer-Encoding", "Te", "Trailer",
	"Upgrade", "Keep-Alive", "Proxy-Authorization", "Proxy-Connection", "Proxy-Authenticate",
}

func (v *validator) routes() {
	for i := range v.p.Routes {
		r := &v.p.Routes[i]
		place := fmt.Sprintf("routes[%d]", i)
		ok := true
		pat, err := v.host(place+".host", r.Host)
		if err != nil {
			ok = false
		} else {
			r.Host = pat.String()
		}
		switch _, defined := v.p.Slots[r.Slot]; {
		case r.Slot == "":
			v.errf("%s.slot: required", place)
			ok = false
		case !defined:
			v.errf("%s.slot: unknown slot %q", place, r.Slot)
			ok = false
		}
		switch {
		case r.Header == "":
			r.Header = DefaultHeader
		case !httpguts.ValidHeaderFieldName(r.Header):
			v.errf("%s.header: invalid header name %q", place, r.Header)
			ok = false
		default:
			r.Header = textproto.CanonicalMIMEHeaderKey(r.Header)
			if slices.Contains(forbiddenRouteHeaders, r.Header) {
				v.errf("%s.header: %s cannot carry a credential", place, r.Header)
				ok = false
			}
		}
		schemeOK := true
		switch s := Scheme(strings.ToLower(string(r.Scheme))); s {
		case "":
			r.Scheme = DefaultScheme
		case SchemeBearer, SchemeToken, SchemeBasic, SchemeRaw:
			r.Scheme = s
		default:
			v.errf("%s.scheme: unknown scheme %q (want bearer, token, basic, raw)", place, r.Scheme)
			ok, schemeOK = false, false
		}
		switch {
		case r.Scheme == SchemeBasic && r.BasicUser == "":
			r.BasicUser = DefaultBasicUser
		case r.Scheme == SchemeBasic && (strings.Contains(r.BasicUser, ":") || !visibleASCII(r.BasicUser)):
			v.errf("%s.basic_user: want printable ASCII without ':' or spaces", place)
			ok = false
		case r.Scheme != SchemeBasic && r.BasicUser != "" && schemeOK:
			v.errf("%s.basic_user: only with scheme basic (scheme is %s)", place, r.Scheme)
			ok = false
		}
		switch u := strings.ToLower(r.Unscrubbable); u {
		case "":
			r.Unscrubbable = DefaultUnscrubbable
		case UnscrubbableRefuse, UnscrubbablePass:
			r.Unscrubbable = u
		default:
			v.errf("%s.unscrubbable: unknown value %q (want refuse or pass)", place, r.Unscrubbable)
			ok = false
		}
		if ok {
			v.entries = append(v.entries, entry{place: place, pat: pat, route: r})
		}
	}
}

func (v *validator) allow() {
	for i, h := range v.p.Allow {
		place := fmt.Sprintf("allow[%d]", i)
		pat, err := v.host(place, h)
		if err != nil {
			continue
		}
		v.p.Allow[i] = pat.String()
		v.entries = append(v.entries, entry{place: place, pat: pat, allow: true})
	}
}

func (v *validator) blocks() {
	for i := range v.p.Block {
		b := &v.p.Block[i]
		place := fmt.Sprintf("block[%d]", i)
		ok := true
		pat, err := v.host(place+".host", b.Host)
		if err != nil {
			ok = false
		} else {
			b.Host = pat.String()
		}
		switch {
		case b.Path == "" && b.CaseSensitive:
			v.errf("%s.case_sensitive: only with a path", place)
			ok = false
		case b.Path == "":
		case b.Path[0] != '/':
			v.errf("%s.path: must start with \"/\"", place)
			ok = false
		case strings.ContainsAny(b.Path, "?#"):
			v.errf("%s.path: a path only, without query or fragment", place)
			ok = false
		case strings.Contains(b.Path, "%"):
			v.errf("%s.path: write the path decoded (it is matched after percent-decoding)", place)
			ok = false
		case !validUTF8NoControl(b.Path):
			v.errf("%s.path: contains control characters", place)
			ok = false
		default:
			b.Path = normalizePath(b.Path)
		}
		b.Reason = strings.TrimSpace(b.Reason)
		switch {
		case b.Reason == "":
			b.Reason = DefaultBlockReason
		case !validUTF8NoControl(b.Reason):
			v.errf("%s.reason: contains control characters", place)
			ok = false
		}
		if ok {
			v.entries = append(v.entries, entry{place: place, pat: pat, block: b})
		}
	}
}

// host parses a host pattern, reporting a missing or invalid one at place.
func (v *validator) host(place, s string) (hostPattern, error) {
	if s == "" {
		err := errors.New("required")
		v.errf("%s: %w", place, err)
		return hostPattern{}, err
	}
	pat, err := parseHostPattern(s)
	if err != nil {
		v.errf("%s: %w", place, err)
	}
	return pat, err
}

// conflicts reports duplicate entries and entries that contradict each
// other, at the later entry, naming the earlier one.
func (v *validator) conflicts() {
	for j, b := range v.entries {
		for _, a := range v.entries[:j] {
			if msg := duplicate(a, b); msg != "" {
				v.errf("%s: %s", b.place, msg)
				continue
			}
			why := contradiction(a, b)
			if why == "" {
				why = contradiction(b, a)
			}
			if why != "" {
				v.errf("%s: conflicts with %s: %s", b.place, a.place, why)
			}
		}
	}
}

// duplicate checks the later entry b against the earlier a for the same
// thing said twice (or, for routes, two slots on one header).
func duplicate(a, b entry) string {
	if a.pat.host != b.pat.host || a.pat.wildcard != b.pat.wildcard || !a.pat.portsOverlap(b.pat) {
		return ""
	}
	switch {
	case a.route != nil && b.route != nil && a.route.Header == b.route.Header:
		if a.route.Slot == b.route.Slot {
			return fmt.Sprintf("duplicates %s (host %s, header %s)", a.place, b.pat, b.route.Header)
		}
		return fmt.Sprintf("conflicts with %s (host %s, header %s): slots %s and %s",
			a.place, b.pat, b.route.Header, a.route.Slot, b.route.Slot)
	case a.allow && b.allow:
		return fmt.Sprintf("duplicates %s (host %s)", a.place, b.pat)
	case a.block != nil && b.block != nil && sameBlockPath(a.block, b.block):
		if a.block.Path == "" {
			return fmt.Sprintf("duplicates %s (host %s)", a.place, b.pat)
		}
		return fmt.Sprintf("duplicates %s (host %s, path %s)", a.place, b.pat, b.block.Path)
	}
	return ""
}

// sameBlockPath reports whether blocks a and b match the same paths.
func sameBlockPath(a, b *Block) bool {
	if a.CaseSensitive || b.CaseSensitive {
		return a.Path == b.Path && a.CaseSensitive == b.CaseSensitive
	}
	return strings.EqualFold(a.Path, b.Path)
}

// contradiction explains why broad, whose pattern covers narrow's (equal or
// broader), contradicts it: a route over an allowed host (intercept versus
// tunnel), or a host-wide block over a route, an allow or a path block.
// The reverse — a narrower route or block inside an allowed wildcard, a
// narrower block inside a routed wildcard — is the point of having both.
func contradiction(broad, narrow entry) string {
	if !broad.pat.covers(narrow.pat) {
		return ""
	}
	hostBlock := broad.block != nil && broad.block.Path == ""
	switch {
	case broad.route != nil && narrow.allow && broad.pat == narrow.pat:
		return fmt.Sprintf("%s is both routed (TLS intercepted) and allowed (blind tunnel)", broad.pat)
	case broad.route != nil && narrow.allow:
		return fmt.Sprintf("%s is routed (TLS intercepted) and %s is allowed (blind tunnel)", broad.pat, narrow.pat)
	case hostBlock && narrow.route != nil:
		return fmt.Sprintf("%s is blocked and %s is routed", broad.pat, narrow.pat)
	case hostBlock && narrow.allow:
		return fmt.Sprintf("%s is blocked and %s is allowed", broad.pat, narrow.pat)
	case hostBlock && narrow.block != nil && narrow.block.Path != "":
		return fmt.Sprintf("%s is blocked entirely, so the path block on %s never applies", broad.pat, narrow.pat)
	}
	return ""
}

func validSlotName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// visibleASCII reports whether s is printable ASCII without spaces.
func visibleASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return false
		}
	}
	return true
}

func validUTF8NoControl(s string) bool {
	for _, r := range s {
		if r < ' ' || r == 0x7f || r == '\uFFFD' {
			return false
		}
	}
	return true
}

// HostRules is everything the policy says about one host:port.
//
// Precedence, most specific pattern first: a HostBlock wins over everything
// (and then the other fields are empty); a route or path block means
// intercept (Intercept); otherwise Allowed means tunnel or forward; otherwise
// deny. The zero HostRules denies. The slices are shared with the Policy
// (and capped, so an append copies): do not modify the values they point to.
type HostRules struct {
	Routes     []*Route // routes bound to this host (exact entries before wildcard ones)
	Allowed    bool     // an allow entry matches: blind tunnel / plain forward
	HostBlock  *Block   // a host-wide block (Path == "")
	PathBlocks []*Block // path-scoped blocks for this host
}

// Binds reports whether one of the host's routes is for slot: see SlotBound.
func (h HostRules) Binds(slot string) bool {
	for _, r := range h.Routes {
		if r.Slot == slot {
			return true
		}
	}
	return false
}

// Intercept reports whether TLS to this host must be intercepted: it has a
// route or a path-scoped block.
func (h HostRules) Intercept() bool { return len(h.Routes) > 0 || len(h.PathBlocks) > 0 }

// PassUnscrubbable reports whether a response body that cannot be scrubbed
// of tokens may pass unscrubbed: only when the host has routes and every
// one of them says unscrubbable: pass.
func (h HostRules) PassUnscrubbable() bool {
	for _, r := range h.Routes {
		if r.Unscrubbable != UnscrubbablePass {
			return false
		}
	}
	return len(h.Routes) > 0
}

// BlockFor returns the first path block (in policy order) matching the
// request path, or nil.
//
// Pass the escaped path (req.URL.EscapedPath()), without the query: it is
// percent-decoded here, once and (when that leaves a '%') twice, so that
// /oauth%2Ftoken and /oauth%252Ftoken are caught too. The path is read the
// ways servers route it — segments split at '/', '\' and "%2F", each cut at
// ';' or a control character and trimmed of trailing white space, empty
// segments dropped, dot-segments removed and also kept — and a block
// matches when it matches any reading: the block's segments start the
// path's, compared ignoring case unless CaseSensitive, and its last segment
// may carry format suffixes (".json", "."). /oauth/token blocks /OAuth/Token,
// /oauth/token/, /oauth/token/x, /oauth/token;x=1, /oauth/token.json and
// /a/../oauth/token, but not /oauth/tokens. See docs/POLICY.md.
//
// It allocates only for paths with escapes or more than 16 segments. A
// zero HostRules blocks nothing.
func (h HostRules) BlockFor(escapedPath string) *Block {
	if len(h.PathBlocks) == 0 {
		return nil
	}
	return firstBlock(h.PathBlocks, escapedPath)
}

// hostKey is a compiled lookup key: a normalised host (or wildcard suffix)
// and one port.
type hostKey struct {
	host string
	port int
}

// compiledPolicy holds the precomputed answer for every key that appears in
// the policy, with the wildcard entries that also cover it merged in, so a
// lookup is at most one map probe per label and allocates nothing.
type compiledPolicy struct {
	exact     map[hostKey]*HostRules
	wildcard  map[hostKey]*HostRules // keyed by the suffix after "*."
	intercept []string
}

// level collects one pattern's own rules before merging.
type level struct {
	routes     []*Route
	allowed    bool
	hostBlock  *Block
	pathBlocks []*Block
}

func compile(entries []entry) *compiledPolicy {
	exact := map[hostKey]*level{}
	wild := map[hostKey]*level{}
	seen := map[string]bool{}
	var intercept []string
	for _, e := range entries {
		m := exact
		if e.pat.wildcard {
			m = wild
		}
		for _, port := range e.pat.ports() {
			k := hostKey{e.pat.host, port}
			l := m[k]
			if l == nil {
				l = &level{}
				m[k] = l
			}
			switch {
			case e.route != nil:
				l.routes = append(l.routes, e.route)
			case e.allow:
				l.allowed = true
			case e.block.Path == "":
				if l.hostBlock == nil {
					l.hostBlock = e.block
				}
			default:
				l.pathBlocks = append(l.pathBlocks, e.block)
			}
		}
		if (e.route != nil || e.block != nil && e.block.Path != "") && !seen[e.pat.name()] {
			seen[e.pat.name()] = true
			intercept = append(intercept, e.pat.name())
		}
	}
	slices.Sort(intercept)

	// merge folds the own rules of k's level and of every broader wildcard
	// level (nearest first) into one answer.
	merge := func(own *level, k hostKey) *HostRules {
		levels := []*level{own}
		for s := parentDomain(k.host); s != ""; s = parentDomain(s) {
			if l := wild[hostKey{s, k.port}]; l != nil {
				levels = append(levels, l)
			}
		}
		var r HostRules
		for _, l := range levels {
			if l.hostBlock != nil {
				if len(r.Routes) == 0 && !r.Allowed && len(r.PathBlocks) == 0 {
					r.HostBlock = l.hostBlock
				}
				break // a broader block never overrides a narrower entry
			}
			r.Routes = append(r.Routes, l.routes...)
			r.Allowed = r.Allowed || l.allowed
			r.PathBlocks = append(r.PathBlocks, l.pathBlocks...)
		}
		r.Routes = slices.Clip(r.Routes)
		r.PathBlocks = slices.Clip(r.PathBlocks)
		return &r
	}
	c := &compiledPolicy{
		exact:     make(map[hostKey]*HostRules, len(exact)),
		wildcard:  make(map[hostKey]*HostRules, len(wild)),
		intercept: intercept,
	}
	for k, l := range exact {
		// An exact host's own level, then the wildcards on its parents.
		c.exact[k] = merge(l, k)
	}
	for k, l := range wild {
		c.wildcard[k] = merge(l, k)
	}
	return c
}

// parentDomain strips the first label: "a.b.c" → "b.c", "c" → "".
func parentDomain(h string) string {
	i := strings.IndexByte(h, '.')
	if i < 0 {
		return ""
	}
	return h[i+1:]
}

// Lookup returns the rules for host:port. host may be any case, carry a
// trailing dot, be an IDN (normalised to ASCII), or an IPv6 literal with or
// without brackets. A pattern without a port matches ports 443 and 80; with a
// port, only that port. An invalid host gets empty rules (deny). It does no
// allocation on the hot path beyond what normalisation needs.
func (p *Policy) Lookup(host string, port int) HostRules {
	if p == nil || p.c == nil {
		return HostRules{}
	}
	h, err := NormalizeHost(host)
	if err != nil {
		return HostRules{}
	}
	return p.c.lookup(h, port)
}

func (c *compiledPolicy) lookup(h string, port int) HostRules {
	if r := c.exact[hostKey{h, port}]; r != nil {
		return *r
	}
	if len(c.wildcard) == 0 || strings.IndexByte(h, ':') >= 0 || looksNumeric(h) {
		return HostRules{} // IP addresses never match a wildcard
	}
	for s := parentDomain(h); s != ""; s = parentDomain(s) {
		if r := c.wildcard[hostKey{s, port}]; r != nil {
			return *r
		}
	}
	return HostRules{}
}

// SlotBound reports whether host:port is bound to slot — a real token for
// slot may go there. The tripwire uses it: a placeholder seen in a request
// to a host its slot is not bound to is refused.
func (p *Policy) SlotBound(slot, host string, port int) bool {
	return p.Lookup(host, port).Binds(slot)
}

// InterceptHosts lists the host patterns whose TLS is intercepted (routes
// and path-scoped blocks), port stripped, normalised: for CA name
// constraints. The list is sorted, without duplicates, and a fresh copy.
func (p *Policy) InterceptHosts() []string {
	if p == nil || p.c == nil {
		return nil
	}
	return slices.Clone(p.c.intercept)
}
