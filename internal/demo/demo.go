package demo

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"sync"

	"github.com/rs/zerolog"

	"github.com/cork-sh/cork/launch"
	"github.com/cork-sh/cork/policy"
	"github.com/cork-sh/cork/provision"
	"github.com/cork-sh/cork/resolve"
	"github.com/cork-sh/cork/settings"
)

const (
	// slot is the demo credential's slot; tokenEnv is the host variable
	// that holds its real value (put there in-process, never in the
	// environment of any process).
	slot     = "llm"
	tokenEnv = "CORK_DEMO_LLM_TOKEN"
	// tokenFile is where the sandbox finds its (dummy) credential.
	tokenFile = ".llm/token"
	// deniedHost is what the sandbox tries after its answer: not in the
	// policy, so cork must refuse it.
	deniedHost = "exfil.example.net"
	// inventoryPrefix marks the agent's report of what it held.
	inventoryPrefix = "CORK-DEMO-INVENTORY "
)

// Options configure Run.
type Options struct {
	// Exe is the cork binary the sandboxed agent runs as
	// (`cork demo-agent`).
	Exe string
	// Out receives the transcript.
	Out io.Writer
	// Log receives the proxy's audit log; nil discards it.
	Log io.Writer
}

// Run performs the demo and returns an error unless every check passed.
func Run(ctx context.Context, o Options) error {
	real := "sk-live-" + randomString(40)
	placeholder := "sk-cork-" + randomString(40)

	api, err := startFakeAPI(real)
	if err != nil {
		return fmt.Errorf("fake API: %w", err)
	}
	defer api.close()

	plan := demoPlan(real, placeholder)
	logw := o.Log
	if logw == nil {
		logw = io.Discard
	}
	audit := &auditLog{}
	logger := zerolog.New(io.MultiWriter(logw, audit)).With().Timestamp().Logger()

	w := o.Out
	fmt.Fprintf(w, "cork demo: offline; nothing leaves this machine\n\n")
	fmt.Fprintf(w, "  upstream   https://%s  (in-process fake LLM API, its own CA)\n", APIHost)
	fmt.Fprintf(w, "  host       holds the real token     %s\n", fingerprint(real))
	fmt.Fprintf(w, "  sandbox    holds ~/%s = %s…  (a placeholder)\n", tokenFile, placeholder[:14])
	fmt.Fprintf(w, "  policy     %s → slot %q (bearer); everything else denied\n\n", APIHost, slot)

	var agentOut bytes.Buffer
	pr, pw := io.Pipe()
	var inv inventory
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		relayAgent(pr, w, &agentOut, &inv)
	}()

	hostEnv := map[string]string{"PATH": "/usr/bin:/bin"}
	tokens, err := launch.Tokens(plan, hostEnv)
	if err != nil {
		return err
	}
	spec := &launch.Spec{
		Plan:    plan,
		Tokens:  tokens,
		HostEnv: hostEnv,
		Command: []string{o.Exe, "demo-agent"},
		Proxy: launch.ProxyOptions{Logger: &logger, Settings: settings.Proxy{
			UpstreamRootCAs: api.roots,
			AllowPrivate:    []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
			Resolve:         map[string]string{APIHost + ":443": api.addr()},
		}},
		Stdin:  strings.NewReader(""),
		Stdout: pw,
		Stderr: pw,
	}
	code, runErr := (&launch.Local{}).Run(ctx, spec)
	pw.Close()
	wg.Wait()
	if runErr != nil {
		return fmt.Errorf("run sandbox: %w", runErr)
	}

	api.mu.Lock()
	gotAuth, streamed := api.gotAuth, api.streamed
	api.mu.Unlock()
	received := "nothing"
	if len(gotAuth) > 0 {
		received = fingerprint(strings.TrimPrefix(gotAuth[0], "Bearer "))
	}
	fmt.Fprintf(w, "\n  api     ◂ received Authorization: Bearer %s\n\n", received)

	return printChecks(w, []check{
		{"the sandbox exited 0", code == 0},
		{"the sandbox held the placeholder, and the real token nowhere in its files, environment or arguments", inv.holds(placeholder) && !inv.holds(real) && len(inv.Files) > 0},
		{"the API received the real token, not the placeholder", len(gotAuth) == 1 && gotAuth[0] == "Bearer "+real},
		{fmt.Sprintf("the answer streamed event by event (%d/%d events)", streamed, len(answer)), streamed == len(answer) && strings.Contains(agentOut.String(), strings.Join(answer, ""))},
		{"the unlisted host was denied with a reason", strings.Contains(agentOut.String(), "403 not_allowed") && audit.has("deny", deniedHost)},
		{"the audit log recorded the injection without the token", audit.has("inject", APIHost) && !audit.contains(real) && !audit.contains(placeholder)},
	})
}

// demoPlan is the demo's plan: one slot whose real value is provisioned,
// bound to the fake API; the sandbox gets the placeholder in a file.
func demoPlan(real, placeholder string) provision.Plan {
	return provision.Plan{
		Files:          []provision.File{{Path: tokenFile, Mode: 0o600, Data: []byte(placeholder + "\n")}},
		Env:            map[string]string{"LLM_API_URL": "https://" + APIHost + "/v1/chat", "LLM_TOKEN_FILE": "~/" + tokenFile},
		ProvisionedEnv: resolve.Env{tokenEnv: resolve.NewSecret(real)},
		Egress: provision.EgressPlan{
			TokenEnvMap: map[string]string{slot: tokenEnv},
			Slots:       map[string]policy.Slot{slot: {Placeholder: placeholder}},
			Routes:      []policy.Route{{Host: APIHost, Slot: slot, Header: "Authorization", Scheme: "bearer"}},
		},
	}
}

// relayAgent shows the agent's lines on w as they come, keeps them in out,
// and decodes its inventory line into inv.
func relayAgent(r io.Reader, w io.Writer, out *bytes.Buffer, inv *inventory) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, inventoryPrefix); ok {
			if b, err := base64.StdEncoding.DecodeString(rest); err == nil {
				json.Unmarshal(b, inv)
			}
			continue
		}
		out.WriteString(line + "\n")
		fmt.Fprintf(w, "  sandbox ▸ %s\n", line)
	}
	io.Copy(io.Discard, r)
}

// check is one of the demo's verdicts.
type check struct {
	name string
	ok   bool
}

// printChecks prints each check and fails when one did.
func printChecks(w io.Writer, checks []check) error {
	failed := 0
	fmt.Fprintln(w, "  checks:")
	for _, c := range checks {
		mark := "✓"
		if !c.ok {
			mark = "✗"
			failed++
		}
		fmt.Fprintf(w, "    %s %s\n", mark, c.name)
	}
	if failed > 0 {
		return fmt.Errorf("demo: %d of %d checks failed", failed, len(checks))
	}
	fmt.Fprintf(w, "\ncork demo: all %d checks passed\n", len(checks))
	return nil
}

// inventory is what the agent reports it held.
type inventory struct {
	Env   []string          `json:"env"`
	Args  []string          `json:"args"`
	Files map[string]string `json:"files"`
}

func (inv inventory) holds(s string) bool {
	for _, e := range inv.Env {
		if strings.Contains(e, s) {
			return true
		}
	}
	for _, a := range inv.Args {
		if strings.Contains(a, s) {
			return true
		}
	}
	for _, f := range inv.Files {
		if strings.Contains(f, s) {
			return true
		}
	}
	return false
}

// auditLog keeps the proxy's log lines for the checks.
type auditLog struct {
	mu    sync.Mutex
	lines []map[string]any
	raw   bytes.Buffer
}

func (a *auditLog) Write(p []byte) (int, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.raw.Write(p)
	var m map[string]any
	if json.Unmarshal(p, &m) == nil {
		a.lines = append(a.lines, m)
	}
	return len(p), nil
}

func (a *auditLog) has(decision, host string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, l := range a.lines {
		if (l["message"] == "egress" || l["msg"] == "egress") && l["decision"] == decision && l["host"] == host {
			return true
		}
	}
	return false
}

func (a *auditLog) contains(s string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return bytes.Contains(a.raw.Bytes(), []byte(s))
}

func fingerprint(token string) string {
	sum := sha256.Sum256([]byte(token))
	return "sha256:" + hex.EncodeToString(sum[:])[:16]
}

func randomString(n int) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(errors.New("crypto/rand: " + err.Error()))
	}
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}
