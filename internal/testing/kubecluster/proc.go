package kubecluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// proc is one component of the cluster, running as a child process that
// logs to its own file in the state directory.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error // cmd.Wait's result; read only after done is closed
}

// pathEnv is the PATH every component gets: kubelet, kube-proxy and
// kube-router run iptables, ipset and mount; containerd runs runc and its
// shim.
const pathEnv = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// spawn starts bin with args as the component name.
func (c *Cluster) spawn(name, bin string, args ...string) (*proc, error) {
	logPath := filepath.Join(c.dir, "logs", name+".log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("%s: open log: %w", name, err)
	}
	defer f.Close()
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = componentEnv()
	// Its own process group: a terminal's Ctrl-C reaches the test, which
	// then stops the components in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: start %s: %w", name, bin, err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	c.logf("started %s (pid %d)", name, cmd.Process.Pid)
	return p, nil
}

func componentEnv() []string {
	env := []string{pathEnv}
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "PATH", "KUBECONFIG", "CONTAINERD_ADDRESS", "CONTAINERD_NAMESPACE":
		default:
			env = append(env, kv)
		}
	}
	return env
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM, then SIGKILL after grace, and waits for the exit.
func (p *proc) stop(grace time.Duration) {
	if p.exited() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return
	case <-time.After(grace):
	}
	_ = p.cmd.Process.Kill()
	<-p.done
}

// tail returns the last n lines of the component's log.
func (p *proc) tail(n int) string {
	return tailFile(p.log, n)
}

func tailFile(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// errLogLines is how much of a component's log a startup error carries.
const errLogLines = 25

// waitFor polls check until it returns nil, one of procs exits, timeout
// passes or ctx ends. The error names what was awaited and carries the
// last lines of the first component's log (or of the one that exited).
func (c *Cluster) waitFor(ctx context.Context, what string, timeout time.Duration, check func(context.Context) error, procs ...*proc) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	start := time.Now()
	for {
		cctx, ccancel := context.WithTimeout(ctx, 2*time.Second)
		err := check(cctx)
		ccancel()
		if err == nil {
			c.logf("%s ready in %v", what, time.Since(start).Round(time.Millisecond))
			return nil
		}
		for _, p := range procs {
			if p.exited() {
				return fmt.Errorf("%s exited (%v) while waiting for %s; last lines of %s:\n%s", p.name, p.err, what, p.log, p.tail(errLogLines))
			}
		}
		select {
		case <-ctx.Done():
			msg := fmt.Sprintf("%s not ready after %v: %v", what, time.Since(start).Round(time.Millisecond), err)
			if len(procs) > 0 {
				msg += fmt.Sprintf("; last lines of %s:\n%s", procs[0].log, procs[0].tail(errLogLines))
			}
			return errors.New(msg)
		case <-tick.C:
		}
	}
}

// run runs a short helper command (ip, iptables, ctr) and returns its
// combined output in the error.
func run(ctx context.Context, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = componentEnv()
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return out, nil
}
