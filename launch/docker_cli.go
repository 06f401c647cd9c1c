package launch

import (
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"os/exec"
	"sort"
	"strings"
)

// dockerCLI runs the docker command-line client. It talks to whatever
// engine the host's DOCKER_* variables and docker context select: cork
// never overrides them.
type dockerCLI struct {
	path string
	env  []string
}

// dockerCLIEnv are the host variables the docker client may need besides
// DOCKER_*: where its config and contexts live, and the agent socket for
// ssh:// engines. Nothing else of the host environment (which holds the
// real credentials) reaches the client.
var dockerCLIEnv = []string{"PATH", "HOME", "USER", "XDG_CONFIG_HOME", "XDG_RUNTIME_DIR", "SSH_AUTH_SOCK", "TMPDIR"}

// newDockerCLI finds the client (bin, or "docker" in PATH) and builds its
// environment from hostEnv.
func newDockerCLI(bin string, hostEnv map[string]string) (*dockerCLI, error) {
	if bin == "" {
		bin = "docker"
	}
	path, err := exec.LookPath(bin)
	if err != nil {
		return nil, fmt.Errorf("docker: the docker client %q was not found: install it (Debian: apt-get install docker.io) or put it in PATH", bin)
	}
	return &dockerCLI{path: path, env: dockerEnv(hostEnv)}, nil
}

// dockerEnv is the docker client's environment, sorted.
func dockerEnv(hostEnv map[string]string) []string {
	keep := map[string]string{}
	for _, k := range dockerCLIEnv {
		if v, ok := hostEnv[k]; ok {
			keep[k] = v
		}
	}
	for k, v := range hostEnv {
		if strings.HasPrefix(k, "DOCKER_") {
			keep[k] = v
		}
	}
	out := make([]string, 0, len(keep))
	for k, v := range keep {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

// command returns a docker command. It runs in its own process group so
// that a Ctrl-C on the terminal reaches cork, which then tears down in
// order, and not every docker client at once.
func (c *dockerCLI) command(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, c.path, args...)
	cmd.Env = c.env
	ownProcessGroup(cmd)
	return cmd
}

// output runs docker with args and returns its trimmed standard output. An
// error names the subcommand and carries the client's first line of error
// output.
func (c *dockerCLI) output(ctx context.Context, args ...string) (string, error) {
	return c.outputEnv(ctx, nil, args...)
}

// outputEnv is output with extra K=V variables in the client's
// environment, for values that must not appear in argv: `--env NAME`
// without a value makes docker take it from there.
func (c *dockerCLI) outputEnv(ctx context.Context, extra []string, args ...string) (string, error) {
	var stdout, stderr bytes.Buffer
	cmd := c.command(ctx, args...)
	cmd.Env = append(append([]string(nil), c.env...), extra...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", &dockerError{args: args, msg: errorLine(stderr.String()), err: err}
	}
	return strings.TrimSpace(stdout.String()), nil
}

// lines runs docker with args and returns its non-empty output lines.
func (c *dockerCLI) lines(ctx context.Context, args ...string) ([]string, error) {
	out, err := c.output(ctx, args...)
	if err != nil {
		return nil, err
	}
	var ls []string
	for _, l := range strings.Split(out, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			ls = append(ls, l)
		}
	}
	return ls, nil
}

// dockerError is a failed docker client command.
type dockerError struct {
	args []string
	msg  string // the client's first line of error output
	err  error
}

func (e *dockerError) Error() string {
	sub := e.args
	if len(sub) > 2 {
		sub = sub[:2]
	}
	if e.msg == "" {
		return fmt.Sprintf("docker %s: %v", strings.Join(sub, " "), e.err)
	}
	return fmt.Sprintf("docker %s: %s", strings.Join(sub, " "), e.msg)
}

func (e *dockerError) Unwrap() error { return e.err }

// notFound reports whether the engine answered that the object does not
// exist (as opposed to being unreachable).
func notFound(err error) bool {
	var de *dockerError
	if !errors.As(err, &de) {
		return false
	}
	m := strings.ToLower(de.msg)
	return strings.Contains(m, "no such") || strings.Contains(m, "not found")
}

// errorLine is the first line of a client's error output that is not one
// of its warnings (e.g. "WARNING: Localhost DNS (127.0.0.1) may fail in
// containers." for --dns 127.0.0.1), or the first line.
func errorLine(s string) string {
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "WARNING:") {
			return l
		}
	}
	return firstLine(s)
}

func firstLine(s string) string {
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			return l
		}
	}
	return ""
}

// mountArg renders a --mount value. Fields are CSV-quoted so that paths
// with commas, colons or quotes survive (docker parses --mount as CSV).
func mountArg(typ, src, dst string, readOnly bool, opts ...string) string {
	fields := []string{"type=" + typ, "source=" + src, "target=" + dst}
	if readOnly {
		fields = append(fields, "readonly")
	}
	fields = append(fields, opts...)
	var b strings.Builder
	w := csv.NewWriter(&b)
	w.Write(fields)
	w.Flush()
	return strings.TrimSuffix(b.String(), "\n")
}
