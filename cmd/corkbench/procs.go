package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// proxyProc is a proxy running as a child process.
type proxyProc struct {
	name   string
	url    *url.URL
	caPEM  []byte // the CA the client must trust for intercepted hosts
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	done   chan struct{}
	logN   atomic.Int64 // log lines on stderr
	logB   atomic.Int64 // log bytes on stderr
	tailMu sync.Mutex
	tail   []string // last stderr lines, for errors
}

func (p *proxyProc) pid() int { return p.cmd.Process.Pid }

// stop closes stdin (the children and cork's token stream end), sends
// SIGTERM and waits; it kills only after a grace period.
func (p *proxyProc) stop() {
	p.stdin.Close()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
}

// drain counts stderr lines (the audit log) and keeps the last few of the
// first 50 (start-up errors).
func (p *proxyProc) drain(r io.Reader) {
	br := bufio.NewReaderSize(r, 64<<10)
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			p.logN.Add(1)
			p.logB.Add(int64(len(line)))
			if p.logN.Load() < 50 {
				s := strings.TrimSpace(string(line))
				p.tailMu.Lock()
				if len(p.tail) >= 20 {
					p.tail = p.tail[1:]
				}
				p.tail = append(p.tail, s)
				p.tailMu.Unlock()
			}
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return
		}
	}
}

func (p *proxyProc) lastLines() string {
	p.tailMu.Lock()
	defer p.tailMu.Unlock()
	return strings.Join(p.tail, "\n")
}

// buildCork builds ./cmd/cork from the module root into dir.
func buildCork(root, dir string) (string, error) {
	return buildCorkTags(root, dir, "")
}

// buildCorkTags is buildCork with build tags ("nokube": the sidecar
// image's cork, as `make image` builds it, static too).
func buildCorkTags(root, dir, tags string) (string, error) {
	bin := filepath.Join(dir, "cork")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/cork")
	if tags != "" {
		cmd = exec.Command("go", "build", "-tags", tags, "-trimpath", "-o", bin, "./cmd/cork")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	}
	cmd.Dir = root
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go build ./cmd/cork: %w", err)
	}
	return bin, nil
}

// moduleRoot finds the directory holding go.mod, from the working directory up.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.mod not found; run from the repository")
		}
		dir = parent
	}
}

// startCork runs `cork proxy` as the sidecar would: policy file, tokens on
// stdin (the stream stays open), CA written to CORK_CA_OUT, JSON log on
// stderr.
func startCork(bin, dir string, res map[string]string, logLevel string) (*proxyProc, error) {
	policyPath := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(policyPath, []byte(corkPolicy), 0o644); err != nil {
		return nil, err
	}
	caOut := filepath.Join(dir, "cork-ca.pem")
	// A port picked here rather than read from the "proxy listening" line:
	// that line is at info, and -cork-log-level warn must work too.
	listen, err := freePort()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "proxy")
	cmd.Env = corkEnv(dir, listen, res, logLevel)
	p := &proxyProc{name: "cork", cmd: cmd, done: make(chan struct{})}
	addr := make(chan string, 1)
	if err := p.start(func() { addr <- waitListening(listen, p.done) }); err != nil {
		return nil, err
	}
	if _, err := fmt.Fprintf(p.stdin, "{%q:%q}\n", slotName, realToken); err != nil {
		p.stop()
		return nil, fmt.Errorf("cork: write tokens: %w", err)
	}
	if err := p.waitAddr(addr); err != nil {
		return nil, err
	}
	ca, err := os.ReadFile(caOut)
	if err != nil {
		p.stop()
		return nil, fmt.Errorf("cork: CA: %w", err)
	}
	p.caPEM = ca
	return p, nil
}

// corkEnv is the environment of `cork proxy` as startCork runs it: the
// policy and CA paths in dir, tokens on stdin.
func corkEnv(dir, listen string, res map[string]string, logLevel string) []string {
	return []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + dir,
		"CORK_LISTEN=" + listen,
		"CORK_POLICY_FILE=" + filepath.Join(dir, "policy.yaml"),
		"CORK_TOKENS_FILE=-",
		"CORK_CA_OUT=" + filepath.Join(dir, "cork-ca.pem"),
		"CORK_UPSTREAM_CA_FILE=" + filepath.Join(dir, "upstream-ca.pem"),
		"CORK_ALLOW_PRIVATE=127.0.0.0/8",
		"CORK_RESOLVE=" + formatResolve(res),
		"CORK_LOG_LEVEL=" + logLevel,
	}
}

// startChild re-executes this binary as a proxy child (see child.go).
func startChild(mode, dir string, res map[string]string, extra ...string) (*proxyProc, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	args := append([]string{"-child", mode, "-child-dir", dir, "-child-resolve", formatResolve(res)}, extra...)
	cmd := exec.Command(self, args...)
	cmd.Env = append(os.Environ(), "HTTPS_PROXY=", "HTTP_PROXY=", "https_proxy=", "http_proxy=")
	p := &proxyProc{name: mode, cmd: cmd, done: make(chan struct{})}
	addr := make(chan string, 1)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := p.start(func() {
		a, err := readListening(stdout)
		if err == nil {
			addr <- a
		}
		io.Copy(io.Discard, stdout)
	}); err != nil {
		return nil, err
	}
	if err := p.waitAddr(addr); err != nil {
		return nil, err
	}
	caFile := map[string]string{"baseline": "baseline-ca.pem", "cork-inproc": "inproc-ca.pem"}[mode]
	if p.caPEM, err = os.ReadFile(filepath.Join(dir, caFile)); err != nil {
		p.stop()
		return nil, err
	}
	return p, nil
}

func (p *proxyProc) start(extra func()) error {
	// If the benchmark dies (Ctrl-C, a closed stdout), the proxy goes too.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		return err
	}
	if p.stdin, err = p.cmd.StdinPipe(); err != nil {
		return err
	}
	if err := p.cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", p.name, err)
	}
	go p.drain(stderr)
	if extra != nil {
		go extra()
	}
	go func() {
		p.cmd.Wait()
		close(p.done)
	}()
	return nil
}

func (p *proxyProc) waitAddr(addr <-chan string) error {
	select {
	case a := <-addr:
		if a == "" {
			return fmt.Errorf("%s exited before listening:\n%s", p.name, p.lastLines())
		}
		p.url = &url.URL{Scheme: "http", Host: a}
		return nil
	case <-p.done:
		return fmt.Errorf("%s exited before listening:\n%s", p.name, p.lastLines())
	case <-time.After(15 * time.Second):
		p.stop()
		return fmt.Errorf("%s did not start listening within 15s:\n%s", p.name, p.lastLines())
	}
}

// procStatusKB reads a "Vm*:" field of /proc/PID/status in KiB.
func procStatusKB(pid int, field string) int64 {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return -1
	}
	for _, line := range bytes.Split(data, []byte("\n")) {
		if v, ok := bytes.CutPrefix(line, []byte(field+":")); ok {
			f := strings.Fields(string(v))
			if len(f) > 0 {
				n, _ := strconv.ParseInt(f[0], 10, 64)
				return n
			}
		}
	}
	return -1
}

// resetPeakRSS resets VmHWM to the current RSS (Linux ≥ 4.0).
func resetPeakRSS(pid int) bool {
	return os.WriteFile("/proc/"+strconv.Itoa(pid)+"/clear_refs", []byte("5"), 0) == nil
}

// procCPU is the user+system CPU time of a process.
func procCPU(pid int) time.Duration {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	// Fields after the ")" that ends the command name: state is field 3;
	// utime and stime are fields 14 and 15 (clock ticks, USER_HZ = 100).
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond
}

// rssSampler records the highest VmRSS seen while it runs (a fallback
// where clear_refs is not permitted).
type rssSampler struct {
	stop chan struct{}
	done chan struct{}
	max  atomic.Int64
}

func sampleRSS(pid int, every time.Duration) *rssSampler {
	s := &rssSampler{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			if v := procStatusKB(pid, "VmRSS"); v > s.max.Load() {
				s.max.Store(v)
			}
			select {
			case <-s.stop:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

func (s *rssSampler) finish() int64 {
	close(s.stop)
	<-s.done
	return s.max.Load()
}

// freePort returns a loopback address with a port that was free a moment ago.
func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// waitListening returns addr once it accepts connections, or "" when done
// closes first (waitAddr then reports the exit).
func waitListening(addr string, done <-chan struct{}) string {
	for {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return addr
		}
		select {
		case <-done:
			return ""
		case <-time.After(20 * time.Millisecond):
		}
	}
}
