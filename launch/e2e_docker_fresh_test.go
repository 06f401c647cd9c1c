package launch_test

// End-to-end tests of docs/DOCKER.md's promises: sessions on a freshly started engine, a
// session whose cork is SIGKILLed, and the preflight that refuses a
// sandbox whose proxy does not answer. Same rules as e2e_docker_test.go:
// skipped outside CI without an engine or root, failed under CI=true.

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cork-sh/cork/internal/testing/testenv"
	"github.com/cork-sh/cork/launch"
	"github.com/cork-sh/cork/resolve"
)

// freshEngine starts a second Docker engine of the test's own: its own
// data and exec roots, socket, pidfile and containerd namespace, in a
// network namespace of its own so that its iptables rules never meet the
// host engine's (dockerd rewrites its chains at start). It loads images
// into it, then restarts it, and returns its DOCKER_HOST and the moment
// the restarted engine answered: a session started then is the first one
// on a fresh engine. Cleanup stops it and removes its state.
func freshEngine(t *testing.T, images ...string) (host string, ready time.Time) {
	t.Helper()
	for _, bin := range []string{"dockerd", "unshare", "ip"} {
		if _, err := exec.LookPath(bin); err != nil {
			testenv.Missing(t, "fresh engine: no %s in PATH", bin)
		}
	}
	dir, err := os.MkdirTemp("", "cork-fresh-engine-")
	if err != nil {
		t.Fatal(err)
	}
	host = "unix://" + filepath.Join(dir, "docker.sock")
	var proc *exec.Cmd
	start := func() time.Time {
		t.Helper()
		script := fmt.Sprintf("ip link set lo up && exec dockerd --data-root %[1]s/data --exec-root %[1]s/exec -H %[2]s --pidfile %[1]s/docker.pid"+
			" --default-address-pool base=10.213.0.0/16,size=24 --containerd-namespace cork-fresh --containerd-plugins-namespace cork-fresh-plugins", dir, host)
		proc = exec.Command("unshare", "--net", "--", "sh", "-c", script)
		log, err := os.OpenFile(filepath.Join(dir, "dockerd.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		defer log.Close()
		proc.Stdout, proc.Stderr = log, log
		proc.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := proc.Start(); err != nil {
			t.Fatalf("start dockerd: %v", err)
		}
		deadline := time.Now().Add(60 * time.Second)
		for time.Now().Before(deadline) {
			if exec.Command("docker", "-H", host, "version", "--format", "{{.Server.Version}}").Run() == nil {
				return time.Now()
			}
			time.Sleep(20 * time.Millisecond)
		}
		b, _ := os.ReadFile(filepath.Join(dir, "dockerd.log"))
		t.Fatalf("the fresh engine did not answer within 60s; its log ends:\n%s", tail(string(b), 20))
		return time.Time{}
	}
	stop := func() {
		if proc == nil || proc.Process == nil {
			return
		}
		proc.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { proc.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			syscall.Kill(-proc.Process.Pid, syscall.SIGKILL)
			<-done
		}
		proc = nil
	}
	t.Cleanup(func() {
		// Its containers first, so that nothing of it stays mounted.
		if ids, _ := exec.Command("docker", "-H", host, "ps", "-aq").Output(); len(strings.TrimSpace(string(ids))) > 0 {
			exec.Command("docker", append([]string{"-H", host, "rm", "-f"}, strings.Fields(string(ids))...)...).Run()
		}
		stop()
		exec.Command("umount", "-R", filepath.Join(dir, "exec")).Run()
		os.RemoveAll(dir)
	})
	start()
	for _, img := range images {
		save := exec.Command("docker", "save", img)
		load := exec.Command("docker", "-H", host, "load", "--quiet")
		pipe, err := save.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		load.Stdin = pipe
		if err := save.Start(); err != nil {
			t.Fatal(err)
		}
		if out, err := load.CombinedOutput(); err != nil {
			t.Fatalf("load %s into the fresh engine: %v\n%s", img, err, out)
		}
		if err := save.Wait(); err != nil {
			t.Fatalf("docker save %s: %v", img, err)
		}
	}
	stop()
	return host, start()
}

func tail(s string, n int) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

// freshRequestBound bounds a fresh-engine session from its agent's start
// to Run's return.
const freshRequestBound = 45 * time.Second

// TestDockerFreshEngineSessions runs 20 sessions back to back on an
// engine started for the test, the first as soon as it answers: each
// makes an intercepted request through the proxy, which must reach the
// upstream with the real token (within freshRequestBound, teardown
// included). It logs the session
// start times (Run called to agent started), for docs/PERFORMANCE.md.
func TestDockerFreshEngineSessions(t *testing.T) {
	requireDocker(t)
	sidecarImage, apiImage, agentImage := images(t)
	host, ready := freshEngine(t, sidecarImage, apiImage, agentImage)
	t.Setenv("DOCKER_HOST", host) // every helper, and hostEnv, now use it

	// The upstream first (a network and a container): the sessions need
	// it. Then the first session at once.
	up := startUpstream(t, apiImage)
	const sessions = 20
	var starts, requests []time.Duration
	var failed int
	for i := range sessions {
		real := "e2e-real-fresh-" + randHex(12)
		plan := e2ePlan()
		plan.ProvisionedEnv[e2eTokenEnv] = resolve.NewSecret(real)
		var stdout, stderr syncBuffer
		var sandboxAt time.Time
		spec := &launch.Spec{
			Plan:    plan,
			HostEnv: hostEnv(nil),
			Command: []string{"/fakeagent", "probe", "-api", "https://" + e2eAPIHost + "/v1/echo", "-token-env", "FAKE_API_TOKEN"},
			Image:   agentImage,
			Stdout:  &stdout,
			Stderr:  &stderr,
			Progress: func(msg string) {
				if strings.HasPrefix(msg, "sandbox ready") {
					sandboxAt = time.Now()
				}
			},
		}
		if i == 0 {
			t.Logf("session 1 starts %v after the engine answered", time.Since(ready).Round(time.Millisecond))
		}
		spec.Proxy.Settings = parseSettings(t, map[string]string{"CORK_UPSTREAM_CA_FILE": up.caFile, "CORK_ALLOW_PRIVATE": up.subnet})
		d := &launch.Docker{SidecarImage: sidecarImage, Networks: []string{up.network}}
		begin := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		code, err := d.Run(ctx, launchResolved(spec))
		cancel()
		end := time.Now()
		out := stdout.String()
		sum := sha256.Sum256([]byte("Bearer " + real))
		ok := err == nil && code == 0 && strings.Contains(out, "API status=200") && strings.Contains(out, hex.EncodeToString(sum[:])) && !sandboxAt.IsZero()
		// An agent that cannot reach its proxy fails above (its request
		// has a 20 s timeout of its own, and no 200). This bound catches
		// a session that stalls around it, teardown included, with room
		// for a loaded machine: CI runs the kubernetes suite's 20
		// concurrent sessions on the same 2 cores. The figures are logged
		// below for docs/PERFORMANCE.md.
		if ok && end.Sub(sandboxAt) > freshRequestBound {
			ok = false
			t.Errorf("session %d: the agent's request took %v", i+1, end.Sub(sandboxAt))
		}
		if !ok {
			failed++
			t.Errorf("session %d: Run = %d, %v; agent stdout:\n%s\nstderr:\n%s", i+1, code, err, out, stderr.String())
			continue
		}
		starts = append(starts, sandboxAt.Sub(begin))
		requests = append(requests, end.Sub(sandboxAt))
	}
	t.Logf("fresh engine: %d of %d sessions made their intercepted request", sessions-failed, sessions)
	if len(starts) > 0 {
		slices.Sort(starts)
		slices.Sort(requests)
		t.Logf("session start (Run called to agent started): median %v, max %v; agent run with its request: median %v, max %v",
			starts[len(starts)/2].Round(time.Millisecond), starts[len(starts)-1].Round(time.Millisecond),
			requests[len(requests)/2].Round(time.Millisecond), requests[len(requests)-1].Round(time.Millisecond))
	}
	if left := leftovers(t, "label="+launch.Label); len(left) > 0 {
		t.Errorf("left on the fresh engine: %v", left)
	}
}

// corkRun starts `cork run --backend docker` with env and returns it with
// its output buffers. Extra PATH entries come first.
func corkRun(t *testing.T, env map[string]string, args ...string) (*exec.Cmd, *syncBuffer, *syncBuffer, <-chan struct{}) {
	t.Helper()
	cmd := exec.Command(e2eImages.corkBin, append([]string{"run", "--backend", "docker"}, args...)...)
	base := map[string]string{"HOME": t.TempDir(), "PATH": os.Getenv("PATH"), "OPENAI_API_KEY": "sk-e2e-" + randHex(16)}
	for _, kv := range os.Environ() {
		if k, v, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "DOCKER_") {
			base[k] = v
		}
	}
	for k, v := range env {
		base[k] = v
	}
	for k, v := range base {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var stdout, stderr syncBuffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	// A SIGKILLed cork leaves docker clients (the agent's attach) that
	// hold its output pipes until their container is removed.
	cmd.WaitDelay = 2 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
	})
	return cmd, &stdout, &stderr, done
}

var janitorRE = regexp.MustCompile(`session ([0-9a-f]{12}): janitor pid (\d+)`)

// killedSession starts a session that sleeps, waits until its agent is
// up, and returns its id and its janitor's pid, and the running cork.
func killedSession(t *testing.T) (session string, janitor int, cork *exec.Cmd, done <-chan struct{}) {
	t.Helper()
	sidecarImage, _, agentImage := images(t)
	cmd, stdout, stderr, done := corkRun(t, map[string]string{"CORK_SIDECAR_IMAGE": sidecarImage},
		"--agent", "codex", "--image", agentImage, "--", "/fakeagent", "sleep")
	if !stdout.waitFor("READY", 1, 90*time.Second, done) {
		t.Fatalf("the sandbox never got ready\nstdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
	}
	m := janitorRE.FindStringSubmatch(stderr.String())
	if m == nil {
		t.Fatalf("no janitor line in cork's progress:\n%s", stderr.String())
	}
	janitor, _ = strconv.Atoi(m[2])
	return m[1], janitor, cmd, done
}

// sessionObjects counts a session's labelled containers, networks and
// volumes.
func sessionObjects(t *testing.T, session string) map[string]int {
	t.Helper()
	f := "label=" + launch.LabelSession + "=" + session
	n := map[string]int{}
	for kind, args := range map[string][]string{
		"container": {"ps", "--all", "--quiet", "--filter", f},
		"network":   {"network", "ls", "--quiet", "--filter", f},
		"volume":    {"volume", "ls", "--quiet", "--filter", f},
	} {
		n[kind] = len(strings.Fields(docker(t, args...)))
	}
	return n
}

// waitGone polls until the session has no labelled object, or d passes.
func waitGone(t *testing.T, session string, d time.Duration) (time.Duration, bool) {
	t.Helper()
	start := time.Now()
	for time.Since(start) < d {
		if len(leftovers(t, "label="+launch.LabelSession+"="+session)) == 0 {
			return time.Since(start), true
		}
		time.Sleep(200 * time.Millisecond)
	}
	return time.Since(start), false
}

// TestDockerKilledSession SIGKILLs `cork run` while its agent runs: its
// janitor removes the session on its own; with the janitor killed too,
// the sidecar still ends (its token stream closed), and `cork gc`, or the
// next `cork run`, removes every labelled container, network and volume.
func TestDockerKilledSession(t *testing.T) {
	requireDocker(t)
	want := map[string]int{"container": 2, "network": 2, "volume": 1}

	t.Run("janitor", func(t *testing.T) {
		session, janitor, cork, done := killedSession(t)
		if got := sessionObjects(t, session); !mapsEqual(got, want) {
			t.Fatalf("session %s holds %v, want %v", session, got, want)
		}
		cork.Process.Kill()
		<-done
		took, ok := waitGone(t, session, 30*time.Second)
		if !ok {
			t.Fatalf("30s after cork was SIGKILLed, session %s still holds %v", session, sessionObjects(t, session))
		}
		t.Logf("the janitor (pid %d) removed session %s %v after SIGKILL", janitor, session, took.Round(time.Millisecond))
		// Its last steps (the session directory, its exit) follow the
		// engine's objects: give them a moment.
		for deadline := time.Now().Add(5 * time.Second); pidRunning(janitor) && time.Now().Before(deadline); {
			time.Sleep(50 * time.Millisecond)
		}
		if pidRunning(janitor) {
			t.Errorf("the janitor (pid %d) is still running 5s after its work", janitor)
		}
	})

	for _, collector := range []string{"cork gc", "next cork run"} {
		t.Run(collector, func(t *testing.T) {
			session, janitor, cork, done := killedSession(t)
			// Without its janitor, the session stays until collected.
			syscall.Kill(janitor, syscall.SIGKILL)
			cork.Process.Kill()
			<-done
			proxy := "cork-" + session + "-proxy"
			deadline := time.Now().Add(20 * time.Second)
			for docker(t, "inspect", "--format", "{{.State.Running}}", proxy) == "true" {
				if time.Now().After(deadline) {
					t.Fatalf("the sidecar %s still runs 20s after its token stream closed", proxy)
				}
				time.Sleep(200 * time.Millisecond)
			}
			if got := sessionObjects(t, session); !mapsEqual(got, want) {
				t.Fatalf("after SIGKILL, session %s holds %v, want %v (something else removed them?)", session, got, want)
			}
			var report string
			switch collector {
			case "cork gc":
				dry, err := exec.Command(e2eImages.corkBin, "gc", "--dry-run").CombinedOutput()
				if err != nil {
					t.Fatalf("cork gc --dry-run: %v\n%s", err, dry)
				}
				if n := strings.Count(string(dry), "(session "+session+")"); n != 5 {
					t.Errorf("cork gc --dry-run lists %d objects of session %s, want 5:\n%s", n, session, dry)
				}
				if got := sessionObjects(t, session); !mapsEqual(got, want) {
					t.Fatalf("cork gc --dry-run removed something: session holds %v", got)
				}
				out, err := exec.Command(e2eImages.corkBin, "gc").CombinedOutput()
				if err != nil {
					t.Fatalf("cork gc: %v\n%s", err, out)
				}
				report = string(out)
			case "next cork run":
				sidecarImage, _, agentImage := images(t)
				_, _, stderr, done := corkRun(t, map[string]string{"CORK_SIDECAR_IMAGE": sidecarImage},
					"--agent", "codex", "--image", agentImage, "--", "/fakeagent", "probe")
				select {
				case <-done:
				case <-time.After(90 * time.Second):
					t.Fatalf("the next cork run did not finish:\n%s", stderr.String())
				}
				report = stderr.String()
				if !strings.Contains(report, "removed what ended sessions left behind") || !strings.Contains(report, session) {
					t.Errorf("the next cork run did not report removing session %s:\n%s", session, report)
				}
			}
			t.Logf("%s reported:\n%s", collector, report)
			if left := leftovers(t, "label="+launch.LabelSession+"="+session); len(left) > 0 {
				t.Errorf("after %s, session %s left %v", collector, session, left)
			}
		})
	}
}

func mapsEqual(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// pidRunning reports whether pid is a live process (not a zombie).
func pidRunning(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(b), ')')
	return i > 0 && !strings.HasPrefix(strings.TrimSpace(string(b[i+1:])), "Z")
}

// TestDockerPreflightRefusesDeadProxy: a sidecar that says it is ready but
// whose proxy does not listen where the sandbox would reach it (here: on
// another port) makes `cork run` exit 2 with one line naming what did
// not answer, before any agent container exists, and leave nothing.
func TestDockerPreflightRefusesDeadProxy(t *testing.T) {
	requireDocker(t)
	sidecarImage, _, agentImage := images(t)
	deaf := "cork-e2e/sidecar-deaf:test"
	ctxDir := t.TempDir()
	dockerfile := fmt.Sprintf("FROM %s\nENTRYPOINT [\"/cork\", \"proxy\", \"--listen\", \"0.0.0.0:3999\"]\n", sidecarImage)
	if err := os.WriteFile(filepath.Join(ctxDir, "Dockerfile"), []byte(dockerfile), 0o644); err != nil {
		t.Fatal(err)
	}
	docker(t, "build", "--quiet", "--tag", deaf, ctxDir)
	cli, argvLog := recordingCLI(t)
	start := time.Now()
	cmd, stdout, stderr, done := corkRun(t, map[string]string{
		"CORK_SIDECAR_IMAGE": deaf,
		"PATH":               filepath.Dir(cli) + string(os.PathListSeparator) + os.Getenv("PATH"),
	}, "--quiet", "--agent", "codex", "--image", agentImage, "--", "/fakeagent", "probe")
	select {
	case <-done:
	case <-time.After(90 * time.Second):
		t.Fatalf("cork run did not give up:\n%s", stderr.String())
	}
	t.Logf("cork run gave up after %v:\n%s", time.Since(start).Round(time.Millisecond), stderr.String())
	if code := cmd.ProcessState.ExitCode(); code != 2 {
		t.Errorf("exit status %d, want 2", code)
	}
	// cork's own lines; the others are the sidecar's log, relayed.
	var lines []string
	for _, l := range strings.Split(stderr.String(), "\n") {
		if strings.HasPrefix(l, "cork: ") {
			lines = append(lines, l)
		}
	}
	if len(lines) != 1 || !strings.Contains(lines[0], "did not answer") || !regexp.MustCompile(`\d+\.\d+\.\d+\.\d+:3128`).MatchString(lines[0]) {
		t.Errorf("stderr: want one line saying which proxy address did not answer, got:\n%s", stderr.String())
	}
	if stdout.String() != "" {
		t.Errorf("the agent ran: stdout %q", stdout.String())
	}
	argv := readFile(t, argvLog)
	sc := bufio.NewScanner(strings.NewReader(argv))
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "create ") && strings.Contains(sc.Text(), launch.LabelRole+"=sandbox") {
			t.Errorf("an agent container was created: %s", sc.Text())
		}
	}
	if !strings.Contains(argv, "probe") {
		t.Errorf("no probe container was run:\n%s", argv)
	}
	if left := leftovers(t, "label="+launch.LabelPID+"="+strconv.Itoa(cmd.Process.Pid)); len(left) > 0 {
		t.Errorf("left behind: %v", left)
	}
}
