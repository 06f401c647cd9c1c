package gitpush

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Bounds of a request head. A push's commands are a few hundred bytes
// each; a mirror push of a large repository may carry thousands.
const (
	MaxHead     = 1 << 20 // bytes up to and including the flush-pkt
	MaxCommands = 10000
	MaxRef      = 4096 // bytes of one ref name (git's PATH_MAX)

	// maxPkt is git's LARGE_PACKET_MAX: a pkt-line's length, its 4 length
	// bytes included (pkt-line.c refuses longer ones).
	maxPkt = 65520

	hexSHA1   = 40
	hexSHA256 = 64
)

// ErrUnparseable is wrapped by every error ReadRequest returns for a
// request head it does not accept. The other errors are the reader's.
var ErrUnparseable = errors.New("git push request not understood")

// Command is one ref update of a push.
type Command struct {
	Old string // the object id the client believes the ref has (all zeros: create)
	New string // the object id it sets (all zeros: delete)
	Ref string // the full ref name, "refs/heads/main"
}

// Delete reports whether c deletes its ref: its new object id is all
// zeros, as receive-pack reads it (is_null_oid).
func (c Command) Delete() bool { return zeroID(c.New) }

// Request is the head of a push: its commands, its capabilities and the
// bytes they were read from. The zero Request is a push with no commands
// (git's probe request, a lone flush-pkt, or an empty body).
type Request struct {
	Commands []Command
	// Capabilities are the client's, in order, from every command line
	// that carries them (git sends them on the first only; receive-pack
	// reads them wherever they are).
	Capabilities []string
	// Head is every byte ReadRequest consumed: forward it, then the rest
	// of the body.
	Head []byte
}

// Has reports whether the client asked for capability name ("report-status",
// or "object-format" for "object-format=sha256").
func (r *Request) Has(name string) bool {
	for _, c := range r.Capabilities {
		if k, _, _ := strings.Cut(c, "="); k == name {
			return true
		}
	}
	return false
}

// ReadRequest reads a push's commands from the start of a git-receive-pack
// request body, up to and including the flush-pkt that ends them, and not
// one byte more. A body that ends before its first byte is a Request with
// no commands. Anything receive-pack might read differently is an error
// wrapping ErrUnparseable (see the package comment); a read error is
// returned as it is, wrapped. On any error the Request is nil.
func ReadRequest(r io.Reader) (*Request, error) {
	p := parser{r: r}
	if err := p.run(); err != nil {
		return nil, err
	}
	return &p.req, nil
}

// parser is the state of one ReadRequest.
type parser struct {
	r     io.Reader
	req   Request
	hexsz int // object id length in hex, fixed by the first id read
	pkts  int

	// A signed push: receive-pack collects the certificate's packets,
	// each up to its first NUL, until "push-cert-end\n"; the commands are
	// in it (read_head_info, queue_commands_from_cert).
	inCert bool
	cert   []byte
}

func (p *parser) run() error {
	for {
		payload, flush, err := p.next()
		if err != nil {
			return err
		}
		if flush {
			// A flush-pkt ends the commands, inside a certificate too.
			if err := p.certCommands(); err != nil {
				return fmt.Errorf("%w: push certificate: %w", ErrUnparseable, err)
			}
			return nil
		}
		if p.inCert {
			line, _, _ := bytes.Cut(payload, []byte{0})
			if string(line) == "push-cert-end\n" {
				p.inCert = false
			} else {
				p.cert = append(p.cert, line...)
			}
			continue
		}
		if err := p.line(payload); err != nil {
			return fmt.Errorf("%w: pkt-line %d: %w", ErrUnparseable, p.pkts, err)
		}
	}
}

var (
	errShallow = errors.New("malformed shallow line")
	errCommand = errors.New("not <old-oid> <new-oid> <ref>")
	errRef     = errors.New("ref name empty, longer than 4096 bytes, or with a space or control character")
	errCert    = errors.New("no blank line after the header")
	errTooMany = fmt.Errorf("more than %d commands", MaxCommands)
)

// line reads one pkt-line's payload the way read_head_info does: one
// trailing LF removed (PACKET_READ_CHOMP_NEWLINE), capabilities after a
// NUL, "shallow" lines skipped, "push-cert" starting a certificate.
func (p *parser) line(b []byte) error {
	if n := len(b); n > 0 && b[n-1] == '\n' {
		b = b[:n-1]
	}
	if rest, ok := strings.CutPrefix(string(b), "shallow "); ok {
		// receive-pack ignores what follows the id; nothing may follow
		// here.
		if !p.oid(rest) {
			return errShallow
		}
		return nil
	}
	line, caps, hasCaps := strings.Cut(string(b), "\x00")
	if hasCaps {
		p.req.Capabilities = append(p.req.Capabilities, strings.Fields(caps)...)
	}
	if line == "push-cert" {
		p.inCert = true
		return nil
	}
	c, ok, err := p.command(line)
	switch {
	case !ok:
		return errCommand
	case err != nil:
		return err
	}
	return p.add(c)
}

func (p *parser) add(c Command) error {
	if len(p.req.Commands) == MaxCommands {
		return errTooMany
	}
	p.req.Commands = append(p.req.Commands, c)
	return nil
}

// certCommands reads the commands of a signed push's certificate as
// receive-pack does: the lines after the first blank line, up to where
// parse_signed_buffer finds the signature. cork does not look for the
// signature: it reads every line up to the first that is not shaped as a
// command. receive-pack reads a prefix of those (the signature begins at a
// line start) or refuses the push (a line before the signature that is not
// a command is fatal to it), so no command it acts on goes unchecked.
func (p *parser) certCommands() error {
	if len(p.cert) == 0 {
		return nil
	}
	_, rest, ok := bytes.Cut(p.cert, []byte("\n\n"))
	if !ok {
		return errCert
	}
	for len(rest) > 0 {
		var line []byte
		line, rest, _ = bytes.Cut(rest, []byte("\n"))
		c, ok, err := p.command(string(line))
		if !ok {
			return nil
		}
		if err != nil {
			return err
		}
		if err := p.add(c); err != nil {
			return err
		}
	}
	return nil
}

// command parses "<old-oid> SP <new-oid> SP <ref>" (queue_command). ok
// says whether line has that shape as receive-pack sees it (two ids of
// the push's length, each followed by a space), whatever the ref; err,
// whether the ref is one cork checks.
func (p *parser) command(line string) (c Command, ok bool, err error) {
	n := p.hexsz
	if n == 0 {
		// The first space says which: a SHA-1 id cannot have one at 64, a
		// SHA-256 one cannot at 40.
		switch {
		case len(line) > hexSHA1 && line[hexSHA1] == ' ':
			n = hexSHA1
		case len(line) > hexSHA256 && line[hexSHA256] == ' ':
			n = hexSHA256
		default:
			return Command{}, false, nil
		}
	}
	if len(line) < 2*n+2 || line[n] != ' ' || line[2*n+1] != ' ' || !allHex(line[:n]) || !allHex(line[n+1:2*n+1]) {
		return Command{}, false, nil
	}
	p.hexsz = n
	c = Command{Old: line[:n], New: line[n+1 : 2*n+1], Ref: line[2*n+2:]}
	if !validRef(c.Ref) {
		return Command{}, true, errRef
	}
	return c, true, nil
}

// oid reports whether s is a whole hex object id of the push's length
// (fixing it on the first id).
func (p *parser) oid(s string) bool {
	if p.hexsz == 0 && (len(s) == hexSHA1 || len(s) == hexSHA256) {
		p.hexsz = len(s)
	}
	return p.hexsz != 0 && len(s) == p.hexsz && allHex(s)
}

func allHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isHex(s[i]) {
			return false
		}
	}
	return true
}

// validRef accepts a ref name receive-pack could act on and git could
// report on: no space (a status line is split at it) and no control
// character (check_refname_format refuses both).
func validRef(ref string) bool {
	if ref == "" || len(ref) > MaxRef {
		return false
	}
	for i := 0; i < len(ref); i++ {
		if c := ref[i]; c <= ' ' || c == 0x7f {
			return false
		}
	}
	return true
}

// next reads one pkt-line into the head and returns its payload, or flush
// for a flush-pkt. Before the first byte, io.EOF is a flush.
func (p *parser) next() (payload []byte, flush bool, err error) {
	start := len(p.req.Head)
	if err := p.read(4); err != nil {
		if err == io.EOF && start == 0 {
			return nil, true, nil
		}
		return nil, false, err
	}
	p.pkts++
	n, ok := pktLen(p.req.Head[start:])
	switch {
	case !ok:
		return nil, false, fmt.Errorf("%w: pkt-line %d: bad length", ErrUnparseable, p.pkts)
	case n == 0:
		return nil, true, nil
	case n <= 4:
		// 0001 delim-pkt and 0002 response-end-pkt end the commands for
		// receive-pack too, but nothing sends them here; 0003 and 0004
		// are errors to it.
		return nil, false, fmt.Errorf("%w: pkt-line %d: special or empty packet", ErrUnparseable, p.pkts)
	case n > maxPkt:
		return nil, false, fmt.Errorf("%w: pkt-line %d: longer than %d bytes", ErrUnparseable, p.pkts, maxPkt)
	}
	if err := p.read(n - 4); err != nil {
		return nil, false, err
	}
	return p.req.Head[start+4:], false, nil
}

// read appends exactly n more bytes of the body to the head.
func (p *parser) read(n int) error {
	h := p.req.Head
	if len(h)+n > MaxHead {
		return fmt.Errorf("%w: commands longer than %d bytes", ErrUnparseable, MaxHead)
	}
	if cap(h)-len(h) < n {
		grown := make([]byte, len(h), max(2*cap(h), len(h)+n, 512))
		copy(grown, h)
		h = grown
	}
	m, err := io.ReadFull(p.r, h[len(h):len(h)+n])
	p.req.Head = h[:len(h)+m]
	switch {
	case err == io.EOF && len(h) == 0:
		return io.EOF
	case err == io.EOF, err == io.ErrUnexpectedEOF:
		return fmt.Errorf("%w: the body ends before the flush-pkt", ErrUnparseable)
	case err != nil:
		return fmt.Errorf("read git push commands: %w", err)
	}
	return nil
}

// pktLen parses a pkt-line's 4 hex length digits (either case, as
// pkt-line.c's hexval).
func pktLen(b []byte) (int, bool) {
	n := 0
	for _, c := range b[:4] {
		var d byte
		switch {
		case '0' <= c && c <= '9':
			d = c - '0'
		case 'a' <= c && c <= 'f':
			d = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			d = c - 'A' + 10
		default:
			return 0, false
		}
		n = n<<4 | int(d)
	}
	return n, true
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func zeroID(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] != '0' {
			return false
		}
	}
	return true
}
