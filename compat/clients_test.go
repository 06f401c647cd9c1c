package compat

import (
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/cork-sh/cork/internal/testing/fakeupstream"
	"github.com/cork-sh/cork/provision"
)

// The generic clients call the Messages API the way an SDK-based agent
// would, with the placeholder from ANTHROPIC_AUTH_TOKEN as a bearer.

// messagesPlan is the claude profile for a bearer token that is not a
// subscription token (ANTHROPIC_AUTH_TOKEN on the host): the sandbox gets
// the placeholder in ANTHROPIC_AUTH_TOKEN. It returns the plan and the
// placeholder.
func messagesPlan(t *testing.T, real string) (provision.Plan, string) {
	t.Helper()
	plan, err := provision.Build(provision.Options{
		HostEnv: map[string]string{provision.AnthropicAuthTokenEnv: real},
	}, provision.Claude{})
	if err != nil {
		t.Fatalf("provision.Build(claude) = %v", err)
	}
	return plan, plan.Egress.Slots[provision.ClaudeSlot].Placeholder
}

// nodeScript POSTs a streaming Messages request with fetch and prints the
// streamed text, or FETCH-ERROR and the error's code. argv[2] picks how
// fetch finds the proxy.
const nodeScript = `'use strict';
const mode = process.argv[2];
let doFetch = globalThis.fetch;
let dispatcher;
if (mode === 'undici-dispatcher') {
  const u = require(process.env.CORK_COMPAT_UNDICI);
  dispatcher = new u.EnvHttpProxyAgent();
  doFetch = u.fetch;
} else if (mode === 'global-dispatcher') {
  const u = require(process.env.CORK_COMPAT_UNDICI);
  u.setGlobalDispatcher(new u.EnvHttpProxyAgent());
}
(async () => {
  const opts = {
    method: 'POST',
    headers: {
      authorization: 'Bearer ' + process.env.ANTHROPIC_AUTH_TOKEN,
      'content-type': 'application/json',
      'anthropic-version': '2023-06-01',
    },
    body: JSON.stringify({model: 'claude-compat', max_tokens: 16, stream: true,
      messages: [{role: 'user', content: 'say ok'}]}),
  };
  if (dispatcher) opts.dispatcher = dispatcher;
  const res = await doFetch('https://api.anthropic.com/v1/messages', opts);
  if (!res.ok) { console.log('HTTP', res.status, await res.text()); process.exit(3); }
  const dec = new TextDecoder();
  let buf = '', text = '', events = 0;
  for await (const chunk of res.body) {
    buf += dec.decode(chunk, {stream: true});
    let i;
    while ((i = buf.indexOf('\n\n')) >= 0) {
      const ev = buf.slice(0, i);
      buf = buf.slice(i + 2);
      for (const line of ev.split('\n')) {
        if (!line.startsWith('data: ')) continue;
        events++;
        const d = JSON.parse(line.slice(6));
        if (d.type === 'content_block_delta') text += d.delta.text;
      }
    }
  }
  console.log(text);
  console.error('events: ' + events);
})().catch(e => {
  console.log('FETCH-ERROR ' + ((e && e.cause && (e.cause.code || e.cause.message)) || (e && e.message)));
  process.exit(2);
});
`

func TestNodeFetch(t *testing.T) {
	node := requireCLI(t, "node")
	version := cliVersion(t, node)
	major, _ := strconv.Atoi(strings.SplitN(strings.TrimPrefix(version, "v"), ".", 2)[0])
	undici := requireFile(t, filepath.Join(clientsPrefix(), "node_modules", "undici"), "the undici npm package")
	undiciVersion := npmVersion(undici)
	for i, tc := range []struct {
		mode, transport string
		// proxied: fetch goes through cork and gets the answer.
		proxied bool
		notes   string
	}{
		{"undici-dispatcher", "undici " + undiciVersion + " `fetch` with `dispatcher: new EnvHttpProxyAgent()`", true,
			"streams SSE through cork"},
		{"global-dispatcher", "built-in `fetch` after undici's `setGlobalDispatcher(new EnvHttpProxyAgent())`", true,
			"the built-in fetch picks up the npm undici's global dispatcher"},
		{"plain", "built-in `fetch`, nothing else (`NODE_USE_ENV_PROXY=1` is set)", major >= 24,
			"Node 20 ignores HTTPS_PROXY and NODE_USE_ENV_PROXY: the request bypasses cork"},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			t.Parallel()
			row := report(t, 30+i, "Node `fetch`", version, tc.transport, "")
			real := randomToken(t, "sk-ant-api03-", 95)
			plan, placeholder := messagesPlan(t, real)
			fake := startFake(t, fakeupstream.Config{AnthropicToken: real})
			workspace := t.TempDir()
			script := filepath.Join(workspace, "fetch.js")
			if err := os.WriteFile(script, []byte(nodeScript), 0o644); err != nil {
				t.Fatal(err)
			}
			r := runSandbox(t, plan, fake, workspace, map[string]string{provision.AnthropicAuthTokenEnv: real},
				map[string]string{"CORK_COMPAT_UNDICI": undici}, node, script, tc.mode)
			defer func() {
				if t.Failed() || testing.Verbose() {
					t.Logf("fake upstream saw:\n%s", fake.Summary())
					t.Logf("proxy decisions:\n%s", egressSummary(r))
					t.Logf("node stdout:\n%s\nnode stderr:\n%s", tail(r.Stdout, 2000), tail(r.Stderr, 4000))
				}
			}()
			checkNoSecret(t, r, "real token", real)
			if !tc.proxied {
				// The limitation, confirmed: fetch never reached the proxy,
				// so it got no answer (in a network namespace it cannot
				// resolve or reach anything) and no token was injected.
				if r.Code == 0 || !strings.Contains(r.Stdout, "FETCH-ERROR") {
					t.Errorf("plain fetch on Node %d: exit %d, stdout %q; want a fetch error (no proxy support before Node 24)", major, r.Code, r.Stdout)
				}
				if n := len(fake.Requests("")); n > 0 {
					t.Errorf("the fake received %d requests from an unproxied fetch", n)
				}
				if len(r.Audit) > 0 {
					t.Errorf("the proxy saw the unproxied fetch: %s", egressSummary(r))
				}
				if !t.Failed() {
					row.PassResult = "not proxied (limitation confirmed)"
					row.Notes = tc.notes + "; it failed with " + strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(r.Stdout), "FETCH-ERROR"))
					if isolateNet() {
						row.Notes += " (fails closed in the network namespace)"
					}
				}
				return
			}
			checkMessages(t, r, fake, real, placeholder)
			if !t.Failed() {
				row.Notes = tc.notes
				if tc.mode == "plain" {
					row.Notes = "`NODE_USE_ENV_PROXY=1`, set by the launcher, makes the built-in fetch use HTTPS_PROXY"
				}
			}
		})
	}
}

func TestCurl(t *testing.T) {
	curl := requireCLI(t, "curl")
	version := cliVersion(t, curl)
	t.Parallel()
	row := report(t, 40, "curl", version, "HTTPS + SSE (`-N`)", "")
	real := randomToken(t, "sk-ant-api03-", 95)
	plan, placeholder := messagesPlan(t, real)
	fake := startFake(t, fakeupstream.Config{AnthropicToken: real})
	const script = `curl -sS -N --fail-with-body -H "Authorization: Bearer $ANTHROPIC_AUTH_TOKEN" ` +
		`-H 'content-type: application/json' -H 'anthropic-version: 2023-06-01' ` +
		`-d '{"model":"claude-compat","max_tokens":16,"stream":true,"messages":[{"role":"user","content":"say ok"}]}' ` +
		`https://api.anthropic.com/v1/messages`
	r := runSandbox(t, plan, fake, t.TempDir(), map[string]string{provision.AnthropicAuthTokenEnv: real}, nil, "/bin/sh", "-c", script)
	defer func() {
		if t.Failed() || testing.Verbose() {
			t.Logf("fake upstream saw:\n%s\nproxy decisions:\n%s\ncurl stdout:\n%s\ncurl stderr:\n%s",
				fake.Summary(), egressSummary(r), tail(r.Stdout, 3000), tail(r.Stderr, 2000))
		}
	}()
	// curl prints the raw events; the deltas concatenate to the reply.
	var text strings.Builder
	for _, line := range strings.Split(r.Stdout, "\n") {
		data, ok := strings.CutPrefix(line, "data: ")
		if !ok {
			continue
		}
		var ev struct {
			Type  string `json:"type"`
			Delta struct {
				Text string `json:"text"`
			} `json:"delta"`
		}
		if json.Unmarshal([]byte(data), &ev) == nil && ev.Type == "content_block_delta" {
			text.WriteString(ev.Delta.Text)
		}
	}
	if text.String() != fake.Reply() {
		t.Errorf("curl streamed text %q, want %q", text.String(), fake.Reply())
	}
	checkMessages(t, r, fake, real, placeholder)
	checkNoSecret(t, r, "real token", real)
	if !t.Failed() {
		row.Notes = "launcher's `https_proxy` + `CURL_CA_BUNDLE` suffice"
	}
}

func TestPython(t *testing.T) {
	python := requireCLI(t, "python3")
	version := cliVersion(t, python)
	t.Parallel()
	row := report(t, 41, "Python `urllib.request`", version, "HTTPS (JSON)", "")
	real := randomToken(t, "sk-ant-api03-", 95)
	plan, placeholder := messagesPlan(t, real)
	fake := startFake(t, fakeupstream.Config{AnthropicToken: real})
	const script = `import json, os, urllib.request
req = urllib.request.Request("https://api.anthropic.com/v1/messages",
    data=json.dumps({"model": "claude-compat", "max_tokens": 16, "stream": False,
                     "messages": [{"role": "user", "content": "say ok"}]}).encode(),
    headers={"Authorization": "Bearer " + os.environ["ANTHROPIC_AUTH_TOKEN"],
             "content-type": "application/json", "anthropic-version": "2023-06-01"})
with urllib.request.urlopen(req, timeout=30) as resp:
    print(json.load(resp)["content"][0]["text"])
`
	r := runSandbox(t, plan, fake, t.TempDir(), map[string]string{provision.AnthropicAuthTokenEnv: real}, nil, python, "-c", script)
	defer func() {
		if t.Failed() || testing.Verbose() {
			t.Logf("fake upstream saw:\n%s\nproxy decisions:\n%s\npython stdout:\n%s\npython stderr:\n%s",
				fake.Summary(), egressSummary(r), tail(r.Stdout, 2000), tail(r.Stderr, 3000))
		}
	}()
	if strings.TrimSpace(r.Stdout) != fake.Reply() {
		t.Errorf("python printed %q, want %q", strings.TrimSpace(r.Stdout), fake.Reply())
	}
	checkMessages(t, r, fake, real, placeholder)
	checkNoSecret(t, r, "real token", real)
	if !t.Failed() {
		row.Notes = "launcher's `https_proxy` + `SSL_CERT_FILE` suffice"
	}
}

// checkMessages checks a generic client's run: exit 0, exactly the real
// token at the fake's Messages endpoint, nothing else called.
func checkMessages(t *testing.T, r *sandboxRun, fake *fakeupstream.Server, real, placeholder string) {
	t.Helper()
	if r.Code != 0 {
		t.Errorf("exit status = %d, want 0", r.Code)
	}
	reqs := fake.Requests("")
	ok := 0
	for _, q := range reqs {
		if q.Host != fakeupstream.AnthropicHost {
			t.Errorf("unexpected request to %s", q.Host)
			continue
		}
		if got := q.Header.Get("Authorization"); got != "Bearer "+real {
			t.Errorf("%s %s reached the fake with Authorization %s, want the real token", q.Method, q.Path, describeToken(got, real, placeholder))
		}
		if q.Path == fakeupstream.MessagesPath && q.Status == http.StatusOK {
			ok++
		}
	}
	if ok != 1 {
		t.Errorf("successful POST %s: %d, want 1", fakeupstream.MessagesPath, ok)
	}
	if r.Env["ANTHROPIC_AUTH_TOKEN"] != placeholder {
		t.Errorf("sandbox ANTHROPIC_AUTH_TOKEN is not the placeholder")
	}
}

// npmVersion reads an installed npm package's version.
func npmVersion(dir string) string {
	out, err := exec.Command("node", "-p", "require("+strconv.Quote(filepath.Join(dir, "package.json"))+").version").Output()
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(out))
}

func TestGit(t *testing.T) {
	git := requireCLI(t, "git")
	version := cliVersion(t, git)
	t.Parallel()
	row := report(t, 42, "git (smart HTTP, credential helper)", version, "HTTPS, Basic auth (clone + push)", "")
	real := "ghp_" + strings.NewReplacer("-", "x", "_", "y").Replace(randomToken(t, "", 36))
	plan, err := provision.Build(provision.Options{HostEnv: map[string]string{provision.GHTokenEnv: real}}, provision.GitHub{})
	if err != nil {
		t.Fatalf("provision.Build(github) = %v", err)
	}
	placeholder := plan.Egress.Slots[provision.GitHubSlot].Placeholder

	root := t.TempDir()
	bare := filepath.Join(root, "cork", "demo.git")
	for _, args := range [][]string{
		{"init", "-q", "--bare", "-b", "main", bare},
		{"-C", bare, "config", "http.receivepack", "true"},
	} {
		if out, err := exec.Command(git, args...).CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	fake := startFake(t, fakeupstream.Config{GitHubToken: real, GitProjectRoot: root})
	const script = `set -e
git clone -q https://github.com/cork/demo.git repo 2>&1
cd repo
echo compat > file.txt
git add file.txt
git -c user.name=cork -c user.email=cork@example.invalid commit -qm "cork compat push"
git push -q origin HEAD:main 2>&1
git ls-remote https://github.com/cork/demo.git main`
	r := runSandbox(t, plan, fake, t.TempDir(), map[string]string{provision.GHTokenEnv: real}, nil, "/bin/sh", "-c", script)
	defer func() {
		if t.Failed() || testing.Verbose() {
			t.Logf("fake upstream saw:\n%s\nproxy decisions:\n%s\ngit stdout:\n%s\ngit stderr:\n%s",
				fake.Summary(), egressSummary(r), tail(r.Stdout, 3000), tail(r.Stderr, 3000))
		}
	}()
	if r.Code != 0 {
		t.Errorf("git exit status = %d, want 0", r.Code)
	}
	out, err := exec.Command(git, "--git-dir", bare, "log", "-1", "--format=%s", "main").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "cork compat push" {
		t.Errorf("the pushed commit is not on the fake's main: %v %s", err, out)
	}
	authed := 0
	for _, q := range fake.Requests(fakeupstream.GitHubHost) {
		user, pass, ok := basicAuth(q.Header)
		switch {
		case !ok:
			// the unauthenticated first try, answered 401
		case user == provision.GitHubBasicUser && pass == real:
			authed++
		case pass == placeholder:
			t.Errorf("%s %s reached github.com with the placeholder", q.Method, q.Path)
		default:
			t.Errorf("%s %s reached github.com with some other Basic credential", q.Method, q.Path)
		}
	}
	if authed == 0 {
		t.Errorf("no request reached github.com with the real token")
	}
	if r.Env[provision.GHTokenEnv] != placeholder {
		t.Errorf("sandbox %s is not the placeholder", provision.GHTokenEnv)
	}
	checkNoSecret(t, r, "real token", real)
	if !t.Failed() {
		row.Notes = "github profile: placeholder from its credential helper (`GIT_CONFIG_*`); sent after the 401 challenge; cork decodes Basic, swaps the password, re-encodes"
	}
}

func basicAuth(h http.Header) (user, pass string, ok bool) {
	r := &http.Request{Header: h}
	return r.BasicAuth()
}
