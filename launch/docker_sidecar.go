package launch

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/cork-sh/cork/resolve"
	"github.com/cork-sh/cork/settings"
)

// Where things live inside the sidecar.
const (
	sidecarConfigDir      = "/cork-config" // read-only; "/cork" is the binary
	sidecarPolicyPath     = sidecarConfigDir + "/policy.yaml"
	sidecarUpstreamCAPath = sidecarConfigDir + "/upstream-ca.pem"
	sidecarCADir          = "/cork-ca"
	sidecarCAPath         = sidecarCADir + "/ca.pem"
)

// sidecarSettings renders the proxy's settings for the sidecar, its
// files where the sidecar finds them (package settings owns the rest).
// Errors name the variable.
func sidecarSettings(p *settings.Proxy) (*settings.Sidecar, error) {
	return p.Sidecar(settings.Container{
		Listen:         fmt.Sprintf("0.0.0.0:%d", ProxyPort),
		PolicyFile:     sidecarPolicyPath,
		UpstreamCAFile: sidecarUpstreamCAPath,
		CAOut:          sidecarCAPath,
	})
}

// sidecar is a running `cork proxy` in a container or pod, attached
// through a long-lived stream whose stdin carries the token maps (a
// `docker start -a -i`, or a Kubernetes attach): its stdout carries the
// readiness line, its stderr the JSON log.
type sidecar struct {
	kind string          // what messages call it: "docker sidecar"
	name string          // its container or pod
	log  *zerolog.Logger // nil: the sidecar's lines are dropped

	mu     sync.Mutex
	stdin  io.WriteCloser
	last   resolve.Tokens // the last map sent: sent again on a new stream
	closed bool           // closeStdin was called: the stream is over

	ready     chan struct{} // closed on the readiness line (settings.Ready)
	readyLine settings.Ready
	done      chan struct{} // closed when the attach stream ends
	waitErr   error

	outputs     []*io.PipeWriter // the stream's stdout and stderr (follow)
	readersDone chan struct{}

	tailMu sync.Mutex
	tail   []string // the last lines that were not JSON: errors to show
}

var _ tokenSink = (*sidecar)(nil)

// startSidecar attaches to the created container name and starts it.
func startSidecar(cli *dockerCLI, name string, log *zerolog.Logger) (*sidecar, error) {
	// Not CommandContext: the sidecar outlives a cancelled run until
	// teardown removes it.
	cmd := cli.command(context.Background(), "start", "--attach", "--interactive", name)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	// Without a TTY, docker attach keeps the streams apart: the
	// readiness line on stdout, the JSON log on stderr.
	s := newSidecar("docker sidecar", name, log, stdin)
	stdout, stderr := s.follow()
	cmd.Stdout, cmd.Stderr = stdout, stderr
	if err := cmd.Start(); err != nil {
		stdout.Close()
		stderr.Close()
		return nil, fmt.Errorf("docker start %s: %w", name, err)
	}
	go func() { s.ended(cmd.Wait()) }()
	return s, nil
}

// newSidecar is a sidecar whose token stream is stdin; follow gives it
// its output streams, ended the end of its attach stream.
func newSidecar(kind, name string, log *zerolog.Logger, stdin io.WriteCloser) *sidecar {
	return &sidecar{
		kind: kind, name: name, log: log, stdin: stdin,
		ready: make(chan struct{}), done: make(chan struct{}),
	}
}

// follow returns the writers for the sidecar's stdout and stderr, read
// until ended is called.
func (s *sidecar) follow() (stdout, stderr *io.PipeWriter) {
	rr, rw := io.Pipe()
	pr, pw := io.Pipe()
	s.outputs = []*io.PipeWriter{rw, pw}
	s.readersDone = make(chan struct{}, 2)
	go func() {
		defer func() { s.readersDone <- struct{}{} }()
		s.readLogs(pr)
	}()
	go func() {
		defer func() { s.readersDone <- struct{}{} }()
		s.readReady(rr)
	}()
	return rw, pw
}

// ended records that the attach stream ended with err, once its output
// is read.
func (s *sidecar) ended(err error) {
	s.waitErr = err
	for _, w := range s.outputs {
		w.Close()
	}
	for range s.outputs {
		<-s.readersDone
	}
	close(s.done)
}

// SetTokens sends a token map to the sidecar, which replaces its current
// one. It implements tokenSink; safe for concurrent use.
func (s *sidecar) SetTokens(t resolve.Tokens) {
	if err := s.sendTokens(t); err != nil && s.log != nil {
		s.log.Warn().Str("error", err.Error()).Msg(s.kind + ": tokens not delivered")
	}
}

// sendTokens writes t to the sidecar's stdin as one object of the token
// stream (resolve.TokenEncoder, read by the sidecar's TokenDecoder): the
// only way the docker backend hands a token on.
func (s *sidecar) sendTokens(t resolve.Tokens) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stdin == nil {
		return errors.New("sidecar stdin closed")
	}
	s.last = t
	if err := resolve.NewTokenEncoder(s.stdin).Encode(t); err != nil {
		return fmt.Errorf("write to the sidecar's stdin: %w", err)
	}
	return nil
}

// replaceStdin makes w the token stream, after the last one broke, and
// sends it the last map. It returns false, closing w, once closeStdin
// was called.
func (s *sidecar) replaceStdin(w io.WriteCloser) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		w.Close()
		return false, nil
	}
	if s.stdin != nil {
		s.stdin.Close()
	}
	s.stdin = w
	if s.last == nil {
		return true, nil
	}
	if err := resolve.NewTokenEncoder(w).Encode(s.last); err != nil {
		return true, fmt.Errorf("write to the sidecar's stdin: %w", err)
	}
	return true, nil
}

// isClosed reports whether closeStdin was called.
func (s *sidecar) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// heartbeat writes a blank line on the token stream: the proxy reads it
// as nothing, but as a sign that cork is still there
// (CORK_EXIT_ON_STDIN_IDLE).
func (s *sidecar) heartbeat() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stdin != nil {
		io.WriteString(s.stdin, "\n")
	}
}

// closeStdin ends the token stream; the proxy keeps its last map.
func (s *sidecar) closeStdin() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	if s.stdin != nil {
		s.stdin.Close()
		s.stdin = nil
	}
}

// exited reports whether the attach process has ended.
func (s *sidecar) exited() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// readReady closes s.ready on the sidecar's readiness line
// (settings.Ready) on r, its stdout, then drains r. A line, not /readyz:
// the host cannot reach the internal network, and the scratch image has
// no shell to probe with.
func (s *sidecar) readReady(r io.Reader) {
	if rd, err := settings.ReadReady(r); err == nil {
		s.readyLine = rd
		close(s.ready)
	}
	io.Copy(io.Discard, r)
}

// readLogs relays the sidecar's JSON log lines to cork's logger. Other
// lines (the client's or the proxy's
// plain errors) are kept for error messages.
func (s *sidecar) readLogs(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		var m map[string]any
		if len(line) == 0 || line[0] != '{' || json.Unmarshal(line, &m) != nil {
			s.keepTail(string(line))
			if s.log != nil {
				s.log.Warn().Str("line", string(line)).Msg(s.kind)
			}
			continue
		}
		msg := logMessage(m)
		if lvl, _ := m["level"].(string); lvl == "error" || lvl == "fatal" {
			if e, _ := m["error"].(string); e != "" {
				s.keepTail(msg + ": " + e)
			} else {
				s.keepTail(msg)
			}
		}
		if s.log != nil {
			relayLogLine(s.log, m, msg)
		}
	}
	io.Copy(io.Discard, r) // a line over the limit: keep the pipe flowing
}

// logMessage is a log line's message. `cork proxy` names the field "msg"
// (docs/DESIGN.md, section 6); zerolog's default is "message".
func logMessage(m map[string]any) string {
	for _, k := range []string{"msg", "message"} {
		if s, ok := m[k].(string); ok {
			return s
		}
	}
	return ""
}

// relayLogLine re-emits one sidecar log line through cork's logger, with
// its level and fields and "component":"sidecar".
func relayLogLine(l *zerolog.Logger, m map[string]any, msg string) {
	lvl := zerolog.InfoLevel
	if s, _ := m["level"].(string); s != "" {
		if parsed, err := zerolog.ParseLevel(s); err == nil {
			lvl = parsed
		}
	}
	for _, k := range []string{"level", "msg", "message", "time"} {
		delete(m, k)
	}
	l.WithLevel(lvl).Str("component", "sidecar").Fields(m).Msg(msg)
}

func (s *sidecar) keepTail(line string) {
	if line = strings.TrimSpace(line); line == "" {
		return
	}
	s.tailMu.Lock()
	defer s.tailMu.Unlock()
	s.tail = append(s.tail, line)
	if len(s.tail) > 10 {
		s.tail = s.tail[len(s.tail)-10:]
	}
}

func (s *sidecar) lastLines() string {
	s.tailMu.Lock()
	defer s.tailMu.Unlock()
	return strings.Join(s.tail, "\n")
}

// waitReady waits until the proxy listens and has applied the first token
// map (its readiness line), the sidecar exits, ctx ends, or timeout
// passes.
func (s *sidecar) waitReady(ctx context.Context, timeout time.Duration) error {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-s.ready:
		return nil
	case <-s.done:
		msg := s.lastLines()
		if msg == "" {
			msg = fmt.Sprint(s.waitErr)
		}
		return fmt.Errorf("%s %s exited before it was ready:\n%s", s.kind, s.name, msg)
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return fmt.Errorf("%s %s: not ready after %v (no readiness line on its stdout; is the image a cork built from this repo? `make image`)", s.kind, s.name, timeout)
	}
}

// fetchCA copies the CA certificate that the sidecar wrote to its volume
// (docker cp works on scratch images and remote engines).
func (s *sidecar) fetchCA(ctx context.Context, cli *dockerCLI) ([]byte, error) {
	var stdout, stderr bytes.Buffer
	cmd := cli.command(ctx, "cp", s.name+":"+sidecarCAPath, "-")
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("docker cp %s:%s: %s", s.name, sidecarCAPath, firstLine(stderr.String()))
	}
	tr := tar.NewReader(&stdout)
	for {
		h, err := tr.Next()
		if err != nil {
			return nil, fmt.Errorf("docker cp %s:%s: no file in the archive", s.name, sidecarCAPath)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		data, err := io.ReadAll(io.LimitReader(tr, 1<<20))
		if err != nil {
			return nil, fmt.Errorf("docker cp %s:%s: %w", s.name, sidecarCAPath, err)
		}
		b, _ := pem.Decode(data)
		if b == nil || b.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("sidecar CA %s: not a PEM certificate", sidecarCAPath)
		}
		if _, err := x509.ParseCertificate(b.Bytes); err != nil {
			return nil, fmt.Errorf("sidecar CA %s: %w", sidecarCAPath, err)
		}
		return data, nil
	}
}
