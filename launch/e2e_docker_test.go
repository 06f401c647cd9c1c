package launch_test

// End-to-end tests of the docker backend against a real engine. They build
// their own FROM-scratch images: the cork sidecar (this repo's Dockerfile),
// internal/testing/e2e/fakeapi and internal/testing/e2e/fakeagent. Outside
// CI they skip when there is no engine or no root; under CI=true they fail
// instead.
//
// Traffic stays on loopback and on networks these tests create.

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/cork-sh/cork/internal/testing/testenv"
	"github.com/cork-sh/cork/launch"
	"github.com/cork-sh/cork/policy"
	"github.com/cork-sh/cork/provision"
	"github.com/cork-sh/cork/resolve"
	"github.com/cork-sh/cork/settings"
)

const (
	e2eAPIHost     = "api.example.test"
	e2eSlot        = "api"
	e2eTokenEnv    = "CORK_E2E_API_TOKEN"
	e2ePlaceholder = "cork-e2e-placeholder-0000000000000000"
	e2eLabel       = "cork-e2e"
)

// requireDocker skips (fails under CI=true) when the engine or root is
// missing.
func requireDocker(t *testing.T) {
	t.Helper()
	if testing.Short() {
		testenv.Missing(t, "docker end-to-end test: -short")
	}
	if os.Geteuid() != 0 {
		testenv.Missing(t, "docker end-to-end test: needs root")
	}
	if _, err := exec.LookPath("docker"); err != nil {
		testenv.Missing(t, "docker end-to-end test: no docker client in PATH (Debian: apt-get install docker.io)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "docker", "version", "--format", "{{.Server.Version}}").CombinedOutput(); err != nil {
		testenv.Missing(t, "docker end-to-end test: no reachable Docker engine (start dockerd or set DOCKER_HOST): %s", firstLine(string(out)))
	}
}

// parseSettings is the settings of `cork run` given the variables env.
func parseSettings(t *testing.T, env map[string]string) settings.Proxy {
	t.Helper()
	in, err := settings.Load(env)
	if err != nil {
		t.Fatal(err)
	}
	p, err := in.Parse(settings.ForRun)
	if err != nil {
		t.Fatalf("settings %v: %v", env, err)
	}
	return *p
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return l
}

// e2eImages are built once per test binary.
var e2eImages struct {
	once                sync.Once
	err                 error
	sidecar, api, agent string
	corkBin, dockerReal string
	buildDur            time.Duration
}

func images(t *testing.T) (sidecar, api, agent string) {
	t.Helper()
	e2eImages.once.Do(func() {
		start := time.Now()
		e2eImages.err = buildImages()
		e2eImages.buildDur = time.Since(start)
	})
	if e2eImages.err != nil {
		t.Fatalf("build e2e images: %v", e2eImages.err)
	}
	t.Logf("e2e images built in %v", e2eImages.buildDur.Round(time.Millisecond))
	return e2eImages.sidecar, e2eImages.api, e2eImages.agent
}

func buildImages() error {
	// One fixed directory, emptied first: the package has its TestMain
	// elsewhere, so nothing would remove a fresh one at the end.
	dir := filepath.Join(os.TempDir(), fmt.Sprintf("cork-e2e-images-%d", os.Getuid()))
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	root, err := repoRoot()
	if err != nil {
		return err
	}
	bins := filepath.Join(dir, "bins") + string(filepath.Separator)
	build := exec.Command("go", "build", "-trimpath", "-o", bins,
		"github.com/cork-sh/cork/cmd/cork",
		"github.com/cork-sh/cork/internal/testing/e2e/fakeapi",
		"github.com/cork-sh/cork/internal/testing/e2e/fakeagent")
	build.Dir = root
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("go build: %v\n%s", err, out)
	}
	e2eImages.corkBin = filepath.Join(bins, "cork")
	if e2eImages.dockerReal, err = exec.LookPath("docker"); err != nil {
		return err
	}
	sidecarCtx := filepath.Join(dir, "sidecar")
	if err := os.MkdirAll(filepath.Join(sidecarCtx, "bin"), 0o755); err != nil {
		return err
	}
	// The sidecar's cork as `make image` builds it: without the
	// kubernetes backend.
	side := exec.Command("go", "build", "-tags", "nokube", "-trimpath", "-o", filepath.Join(sidecarCtx, "bin", "cork-sidecar"),
		"github.com/cork-sh/cork/cmd/cork")
	side.Dir = root
	side.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := side.CombinedOutput(); err != nil {
		return fmt.Errorf("go build -tags nokube: %v\n%s", err, out)
	}
	// The sidecar from the repository's own Dockerfile.
	if out, err := exec.Command("docker", "build", "--quiet", "--tag", "cork-e2e/sidecar:test",
		"--file", filepath.Join(root, "Dockerfile"), sidecarCtx).CombinedOutput(); err != nil {
		return fmt.Errorf("docker build sidecar: %v\n%s", err, out)
	}
	for _, p := range []struct{ tag, bin, dockerfile string }{
		{"cork-e2e/fakeapi:test", "fakeapi", "FROM scratch\nCOPY fakeapi /fakeapi\nENTRYPOINT [\"/fakeapi\"]\n"},
		{"cork-e2e/fakeagent:test", "fakeagent", "FROM scratch\nCOPY fakeagent /fakeagent\n"},
	} {
		ctxDir := filepath.Join(dir, p.bin)
		if err := os.MkdirAll(ctxDir, 0o755); err != nil {
			return err
		}
		if err := copyFile(filepath.Join(bins, p.bin), filepath.Join(ctxDir, p.bin)); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(ctxDir, "Dockerfile"), []byte(p.dockerfile), 0o644); err != nil {
			return err
		}
		if out, err := exec.Command("docker", "build", "--quiet", "--tag", p.tag, ctxDir).CombinedOutput(); err != nil {
			return fmt.Errorf("docker build %s: %v\n%s", p.tag, err, out)
		}
	}
	e2eImages.sidecar, e2eImages.api, e2eImages.agent = "cork-e2e/sidecar:test", "cork-e2e/fakeapi:test", "cork-e2e/fakeagent:test"
	return nil
}

func repoRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %v", err)
	}
	return filepath.Dir(strings.TrimSpace(string(out))), nil
}

func copyFile(src, dst string) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, data, 0o755)
}

// docker runs the real client for the test's own setup and checks.
func docker(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "docker", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// recordingCLI is a docker client that logs every argv to a file before
// running the real one: the tests read it to see what cork asked of the
// engine (nothing on a preflight failure, never a token).
func recordingCLI(t *testing.T) (cli, logPath string) {
	t.Helper()
	real, err := exec.LookPath("docker")
	if err != nil {
		real = "/usr/bin/docker" // never run when the engine tests skip
	}
	dir := t.TempDir()
	logPath = filepath.Join(dir, "argv.log")
	cli = filepath.Join(dir, "docker")
	script := fmt.Sprintf("#!/bin/sh\nprintf '%%s\\n' \"$*\" >> '%s'\nexec '%s' \"$@\"\n", logPath, real)
	if err := os.WriteFile(cli, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return cli, logPath
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	return string(b)
}

// upstream is the fake API on a network of the test's own, with its CA.
type upstream struct {
	network, subnet, gateway string
	container, ip            string
	caFile                   string
}

func startUpstream(t *testing.T, apiImage string) *upstream {
	t.Helper()
	certDir := t.TempDir()
	caPEM, certPEM, keyPEM := testPKI(t, e2eAPIHost)
	for name, data := range map[string][]byte{"ca.pem": caPEM, "api.pem": certPEM, "api-key.pem": keyPEM} {
		if err := os.WriteFile(filepath.Join(certDir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(certDir, 0o755); err != nil {
		t.Fatal(err)
	}
	u := &upstream{caFile: filepath.Join(certDir, "ca.pem")}
	suffix := randHex(4)
	u.network = "cork-e2e-upstream-" + suffix
	docker(t, "network", "create", "--label", e2eLabel+"=1", u.network)
	t.Cleanup(func() { exec.Command("docker", "network", "rm", u.network).Run() })
	u.subnet = docker(t, "network", "inspect", "--format", "{{(index .IPAM.Config 0).Subnet}}", u.network)
	u.gateway = docker(t, "network", "inspect", "--format", "{{(index .IPAM.Config 0).Gateway}}", u.network)
	u.container = "cork-e2e-api-" + suffix
	docker(t, "run", "--detach", "--name", u.container, "--label", e2eLabel+"=1",
		"--network", u.network, "--network-alias", e2eAPIHost,
		"--mount", "type=bind,source="+certDir+",target=/certs,readonly", apiImage)
	t.Cleanup(func() { exec.Command("docker", "rm", "--force", u.container).Run() })
	u.ip = docker(t, "inspect", "--format", "{{(index .NetworkSettings.Networks \""+u.network+"\").IPAddress}}", u.container)
	return u
}

// received returns the Authorization headers the fake API logged.
func (u *upstream) received(t *testing.T) []string {
	t.Helper()
	var auths []string
	for _, line := range strings.Split(docker(t, "logs", u.container), "\n") {
		var m map[string]string
		if json.Unmarshal([]byte(line), &m) == nil {
			auths = append(auths, m["authorization"])
		}
	}
	return auths
}

// testPKI returns a CA and a leaf for host signed by it.
func testPKI(t *testing.T, host string) (caPEM, certPEM, keyPEM []byte) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "cork e2e upstream CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leaf := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: host}, DNSNames: []string{host},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, leaf, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// e2ePlan is a one-slot plan: a bearer token for the fake API, a dummy
// credentials file and a variable holding the placeholder.
func e2ePlan() provision.Plan {
	return provision.Plan{
		Files: []provision.File{{Path: ".fake/credentials.json", Mode: 0o600, Data: []byte(`{"token":"` + e2ePlaceholder + `"}`)}},
		Env: map[string]string{
			"FAKE_API_TOKEN": e2ePlaceholder,
			"FAKE_CONFIG":    "~/.fake/credentials.json",
		},
		ProvisionedEnv: resolve.Env{},
		Egress: provision.EgressPlan{
			TokenEnvMap: map[string]string{e2eSlot: e2eTokenEnv},
			Slots:       map[string]policy.Slot{e2eSlot: {Placeholder: e2ePlaceholder}},
			Routes:      []policy.Route{{Host: e2eAPIHost, Slot: e2eSlot, Scheme: policy.SchemeBearer}},
		},
	}
}

// hostEnv is what cork would see: the docker client's variables plus the
// given ones.
func hostEnv(extra map[string]string) map[string]string {
	env := map[string]string{}
	for _, kv := range os.Environ() {
		k, v, _ := strings.Cut(kv, "=")
		if k == "PATH" || k == "HOME" || strings.HasPrefix(k, "DOCKER_") {
			env[k] = v
		}
	}
	for k, v := range extra {
		env[k] = v
	}
	return env
}

// syncBuffer is a goroutine-safe buffer that can wait for a substring.
type syncBuffer struct{ testenv.Buffer }

// waitFor polls until s occurs n times in b, or fails after d.
func (b *syncBuffer) waitFor(s string, n int, d time.Duration, done <-chan struct{}) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if strings.Count(b.String(), s) >= n {
			return true
		}
		select {
		case <-done:
			return strings.Count(b.String(), s) >= n
		case <-time.After(50 * time.Millisecond):
		}
	}
	return false
}

// progressLog records progress lines and finds the session id in them.
type progressLog struct {
	t  *testing.T
	mu sync.Mutex
	l  []string
}

func (p *progressLog) add(msg string) {
	p.mu.Lock()
	p.l = append(p.l, msg)
	p.mu.Unlock()
	p.t.Logf("progress: %s", msg)
}

var sessionRE = regexp.MustCompile(`session ([0-9a-f]{12})`)

func (p *progressLog) session() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, l := range p.l {
		if m := sessionRE.FindStringSubmatch(l); m != nil {
			return m[1]
		}
	}
	return ""
}

// leftovers lists the objects labelled with filter that still exist.
func leftovers(t *testing.T, filter string) []string {
	t.Helper()
	var left []string
	for _, args := range [][]string{
		{"ps", "--all", "--quiet", "--filter", filter},
		{"network", "ls", "--quiet", "--filter", filter},
		{"volume", "ls", "--quiet", "--filter", filter},
	} {
		if out := docker(t, args...); out != "" {
			left = append(left, args[0]+": "+strings.ReplaceAll(out, "\n", " "))
		}
	}
	return left
}

// hostListener accepts (and drops) connections on all host addresses: the
// sandbox must not reach it.
func hostListener(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port
}

// TestDockerEndToEnd runs the fake agent in a docker sandbox against the
// fake API: the API gets the real token, the sandbox never holds it,
// nothing but the proxy is reachable, a host outside the policy is denied,
// refreshed host credentials reach the sidecar, the exit status comes
// back, and teardown leaves nothing.
func TestDockerEndToEnd(t *testing.T) {
	requireDocker(t)
	start := time.Now()
	sidecarImage, apiImage, agentImage := images(t)
	up := startUpstream(t, apiImage)
	hostPort := hostListener(t)
	// Control: from a network with a route out, the host listener answers,
	// so the sandbox's failure to reach it below means something.
	hostAddr := net.JoinHostPort(up.gateway, strconv.Itoa(hostPort))
	if out := docker(t, "run", "--rm", "--label", e2eLabel+"=1", "--network", up.network, agentImage, "/fakeagent", "probe", "-direct", hostAddr); !strings.Contains(out, "DIRECT "+hostAddr+" connected") {
		t.Fatalf("control: a container on a normal network cannot reach the host listener %s:\n%s", hostAddr, out)
	}
	cli, argvLog := recordingCLI(t)

	real1 := "e2e-real-token-one-" + randHex(12)
	real2 := "e2e-real-token-two-" + randHex(12)
	// The host credential file that provisioning "read", for the refresh.
	srcDir := t.TempDir()
	src := filepath.Join(srcDir, "token")
	if err := os.WriteFile(src, []byte(real1), 0o600); err != nil {
		t.Fatal(err)
	}
	plan := e2ePlan()
	plan.ProvisionedEnv[e2eTokenEnv] = resolve.NewSecret(real1)
	plan.Sources = []provision.Source{{Path: src, Read: func() (resolve.Env, error) {
		b, err := os.ReadFile(src)
		if err != nil {
			return nil, err
		}
		return resolve.Env{e2eTokenEnv: resolve.NewSecret(strings.TrimSpace(string(b)))}, nil
	}}}

	ws := t.TempDir()
	if err := os.WriteFile(filepath.Join(ws, "README"), []byte("workspace file\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var logs, stdout, stderr syncBuffer
	logger := zerolog.New(&logs).Level(zerolog.DebugLevel)
	prog := &progressLog{t: t}
	spec := &launch.Spec{
		Plan:    plan,
		HostEnv: hostEnv(map[string]string{"GH_TOKEN": "host-only-" + randHex(8)}),
		Command: []string{"/fakeagent", "probe",
			"-api", "https://" + e2eAPIHost + "/v1/echo",
			"-token-env", "FAKE_API_TOKEN",
			"-direct", net.JoinHostPort(up.ip, "443") + "," + net.JoinHostPort(up.gateway, strconv.Itoa(hostPort)),
			"-gateway-port", strconv.Itoa(hostPort),
			"-denied", "https://denied.example.test/",
			"-pause", "/workspace/.continue",
			"-dump",
			"-exit", "7",
		},
		Workspace: ws,
		Image:     agentImage,
		Proxy: launch.ProxyOptions{
			Logger: &logger,
			Settings: parseSettings(t, map[string]string{
				"CORK_UPSTREAM_CA_FILE": up.caFile,
				"CORK_ALLOW_PRIVATE":    up.subnet,
				"CORK_LOG_LEVEL":        "debug",
			}),
		},
		Stdout:   &stdout,
		Stderr:   &stderr,
		Progress: prog.add,
	}
	d := &launch.Docker{CLI: cli, SidecarImage: sidecarImage, Networks: []string{up.network}}

	type result struct {
		code int
		err  error
	}
	res := make(chan result, 1)
	done := make(chan struct{})
	runStart := time.Now()
	go func() {
		code, err := d.Run(context.Background(), launchResolved(spec))
		res <- result{code, err}
		close(done)
	}()

	var homeSource string
	if !stdout.waitFor("PAUSE", 1, 90*time.Second, done) {
		r := <-res
		t.Fatalf("the agent never paused: Run = %d, %v\nstdout:\n%s\nstderr:\n%s\nlogs:\n%s", r.code, r.err, stdout.String(), stderr.String(), logs.String())
	}
	session := prog.session()
	if session == "" {
		t.Fatal("no session id in the progress lines")
	}
	filter := "label=" + launch.LabelSession + "=" + session

	// While the sandbox runs: what the engine holds about it.
	agentID := docker(t, "ps", "--quiet", "--filter", filter, "--filter", "label="+launch.LabelRole+"=sandbox")
	proxyID := docker(t, "ps", "--quiet", "--filter", filter, "--filter", "label="+launch.LabelRole+"=proxy")
	if agentID == "" || proxyID == "" {
		t.Fatalf("running containers: sandbox %q, proxy %q; want both", agentID, proxyID)
	}
	var inspect []struct {
		Path       string
		Args       []string
		Config     struct{ Env, Cmd []string }
		HostConfig struct {
			Privileged bool
			CapDrop    []string
		}
		Mounts          []struct{ Type, Source, Destination string }
		NetworkSettings struct{ Networks map[string]json.RawMessage }
	}
	raw := docker(t, "inspect", agentID, proxyID)
	if err := json.Unmarshal([]byte(raw), &inspect); err != nil {
		t.Fatalf("docker inspect: %v", err)
	}
	for _, secret := range []string{real1, real2} {
		if strings.Contains(raw, secret) {
			t.Errorf("docker inspect of the sandbox or the sidecar holds a real token")
		}
	}
	agent := inspect[0]
	if agent.HostConfig.Privileged {
		t.Error("the sandbox container is privileged")
	}
	if len(agent.NetworkSettings.Networks) != 1 {
		t.Errorf("the sandbox container is on %d networks, want only the internal one", len(agent.NetworkSettings.Networks))
	}
	for _, m := range agent.Mounts {
		if m.Destination == launch.SandboxHome {
			homeSource = m.Source
		}
	}
	if homeSource == "" {
		t.Fatalf("no bind mount at %s in %+v", launch.SandboxHome, agent.Mounts)
	}
	// The host side of the sandbox home: dummy files only.
	var homeFiles []string
	filepath.WalkDir(homeSource, func(p string, de fs.DirEntry, err error) error {
		if err != nil || !de.Type().IsRegular() {
			return nil
		}
		rel, _ := filepath.Rel(homeSource, p)
		homeFiles = append(homeFiles, rel)
		if b, _ := os.ReadFile(p); bytes.Contains(b, []byte(real1)) || bytes.Contains(b, []byte(real2)) {
			t.Errorf("host-side sandbox file %s holds a real token", rel)
		}
		return nil
	})
	t.Logf("sandbox home on the host: %v", homeFiles)

	// Refresh: the host credential changes while the sandbox runs; the
	// sidecar gets the new token on its stdin.
	if err := os.WriteFile(src, []byte(real2), 0o600); err != nil {
		t.Fatal(err)
	}
	if !logs.waitFor(`"tokens updated"`, 2, 15*time.Second, done) {
		t.Errorf("the sidecar did not report a second token map after the host credential changed\nlogs:\n%s", logs.String())
	}
	if err := os.WriteFile(filepath.Join(ws, ".continue"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	var r result
	select {
	case r = <-res:
	case <-time.After(60 * time.Second):
		t.Fatal("Run did not return after the agent was let go")
	}
	runDur := time.Since(runStart)
	out := stdout.String()
	t.Logf("agent stdout (FILE contents cut):\n%s", regexp.MustCompile(`(?m)^(FILE \S+ .{0,60}).*$`).ReplaceAllString(out, "$1..."))
	if r.err != nil {
		t.Fatalf("Run = %d, %v\nstderr:\n%s\nlogs:\n%s", r.code, r.err, stderr.String(), logs.String())
	}
	if r.code != 7 {
		t.Errorf("Run = %d, want the agent's exit status 7", r.code)
	}

	// Through the proxy, the API received the real token, then the
	// refreshed one; never the placeholder.
	sum := func(s string) string { h := sha256.Sum256([]byte("Bearer " + s)); return hex.EncodeToString(h[:]) }
	if !strings.Contains(out, "API status=200") || !strings.Contains(out, sum(real1)) {
		t.Errorf("first API call: want status 200 and the hash of the real token in the agent's output")
	}
	if !strings.Contains(out, "API2 status=200") || !strings.Contains(out, sum(real2)) {
		t.Errorf("API call after the refresh: want status 200 and the hash of the refreshed token")
	}
	got := up.received(t)
	if len(got) != 2 || got[0] != "Bearer "+real1 || got[1] != "Bearer "+real2 {
		t.Errorf("the API received %d requests; want the real token, then the refreshed one (placeholder seen: %v)", len(got), strings.Contains(strings.Join(got, " "), e2ePlaceholder))
	}

	// No way around the proxy.
	directs := regexp.MustCompile(`(?m)^DIRECT (\S+) (.*)$`).FindAllStringSubmatch(out, -1)
	if len(directs) < 4 {
		t.Errorf("want 4 direct probes (API by address, by name, two host addresses), got %d", len(directs))
	}
	for _, m := range directs {
		if m[2] == "connected" {
			t.Errorf("the sandbox reached %s without the proxy", m[1])
		}
	}
	// A host outside the policy: 403 with a reason.
	if m := regexp.MustCompile(`CONNECT denied.example.test:443 status=(\d+) reason=(\S*)`).FindStringSubmatch(out); m == nil || m[1] != "403" || m[2] == "" {
		t.Errorf("denied host: want CONNECT status=403 with an X-Cork-Deny-Reason, got %q", m)
	}
	// The sidecar serves only the agent: its proxy URL carries the
	// session's client credential, which never appears in docker's argv.
	if m := regexp.MustCompile(`ENV HTTPS_PROXY=http://cork:([A-Za-z0-9_-]{24})@(\d+\.\d+\.\d+\.\d+):3128\n`).FindStringSubmatch(out); m == nil {
		t.Errorf("agent HTTPS_PROXY lacks the session credential:\n%s", out)
	} else if strings.Contains(readFile(t, argvLog), m[1]) {
		t.Errorf("the session client credential appears in docker's argv")
	}
	// The sandbox's environment and files: dummies only.
	for _, want := range []string{
		"ENV FAKE_API_TOKEN=" + e2ePlaceholder,
		"ENV FAKE_CONFIG=" + launch.SandboxHome + "/.fake/credentials.json",
		"ENV HOME=" + launch.SandboxHome,
		"ENV SSL_CERT_FILE=" + launch.SandboxHome + "/.cork/ca-bundle.pem",
		"FILE " + launch.SandboxHome + "/.fake/credentials.json",
		"FILE /workspace/README",
		"FILE /cork-ca/ca.pem",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("agent output lacks %q", want)
		}
	}
	for name, secret := range map[string]string{"real token": real1, "refreshed token": real2, "host GH_TOKEN": spec.HostEnv["GH_TOKEN"]} {
		for what, s := range map[string]string{"agent stdout": out, "agent stderr": stderr.String(), "docker argv": readFile(t, argvLog), "cork log": logs.String()} {
			if strings.Contains(s, secret) {
				t.Errorf("%s holds the %s", what, name)
			}
		}
	}
	// The sidecar's audit lines reach cork's logger.
	if !strings.Contains(logs.String(), `"component":"sidecar"`) || !strings.Contains(logs.String(), `"decision":"inject"`) {
		t.Errorf("cork's log lacks the sidecar's inject audit line:\n%s", logs.String())
	}

	// Teardown left nothing.
	if left := leftovers(t, filter); len(left) > 0 {
		t.Errorf("left after teardown: %v", left)
	}
	if _, err := os.Stat(homeSource); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the host-side sandbox home %s is still there (%v)", homeSource, err)
	}
	t.Logf("timings: total %v, Run %v", time.Since(start).Round(time.Millisecond), runDur.Round(time.Millisecond))
}

// TestDockerCancel cancels the context while the sandbox runs (what
// SIGINT does to `cork run`): the sandbox is stopped and everything is
// removed.
func TestDockerCancel(t *testing.T) {
	requireDocker(t)
	sidecarImage, _, agentImage := images(t)
	var stdout, stderr syncBuffer
	prog := &progressLog{t: t}
	plan := e2ePlan()
	spec := &launch.Spec{
		Plan:     plan,
		HostEnv:  hostEnv(map[string]string{e2eTokenEnv: "e2e-real-" + randHex(8)}),
		Command:  []string{"/fakeagent", "sleep"},
		Image:    agentImage,
		Stdout:   &stdout,
		Stderr:   &stderr,
		Progress: prog.add,
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	d := &launch.Docker{SidecarImage: sidecarImage}
	type result struct {
		code int
		err  error
	}
	res := make(chan result, 1)
	done := make(chan struct{})
	go func() {
		code, err := d.Run(ctx, launchResolved(spec))
		res <- result{code, err}
		close(done)
	}()
	if !stdout.waitFor("READY", 1, 90*time.Second, done) {
		r := <-res
		t.Fatalf("the agent never got ready: Run = %d, %v\n%s%s", r.code, r.err, stdout.String(), stderr.String())
	}
	session := prog.session()
	start := time.Now()
	cancel()
	var r result
	select {
	case r = <-res:
	case <-time.After(45 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	t.Logf("Run returned %d, %v %v after cancel", r.code, r.err, time.Since(start).Round(time.Millisecond))
	if r.err != nil {
		t.Errorf("Run after cancel = %d, %v; want the agent's status and no error", r.code, r.err)
	}
	if !strings.Contains(stdout.String(), "SIGNAL terminated") {
		t.Errorf("the agent did not get SIGTERM; stdout:\n%s", stdout.String())
	}
	if left := leftovers(t, "label="+launch.LabelSession+"="+session); len(left) > 0 {
		t.Errorf("left after cancel: %v", left)
	}
}

// TestDockerCLIInterrupt runs `cork run --backend docker` and sends it
// SIGINT while the sandbox runs.
func TestDockerCLIInterrupt(t *testing.T) {
	requireDocker(t)
	sidecarImage, _, agentImage := images(t)
	home := t.TempDir()
	cmd := exec.Command(e2eImages.corkBin, "run", "--backend", "docker", "--agent", "codex",
		"--image", agentImage, "--", "/fakeagent", "sleep")
	env := []string{"HOME=" + home, "PATH=" + os.Getenv("PATH"), "CORK_SIDECAR_IMAGE=" + sidecarImage,
		"OPENAI_API_KEY=sk-e2e-" + randHex(16)}
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "DOCKER_") {
			env = append(env, kv)
		}
	}
	cmd.Env = env
	var stdout, stderr syncBuffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(done) }()
	if !stdout.waitFor("READY", 1, 90*time.Second, done) {
		cmd.Process.Kill()
		<-done
		t.Fatalf("the sandbox never got ready: %v\nstdout:\n%s\nstderr:\n%s", waitErr, stdout.String(), stderr.String())
	}
	m := sessionRE.FindStringSubmatch(stderr.String())
	if m == nil {
		t.Fatalf("no session id in cork's progress lines:\n%s", stderr.String())
	}
	start := time.Now()
	cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-done:
	case <-time.After(45 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("cork run did not exit after SIGINT\nstderr:\n%s", stderr.String())
	}
	t.Logf("cork run exited (%v) %v after SIGINT\nstderr:\n%s", waitErr, time.Since(start).Round(time.Millisecond), stderr.String())
	if left := leftovers(t, "label="+launch.LabelSession+"="+m[1]); len(left) > 0 {
		t.Errorf("left after SIGINT: %v", left)
	}
}

// TestDockerSetupErrors: a bad input is a *launch.SetupError with a clear
// message, and cork creates nothing in the engine.
func TestDockerSetupErrors(t *testing.T) {
	requireDocker(t)
	sidecarImage, _, agentImage := images(t)
	token := "e2e-real-" + randHex(8)
	tests := []struct {
		name    string
		docker  launch.Docker
		image   string
		env     map[string]string
		want    string
		missing bool // a *resolve.MissingError
	}{
		{name: "no engine", docker: launch.Docker{SidecarImage: sidecarImage}, image: agentImage,
			env: map[string]string{e2eTokenEnv: token, "DOCKER_HOST": "unix:///nonexistent/docker.sock"}, want: "no reachable Docker engine"},
		{name: "no sidecar image", docker: launch.Docker{SidecarImage: "cork-e2e/no-such-sidecar:none"}, image: agentImage,
			env: map[string]string{e2eTokenEnv: token}, want: "make image"},
		{name: "sidecar image from CORK_SIDECAR_IMAGE", docker: launch.Docker{}, image: agentImage,
			env: map[string]string{e2eTokenEnv: token, "CORK_SIDECAR_IMAGE": "cork-e2e/no-such-sidecar:env"}, want: "cork-e2e/no-such-sidecar:env"},
		{name: "no agent image", docker: launch.Docker{SidecarImage: sidecarImage}, image: "cork-e2e/no-such-agent:none",
			env: map[string]string{e2eTokenEnv: token}, want: "cork-e2e/no-such-agent:none"},
		{name: "missing credential", docker: launch.Docker{SidecarImage: sidecarImage}, image: agentImage,
			env: map[string]string{}, want: e2eTokenEnv, missing: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cli, argvLog := recordingCLI(t)
			d := tc.docker
			d.CLI = cli
			spec := &launch.Spec{
				Plan:    e2ePlan(),
				HostEnv: hostEnv(tc.env),
				Command: []string{"/fakeagent", "sleep"},
				Image:   tc.image,
			}
			start := time.Now()
			code, err := d.Run(context.Background(), launchResolved(spec))
			var se *launch.SetupError
			if !errors.As(err, &se) {
				t.Fatalf("Run = %d, %v; want a *launch.SetupError", code, err)
			}
			if !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("Run error = %q; want one line mentioning %q", err, tc.want)
			}
			var me *resolve.MissingError
			if tc.missing != errors.As(err, &me) {
				t.Errorf("Run error %v: *resolve.MissingError = %v, want %v", err, !tc.missing, tc.missing)
			}
			argv := readFile(t, argvLog)
			for _, l := range strings.Split(strings.TrimSpace(argv), "\n") {
				if l != "" && !strings.HasPrefix(l, "version ") && !strings.HasPrefix(l, "image inspect ") {
					t.Errorf("docker was asked %q before the setup error", l)
				}
			}
			if strings.Contains(argv, token) {
				t.Error("a token reached the docker argv")
			}
			t.Logf("%v: %v", time.Since(start).Round(time.Millisecond), err)
		})
	}
}

// launchResolved returns spec with its tokens resolved as `cork run`
// resolves them (launch.Tokens); a missing credential leaves its slot
// without a token.
func launchResolved(spec *launch.Spec) *launch.Spec {
	spec.Tokens, _ = launch.Tokens(spec.Plan, spec.HostEnv)
	return spec
}
