package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/cork-sh/cork/proxy"
)

// DefaultAskTimeout is how long `cork run --ask` waits for an answer
// before it denies.
const DefaultAskTimeout = 60 * time.Second

// askFlags are `cork run`'s --ask flags (README, "Approve as you go").
type askFlags struct {
	on      *bool
	fd      *int
	url     *string
	timeout *time.Duration
}

func newAskFlags(fs *flag.FlagSet) *askFlags {
	return &askFlags{
		on: fs.Bool("ask", false, "local, smolvm and qemu backends: hold a request the policy would refuse and ask on cork's terminal\n"+
			"whether to let it through (once, for the session, always: written to the --policy file)"),
		fd:      fs.Int("ask-fd", -1, "with --ask: prompt on this descriptor and read the answers from it, instead of the terminal"),
		url:     fs.String("ask-url", "", "with --ask: POST each question as JSON to this http(s) URL and read the answer from the response"),
		timeout: fs.Duration("ask-timeout", DefaultAskTimeout, "with --ask: how long to wait for an answer; then the request is denied"),
	}
}

// enabled reports whether any --ask flag asks for asking.
func (a *askFlags) enabled() bool { return *a.on || *a.fd >= 0 || *a.url != "" }

// answer is one answer to a question.
type answer int

const (
	answerDeny answer = iota
	answerOnce
	answerSession
	answerAlways
)

// asker answers proxy.Config.Unlisted: it remembers session and always
// answers and puts one question at a time to its ask function. Safe for
// concurrent use.
type asker struct {
	// ask puts q to the user (or webhook); always says whether "always"
	// may be offered. It returns answerDeny when ctx ends.
	ask        func(ctx context.Context, q proxy.Question, always bool) answer
	timeout    time.Duration
	policyFile string    // "" offers no "always"
	warn       io.Writer // one line when an "always" cannot be written
	close      func() error

	turn chan struct{} // held while a question is being asked

	mu     sync.Mutex
	grants []grant // session and always answers
}

// grant is a remembered answer: host:port for an unlisted host, or host,
// port, method and path prefix for a method or path denial.
type grant struct {
	host          string
	port          int
	method, under string // "" for an unlisted host
}

func (g grant) covers(q proxy.Question) bool {
	if g.host != q.Host || g.port != q.Port {
		return false
	}
	if q.Reason == proxy.ReasonNotAllowed {
		return g.method == ""
	}
	return g.method == q.Method && strings.HasPrefix(q.Path, g.under)
}

// grantFor is what a session answer to q remembers.
func grantFor(q proxy.Question) grant {
	if q.Reason == proxy.ReasonNotAllowed {
		return grant{host: q.Host, port: q.Port}
	}
	return grant{host: q.Host, port: q.Port, method: q.Method, under: pathPrefix(q.Path)}
}

// pathPrefix is the directory of p: /repos/o/r/issues → /repos/o/r/.
func pathPrefix(p string) string {
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[:i+1]
	}
	return "/"
}

// newAsker builds the asker the --ask flags describe for backend, or nil
// without them. It fails (a usage error) on a backend whose proxy runs
// apart from cork, without a terminal, descriptor or URL to ask on, and on
// a URL that is not http(s).
func newAsker(a *askFlags, backend, policyFile string, stderr io.Writer) (*asker, error) {
	if !a.enabled() {
		return nil, nil
	}
	switch backend {
	case "local", "smolvm", "qemu":
	default:
		return nil, usageErrorf("--ask: only for --backend local, smolvm or qemu (the %s backend's proxy runs apart from cork)", backend)
	}
	if *a.timeout <= 0 {
		return nil, usageErrorf("--ask-timeout: must be positive, not %s", *a.timeout)
	}
	if *a.fd >= 0 && *a.url != "" {
		return nil, usageErrorf("--ask-fd and --ask-url: give one")
	}
	ak := &asker{timeout: *a.timeout, policyFile: policyFile, warn: stderr, turn: make(chan struct{}, 1), close: func() error { return nil }}
	switch {
	case *a.url != "":
		h, err := newWebhook(*a.url)
		if err != nil {
			return nil, err
		}
		ak.ask = h.ask
	case *a.fd >= 0:
		f, err := pollable(*a.fd, "ask-fd")
		if err != nil {
			return nil, usageErrorf("--ask-fd %d: %v", *a.fd, err)
		}
		p := &prompter{f: f}
		ak.ask, ak.close = p.ask, f.Close
	default:
		f, err := os.OpenFile("/dev/tty", os.O_RDWR|syscall.O_NONBLOCK, 0)
		if err != nil {
			return nil, usageErrorf("--ask: no terminal to ask on (%v): give --ask-fd N or --ask-url URL", pathError(err))
		}
		p := &prompter{f: f}
		ak.ask, ak.close = p.ask, f.Close
	}
	return ak, nil
}

// pollable wraps descriptor fd in an *os.File whose reads take deadlines.
func pollable(fd int, name string) (*os.File, error) {
	if err := syscall.SetNonblock(fd, true); err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), name), nil
}

// Close releases the terminal or descriptor.
func (ak *asker) Close() error { return ak.close() }

// Unlisted is the proxy's Config.Unlisted.
func (ak *asker) Unlisted(ctx context.Context, q proxy.Question) proxy.Verdict {
	if ak.covered(q) {
		return proxy.VerdictAllow
	}
	select {
	case ak.turn <- struct{}{}:
	case <-ctx.Done():
		return proxy.VerdictDeny
	}
	defer func() { <-ak.turn }()
	if ak.covered(q) { // answered while this one waited its turn
		return proxy.VerdictAllow
	}
	pctx, cancel := context.WithTimeout(ctx, ak.timeout)
	defer cancel()
	always := ak.policyFile != "" && q.Reason != proxy.ReasonMethodNotAllowed
	ans := ak.ask(pctx, q, always)
	if ans == answerAlways && !always {
		ans = answerSession
	}
	switch ans {
	case answerOnce:
		return proxy.VerdictAllow
	case answerSession, answerAlways:
		ak.mu.Lock()
		ak.grants = append(ak.grants, grantFor(q))
		ak.mu.Unlock()
		if ans == answerAlways {
			if err := appendAllow(ak.policyFile, q); err != nil {
				fmt.Fprintf(ak.warn, "cork: --policy %s: %v (allowed for this session only)\n", ak.policyFile, err)
			}
		}
		return proxy.VerdictAllow
	}
	return proxy.VerdictDeny
}

func (ak *asker) covered(q proxy.Question) bool {
	ak.mu.Lock()
	defer ak.mu.Unlock()
	for _, g := range ak.grants {
		if g.covers(q) {
			return true
		}
	}
	return false
}

// prompter asks on a terminal or descriptor. It reads only while a
// question is shown, so that the rest of the time the sandbox's command
// may use the same terminal. Not safe for concurrent use (asker
// serialises it).
type prompter struct {
	f *os.File // read and written; reads take deadlines
}

// questionText is the prompt for q.
func questionText(q proxy.Question, always bool) string {
	var b strings.Builder
	b.WriteString("cork: agent wants ")
	if q.Method == http.MethodConnect {
		b.WriteString("CONNECT " + hostPort(q.Host, q.Port))
	} else {
		host := hostPort(q.Host, q.Port)
		if q.Port == 443 {
			host = q.Host
		}
		b.WriteString(q.Method + " " + host + q.Path)
	}
	if q.Slot != "" {
		b.WriteString(" with credential " + q.Slot)
	}
	switch q.Reason {
	case proxy.ReasonMethodNotAllowed:
		b.WriteString(" (not in the policy's methods)")
	case proxy.ReasonPathNotAllowed:
		b.WriteString(" (not in the policy's paths)")
	}
	b.WriteString(" — [o]nce / [s]ession / ")
	if always {
		b.WriteString("[a]lways / ")
	}
	b.WriteString("[d]eny? ")
	return b.String()
}

func hostPort(host string, port int) string {
	if strings.Contains(host, ":") {
		return "[" + host + "]:" + strconv.Itoa(port)
	}
	return host + ":" + strconv.Itoa(port)
}

// parseAnswer reads one answer word (o, once, s, session, a, always, d,
// deny; any case).
func parseAnswer(s string, always bool) (answer, bool) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "o", "once":
		return answerOnce, true
	case "s", "session":
		return answerSession, true
	case "a", "always":
		return answerAlways, always
	case "d", "deny", "n", "no":
		return answerDeny, true
	}
	return answerDeny, false
}

func (p *prompter) ask(ctx context.Context, q proxy.Question, always bool) answer {
	// Typed ahead (before the question was shown) is not an answer to it.
	_ = p.f.SetReadDeadline(time.Now())
	var junk [256]byte
	for {
		if n, _ := p.f.Read(junk[:]); n == 0 {
			break
		}
	}
	_ = p.f.SetReadDeadline(time.Time{})
	stop := context.AfterFunc(ctx, func() { _ = p.f.SetReadDeadline(time.Now()) })
	defer func() {
		if stop() {
			return
		}
		_ = p.f.SetReadDeadline(time.Time{})
	}()
	fmt.Fprint(p.f, questionText(q, always))
	var line []byte
	var buf [256]byte
	for {
		n, err := p.f.Read(buf[:])
		line = append(line, buf[:n]...)
		for {
			i := bytes.IndexAny(line, "\r\n")
			if i < 0 {
				break
			}
			word := string(line[:i])
			line = line[i+1:]
			if strings.TrimSpace(word) == "" {
				continue
			}
			if a, ok := parseAnswer(word, always); ok {
				fmt.Fprintf(p.f, "cork: %s\n", answerWord(a, q))
				return a
			}
			fmt.Fprint(p.f, "cork: answer o, s, "+map[bool]string{true: "a, ", false: ""}[always]+"or d: ")
		}
		if err != nil {
			fmt.Fprintf(p.f, "\ncork: no answer: denied %s\n", subject(q))
			return answerDeny
		}
	}
}

// subject names q's request in a short message.
func subject(q proxy.Question) string {
	if q.Method == http.MethodConnect {
		return "CONNECT " + hostPort(q.Host, q.Port)
	}
	return q.Method + " " + hostPort(q.Host, q.Port) + q.Path
}

func answerWord(a answer, q proxy.Question) string {
	switch a {
	case answerOnce:
		return "allowed once: " + subject(q)
	case answerSession:
		return "allowed for this session: " + subject(q)
	case answerAlways:
		return "allowed, and added to the policy file: " + subject(q)
	}
	return "denied: " + subject(q)
}

// webhook asks by POSTing the question to a URL (--ask-url).
type webhook struct {
	url    string
	client *http.Client
}

// maxWebhookAnswer bounds the body read from the webhook.
const maxWebhookAnswer = 64 << 10

func newWebhook(raw string) (*webhook, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, usageErrorf("--ask-url %q: want an http:// or https:// URL", raw)
	}
	// The host's own connection: no proxy from the environment.
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil
	return &webhook{url: u.String(), client: &http.Client{Transport: tr}}, nil
}

// webhookQuestion is the JSON body POSTed to --ask-url.
type webhookQuestion struct {
	Host   string `json:"host"`
	Port   int    `json:"port"`
	Method string `json:"method"`
	Path   string `json:"path"`
	Reason string `json:"reason"`
	Slot   string `json:"slot"`
}

func (h *webhook) ask(ctx context.Context, q proxy.Question, always bool) answer {
	body, _ := json.Marshal(webhookQuestion{Host: q.Host, Port: q.Port, Method: q.Method, Path: q.Path, Reason: q.Reason, Slot: q.Slot})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.url, bytes.NewReader(body))
	if err != nil {
		return answerDeny
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := h.client.Do(req)
	if err != nil {
		return answerDeny
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return answerDeny
	}
	var v struct {
		Answer string `json:"answer"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxWebhookAnswer)).Decode(&v); err != nil {
		return answerDeny
	}
	switch v.Answer {
	case "once":
		return answerOnce
	case "session":
		return answerSession
	case "always":
		if always {
			return answerAlways
		}
		return answerSession
	}
	return answerDeny
}

// appendAllow adds q as an allow entry to the policy file at path,
// keeping its comments and order: "host:port" for an unlisted host, a
// path-scoped mapping for a path denial (docs/POLICY.md, "allow").
func appendAllow(path string, q proxy.Question) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return pathError(err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return fmt.Errorf("parse: %w", err)
	}
	if doc.Kind == 0 {
		doc = yaml.Node{Kind: yaml.DocumentNode, Content: []*yaml.Node{{Kind: yaml.MappingNode, Tag: "!!map"}}}
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return errors.New("not a mapping")
	}
	var list *yaml.Node
	for i := 0; i+1 < len(root.Content); i += 2 {
		if root.Content[i].Value == "allow" {
			list = root.Content[i+1]
		}
	}
	if list == nil {
		list = &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq"}
		root.Content = append(root.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: "allow"}, list)
	}
	if list.Kind == yaml.ScalarNode && list.Tag == "!!null" {
		*list = yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq"}
	}
	if list.Kind != yaml.SequenceNode {
		return errors.New("allow: not a list")
	}
	list.Style &^= yaml.FlowStyle
	str := func(v string) *yaml.Node { return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: v} }
	var entry *yaml.Node
	if q.Reason == proxy.ReasonNotAllowed {
		entry = str(hostPort(q.Host, q.Port))
		entry.Style = yaml.DoubleQuotedStyle
	} else {
		entry = &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Style: yaml.FlowStyle, Content: []*yaml.Node{
			str("host"), str(q.Host), str("path"), str(pathPrefix(q.Path)),
			str("methods"), {Kind: yaml.SequenceNode, Tag: "!!seq", Style: yaml.FlowStyle, Content: []*yaml.Node{str(q.Method)}},
		}}
		if q.Port != 443 {
			entry.Content[1] = str(hostPort(q.Host, q.Port))
		}
	}
	entry.LineComment = "added by cork run --ask " + time.Now().UTC().Format(time.DateOnly)
	list.Content = append(list.Content, entry)
	var out bytes.Buffer
	enc := yaml.NewEncoder(&out)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return fmt.Errorf("encode: %w", err)
	}
	_ = enc.Close()
	mode := os.FileMode(0o644)
	if fi, err := os.Stat(path); err == nil {
		mode = fi.Mode().Perm()
	}
	return writeFileAtomic(path, out.Bytes(), mode)
}
