package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The dockerstart phase times `cork run --backend docker -- /mark` against
// `docker run --rm IMAGE /mark` of the same image, to mark's first
// instruction (it writes the wall clock first thing) and to the exit. No
// registry is reachable, so both images are built here FROM scratch
// (docs/DOCKER.md): the sidecar from the repository's Dockerfile around
// cork built with CGO_ENABLED=0, the agent around mark. The phase removes
// the images, and whatever a session left behind, at its end.

// dockerVariants are the ways of starting the container, in report order.
var dockerVariants = []string{"docker", "cork"}

// dockerMarks are the moments of one `cork run --backend docker`, keyed
// by the line that shows them on its stderr, in order.
var dockerMarks = []struct {
	key string
	re  *regexp.Regexp
}{
	{"create", regexp.MustCompile(`docker: creating session `)},
	{"listen", regexp.MustCompile(`"msg":"proxy listening"`)},
	{"probe", regexp.MustCompile(`docker: preflight: the proxy answered`)},
	{"up", regexp.MustCompile(` up; the sandbox reaches it at `)},
	{"ready", regexp.MustCompile(`sandbox ready; running `)},
	{"exited", regexp.MustCompile(`sandbox exited with status `)},
	{"removed", regexp.MustCompile(`docker: session [0-9a-f]+ removed`)},
}

// dockerSteps are the steps between the marks, with what each covers.
var dockerSteps = []struct {
	from, to, what string
}{
	{"start", "create", "preflight: plan and policy checked, `docker version`, both images inspected, ended sessions' leftovers looked for"},
	{"create", "listen", "two networks and the CA volume created, the janitor started, the sidecar created, joined to the sandbox network and started, to its \"proxy listening\" (the sidecar's own log time)"},
	{"listen", "probeStart", "the token map applied, cork reading the sidecar's ready line, the sidecar's address inspected"},
	{"probeStart", "probe", "the preflight probe: a container of the sidecar image run on the sandbox network until the proxy answered (the time cork's line gives)"},
	{"probe", "up", "the session CA fetched from the sidecar"},
	{"up", "ready", "the sandbox container created"},
	{"ready", "first", "the sandbox container started, to the command's first instruction"},
	{"first", "exited", "the command's first instruction to cork seeing the container exit"},
	{"exited", "removed", "teardown: the token stream closed, the containers, networks and volume removed"},
	{"removed", "end", "cork's exit after the teardown"},
}

var (
	sessionIDRE = regexp.MustCompile(`docker: creating session ([0-9a-f]+)`)
	probeTookRE = regexp.MustCompile(`the proxy answered on the sandbox network in (\S+) \(`)
)

// dockerSample is one run of one variant.
type dockerSample struct {
	first, whole time.Duration
	marks        map[string]time.Duration // cork only: dockerMarks' keys, "first", "end"
	engine       map[string]time.Duration // container role → the engine's create → start (engineStarts)
}

// engineEvent is one line of `docker events --format '{{json .}}'`.
type engineEvent struct {
	Type   string `json:"Type"`
	Action string `json:"Action"`
	Actor  struct {
		Attributes map[string]string `json:"Attributes"`
	} `json:"Actor"`
	TimeNano int64 `json:"timeNano"`
}

// engineEvents is what the engine reported between since and until.
func engineEvents(since, until time.Time) ([]engineEvent, error) {
	arg := func(t time.Time) string { return fmt.Sprintf("%d.%09d", t.Unix(), t.Nanosecond()) }
	out, err := exec.Command("docker", "events", "--since", arg(since), "--until", arg(until), "--format", "{{json .}}").Output()
	if err != nil {
		return nil, fmt.Errorf("docker events: %w", err)
	}
	var evs []engineEvent
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		var e engineEvent
		if json.Unmarshal([]byte(line), &e) == nil {
			evs = append(evs, e)
		}
	}
	return evs, nil
}

// engineStarts is, for each container that role names, the time from
// its "create" event to its "start" event: the engine's own work
// (network endpoints, mounts, the runtime) before the process runs.
func engineStarts(evs []engineEvent, role func(name, image string) string) map[string]time.Duration {
	created := map[string]int64{}
	out := map[string]time.Duration{}
	for _, e := range evs {
		if e.Type != "container" {
			continue
		}
		r := role(e.Actor.Attributes["name"], e.Actor.Attributes["image"])
		if r == "" {
			continue
		}
		switch e.Action {
		case "create":
			created[r] = e.TimeNano
		case "start":
			if c, ok := created[r]; ok {
				out[r] = time.Duration(e.TimeNano - c)
			}
		}
	}
	return out
}

// engineRoles are the containers engineStarts reports, in report order.
var engineRoles = []struct{ key, what string }{
	{"run", "`docker run`'s container"},
	{"proxy", "cork's sidecar (`cork-ID-proxy`)"},
	{"probe", "cork's preflight probe (`cork-ID-probe`)"},
	{"sandbox", "cork's sandbox (`cork-ID-sandbox`)"},
}

// roleOf names the container of variant v, session id, or "".
func (d *dockerEnv) roleOf(v, id string) func(name, image string) string {
	return func(name, image string) string {
		if v == "docker" {
			if image == d.agent && !strings.HasPrefix(name, "cork-") {
				return "run"
			}
			return ""
		}
		if id == "" {
			return ""
		}
		if r, ok := strings.CutPrefix(name, "cork-"+id+"-"); ok {
			return r
		}
		return ""
	}
}

// dockerEnv is what the phase's runs share.
type dockerEnv struct {
	dir       string
	cork      string // built with CGO_ENABLED=0, the same binary as in the sidecar
	sidecar   string // image tags
	agent     string
	env       []string
	sessions  []string // cork session ids seen, for the final clean-up
	engine    string   // docker's server and client versions
	sessionMu sync.Mutex
}

// dockerMissing says why the phase cannot run, or "".
func dockerMissing() string {
	if _, err := exec.LookPath("docker"); err != nil {
		return "no docker client on PATH"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "docker", "info", "--format", "{{.ServerVersion}}").CombinedOutput(); err != nil {
		return "`docker info` failed (no reachable engine): " + firstLineOf(string(out))
	}
	return ""
}

func firstLineOf(s string) string {
	l, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return l
}

// newDockerEnv builds cork and mark statically and the two images.
func newDockerEnv(o options) (*dockerEnv, error) {
	dir, err := os.MkdirTemp("", "cork-bench-docker-")
	if err != nil {
		return nil, err
	}
	tag := randomHex(4)
	d := &dockerEnv{dir: dir, sidecar: "cork-bench-sidecar:" + tag, agent: "cork-bench-agent:" + tag}
	root, err := moduleRoot()
	if err != nil {
		d.close()
		return nil, err
	}
	sideCtx, agentCtx, home := filepath.Join(dir, "sidecar"), filepath.Join(dir, "agent"), filepath.Join(dir, "home")
	for _, p := range []string{filepath.Join(sideCtx, "bin"), agentCtx, home} {
		if err := os.MkdirAll(p, 0o755); err != nil {
			d.close()
			return nil, err
		}
	}
	// The host's cork (`cork run`) is the whole binary; the sidecar
	// image's is built as `make image` builds it, without the kubernetes
	// backend.
	d.cork = filepath.Join(d.dir, "cork")
	if o.corkBin != "" {
		data, err := os.ReadFile(o.corkBin)
		if err == nil {
			err = os.WriteFile(d.cork, data, 0o755)
		}
		if err != nil {
			d.close()
			return nil, fmt.Errorf("-cork-bin: %w", err)
		}
	}
	logf("building cork, cork -tags nokube and mark (CGO_ENABLED=0) and the images %s, %s", d.sidecar, d.agent)
	for _, b := range []struct {
		out, pkg string
		tags     []string
	}{
		{d.cork, "./cmd/cork", nil},
		{filepath.Join(sideCtx, "bin", "cork-sidecar"), "./cmd/cork", []string{"-tags", "nokube"}},
		{filepath.Join(agentCtx, "mark"), "./cmd/corkbench/mark", nil},
	} {
		if b.out == d.cork && o.corkBin != "" {
			continue
		}
		build := exec.Command("go", append(append([]string{"build"}, b.tags...), "-trimpath", "-o", b.out, b.pkg)...)
		build.Dir = root
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			d.close()
			return nil, fmt.Errorf("go build %s: %w\n%s", b.pkg, err, out)
		}
	}
	if err := os.WriteFile(filepath.Join(agentCtx, "Dockerfile"), []byte("FROM scratch\nCOPY mark /mark\n"), 0o644); err != nil {
		d.close()
		return nil, err
	}
	for _, b := range [][]string{
		{"build", "--quiet", "--tag", d.sidecar, "--file", filepath.Join(root, "Dockerfile"), sideCtx},
		{"build", "--quiet", "--tag", d.agent, agentCtx},
	} {
		if out, err := exec.Command("docker", b...).CombinedOutput(); err != nil {
			d.close()
			return nil, fmt.Errorf("docker %s: %w\n%s", strings.Join(b, " "), err, out)
		}
	}
	d.env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + home, "STARTUP_VAR=bench-not-a-secret"}
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "DOCKER_") {
			d.env = append(d.env, kv)
		}
	}
	server, _ := exec.Command("docker", "version", "--format", "{{.Server.Version}}").Output()
	client, _ := exec.Command("docker", "version", "--format", "{{.Client.Version}}").Output()
	d.engine = fmt.Sprintf("engine %s, client %s", strings.TrimSpace(string(server)), strings.TrimSpace(string(client)))
	return d, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// close removes what any session of the phase left behind, the images
// and the scratch directory.
func (d *dockerEnv) close() {
	for _, id := range d.sessions {
		filter := "label=cork.session=" + id
		for _, kind := range [][2]string{{"container", "ps"}, {"network", "ls"}, {"volume", "ls"}} {
			list := []string{kind[0], kind[1], "--quiet", "--filter", filter}
			if kind[0] == "container" {
				list = []string{"ps", "--all", "--quiet", "--filter", filter}
			}
			out, _ := exec.Command("docker", list...).Output()
			ids := strings.Fields(string(out))
			if len(ids) == 0 {
				continue
			}
			logf("dockerstart: removing what session %s left: %s %s", id, kind[0], strings.Join(ids, " "))
			rm := append([]string{kind[0], "rm", "--force"}, ids...)
			if kind[0] == "network" {
				rm = append([]string{"network", "rm"}, ids...)
			}
			exec.Command("docker", rm...).Run()
		}
	}
	if d.sidecar != "" {
		exec.Command("docker", "image", "rm", "--force", d.sidecar, d.agent).Run()
	}
	os.RemoveAll(d.dir)
}

// argv is the command line of variant v.
func (d *dockerEnv) argv(v string) []string {
	if v == "cork" {
		return []string{d.cork, "run", "--backend", "docker", "--image", d.agent, "--sidecar-image", d.sidecar,
			"--inject", "api.example.com=STARTUP_VAR", "--", "/mark"}
	}
	return []string{"docker", "run", "--rm", d.agent, "/mark"}
}

// stampedLine is a stderr line and when it arrived, since the start.
type stampedLine struct {
	at   time.Duration
	text string
}

// sample runs variant v once: mark's timestamp and the exit, and for
// cork the moments its stderr shows.
func (d *dockerEnv) sample(v string) (dockerSample, error) {
	argv := d.argv(v)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = d.env
	cmd.Dir = d.dir
	var out bytes.Buffer
	cmd.Stdout = &out
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return dockerSample{}, err
	}
	var lines []stampedLine
	read := make(chan struct{})
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		return dockerSample{}, err
	}
	go func() {
		defer close(read)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			lines = append(lines, stampedLine{time.Since(t0), sc.Text()})
		}
	}()
	<-read
	err = cmd.Wait()
	whole := time.Since(t0)
	var all []string
	for _, l := range lines {
		all = append(all, l.text)
	}
	id := ""
	if m := sessionIDRE.FindStringSubmatch(strings.Join(all, "\n")); m != nil {
		id = m[1]
		d.sessionMu.Lock()
		d.sessions = append(d.sessions, id)
		d.sessionMu.Unlock()
	}
	if err != nil {
		return dockerSample{}, fmt.Errorf("%s: %w; stderr:\n%s", strings.Join(argv, " "), err, tail(strings.Join(all, "\n"), 20))
	}
	ns, err := strconv.ParseInt(strings.TrimSpace(out.String()), 10, 64)
	if err != nil {
		return dockerSample{}, fmt.Errorf("%s: stdout %q is not a timestamp", strings.Join(argv, " "), out.String())
	}
	s := dockerSample{first: time.Unix(0, ns).Sub(t0), whole: whole}
	// The engine's events are a breakdown, not the measure: without them
	// the sample stands.
	if evs, err := engineEvents(t0.Add(-time.Millisecond), time.Now()); err == nil {
		s.engine = engineStarts(evs, d.roleOf(v, id))
	} else {
		logf("dockerstart: %v", err)
	}
	if v == "cork" {
		s.marks = markTimes(lines, t0)
		s.marks["first"], s.marks["end"] = s.first, whole
	}
	return s, nil
}

// markTimes finds dockerMarks in lines: the first line holding each. A
// sidecar log line (JSON) gives its own "time", which its log buffer and
// cork's relay do not delay.
func markTimes(lines []stampedLine, t0 time.Time) map[string]time.Duration {
	m := map[string]time.Duration{"start": 0}
	for _, mk := range dockerMarks {
		for _, l := range lines {
			if !mk.re.MatchString(l.text) {
				continue
			}
			m[mk.key] = l.at
			if at, ok := jsonTime(l.text); ok {
				m[mk.key] = at.Sub(t0)
			}
			if p := probeTookRE.FindStringSubmatch(l.text); p != nil {
				if d, err := time.ParseDuration(p[1]); err == nil {
					m["probeStart"] = l.at - d
				}
			}
			break
		}
	}
	return m
}

// jsonTime is the "time" field of a zerolog JSON line.
func jsonTime(line string) (time.Time, bool) {
	_, after, ok := strings.Cut(line, `"time":"`)
	if !ok {
		return time.Time{}, false
	}
	v, _, ok := strings.Cut(after, `"`)
	if !ok {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	return t, err == nil
}

// dockerReport is the phase's figures.
type dockerReport struct {
	started time.Time
	elapsed time.Duration
	machine string
	engine  string
	rounds  int
	skipped string // why the phase did not run, or ""
	samples map[string][]dockerSample
}

// runDockerStart runs the dockerstart phase and writes its report to out.
// Without a reachable engine it writes a one-line note instead.
func runDockerStart(o options, out io.Writer) error {
	t0 := time.Now()
	rep := &dockerReport{started: t0, machine: machineInfo(), rounds: o.dockerRounds, samples: map[string][]dockerSample{}}
	if rep.skipped = dockerMissing(); rep.skipped != "" {
		logf("dockerstart phase skipped: %s", rep.skipped)
		rep.write(out)
		return nil
	}
	d, err := newDockerEnv(o)
	if err != nil {
		return fmt.Errorf("dockerstart: %w", err)
	}
	defer d.close()
	rep.engine = d.engine
	// One round not counted: the first runs fill the page cache and the
	// engine's caches.
	for r := -1; r < o.dockerRounds; r++ {
		for i := range dockerVariants {
			v := dockerVariants[(i+max(r, 0))%len(dockerVariants)]
			x, err := d.sample(v)
			if err != nil {
				return fmt.Errorf("dockerstart %s: %w", v, err)
			}
			if r < 0 {
				continue
			}
			rep.samples[v] = append(rep.samples[v], x)
			logf("dockerstart round %d %-6s first instruction %8s, whole run %8s", r+1, v, fmtMS(x.first), fmtMS(x.whole))
		}
	}
	rep.elapsed = time.Since(t0)
	rep.write(out)
	return nil
}

func (r *dockerReport) field(v string, f func(dockerSample) time.Duration) []time.Duration {
	return pick(r.samples[v], f)
}

// added is, per round, cork − docker of one figure.
func (r *dockerReport) added(f func(dockerSample) time.Duration) []time.Duration {
	return diffs(r.field("cork", f), r.field("docker", f))
}

func (r *dockerReport) write(w io.Writer) {
	fmt.Fprintf(w, "### Docker sandbox start-up, run %s\n\n", r.started.UTC().Format("2006-01-02 15:04 MST"))
	if r.skipped != "" {
		fmt.Fprintf(w, "Not measured: %s.\n", r.skipped)
		return
	}
	fmt.Fprintf(w, "Machine: %s. Docker %s. Total time %s.\n", r.machine, r.engine, r.elapsed.Round(time.Second))
	fmt.Fprintf(w, "%d rounds after one warm-up round, the two variants interleaved (order rotated per round). Both run the same "+
		"FROM-scratch image holding only `mark` (a static Go program that writes the wall clock as its first act); "+
		"cork's sidecar image is the repository's Dockerfile around cork built with CGO_ENABLED=0 and -tags nokube (as `make image`). Figures are median / p90 "+
		"over rounds; \"added\" is taken per round, then the median / p90 of those differences.\n\n", r.rounds)
	first := func(x dockerSample) time.Duration { return x.first }
	whole := func(x dockerSample) time.Duration { return x.whole }
	fmt.Fprintln(w, "| | to the first instruction (`mark`) | whole run |")
	fmt.Fprintln(w, "|---|---|---|")
	fmt.Fprintf(w, "| `docker run --rm IMAGE /mark` | %s | %s |\n", medP90(r.field("docker", first)), medP90(r.field("docker", whole)))
	fmt.Fprintf(w, "| `cork run --backend docker --image IMAGE --inject api.example.com=VAR -- /mark` | %s | %s |\n",
		medP90(r.field("cork", first)), medP90(r.field("cork", whole)))
	fmt.Fprintf(w, "| **added by cork** (cork − docker run) | **%s** | %s |\n\n", medP90(r.added(first)), medP90(r.added(whole)))

	fmt.Fprintln(w, "Where cork's time goes: the moments its stderr shows (progress lines as they arrive; the sidecar's "+
		"\"proxy listening\" at its own log time), median / p90 of each step over rounds:")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| step | time |")
	fmt.Fprintln(w, "|---|---|")
	for _, st := range dockerSteps {
		var xs []time.Duration
		for _, x := range r.samples["cork"] {
			a, okA := x.marks[st.from]
			b, okB := x.marks[st.to]
			if okA && okB {
				xs = append(xs, b-a)
			}
		}
		m := "not shown"
		if len(xs) > 0 {
			m = medP90(xs)
		}
		fmt.Fprintf(w, "| %s | %s |\n", st.what, m)
	}

	fmt.Fprintln(w, "\nThe engine's own time from a container's `create` event to its `start` event (`docker events`: network "+
		"endpoints, mounts, the runtime, before the process runs), median / p90 over rounds. `docker run` starts one "+
		"container; `cork run` starts three, one after another:")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| container | create → start |")
	fmt.Fprintln(w, "|---|---|")
	for _, role := range engineRoles {
		var xs []time.Duration
		for _, v := range dockerVariants {
			for _, x := range r.samples[v] {
				if e, ok := x.engine[role.key]; ok {
					xs = append(xs, e)
				}
			}
		}
		m := "not reported"
		if len(xs) > 0 {
			m = medP90(xs)
		}
		fmt.Fprintf(w, "| %s | %s |\n", role.what, m)
	}
}
