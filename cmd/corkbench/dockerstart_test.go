package main

import (
	"testing"
	"time"
)

func TestMarkTimes(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 14, 42, 0, 0, time.UTC)
	lines := []stampedLine{
		{100 * time.Millisecond, "cork: provisioning a sandbox home with 0 dummy file(s)"},
		{1000 * time.Millisecond, "cork: docker: removed what ended sessions left behind: 1 container"},
		{1100 * time.Millisecond, "cork: docker: creating session cabb4ded552a: networks, CA volume, sandbox home"},
		// Arrives late (log buffers); its own time says 2.517 s.
		{2600 * time.Millisecond, `{"level":"info","component":"sidecar","addr":"[::]:3128","time":"2026-12-07T14:42:02.517Z","msg":"proxy listening"}`},
		{3300 * time.Millisecond, "cork: docker: preflight: the proxy answered on the sandbox network in 868ms (proxy 172.20.0.2:3128 answered 407 after 3ms (attempt 1))"},
		{3500 * time.Millisecond, "cork: docker: sidecar cork-cabb4ded552a-proxy up; the sandbox reaches it at http://172.20.0.2:3128"},
		{3600 * time.Millisecond, "cork: sandbox ready; running mark"},
		{4500 * time.Millisecond, "cork: sandbox exited with status 0; tearing down"},
		{4600 * time.Millisecond, "cork: sandbox exited with status 0; tearing down"},
		{5000 * time.Millisecond, "cork: docker: session cabb4ded552a removed"},
	}
	got := markTimes(lines, t0)
	want := map[string]time.Duration{
		"start": 0, "create": 1100 * time.Millisecond, "listen": 2517 * time.Millisecond, "probe": 3300 * time.Millisecond, "probeStart": 2432 * time.Millisecond,
		"up": 3500 * time.Millisecond, "ready": 3600 * time.Millisecond, "exited": 4500 * time.Millisecond,
		"removed": 5000 * time.Millisecond,
	}
	if len(got) != len(want) {
		t.Errorf("markTimes = %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("markTimes: %s = %v, want %v", k, got[k], v)
		}
	}
	if id := sessionIDRE.FindStringSubmatch(lines[2].text); id == nil || id[1] != "cabb4ded552a" {
		t.Errorf("sessionIDRE on %q = %q, want cabb4ded552a", lines[2].text, id)
	}
}

// TestDockerStepsChain: each step starts where another ends, from the
// start to the end, so the steps add up to the whole run.
func TestDockerStepsChain(t *testing.T) {
	at := "start"
	for _, st := range dockerSteps {
		if st.from != at {
			t.Fatalf("step %q starts at %q, want %q", st.what, st.from, at)
		}
		at = st.to
	}
	if at != "end" {
		t.Errorf("the last step ends at %q, want end", at)
	}
}

func TestEngineStarts(t *testing.T) {
	ev := func(typ, action, name, image string, ms int64) engineEvent {
		var e engineEvent
		e.Type, e.Action, e.TimeNano = typ, action, ms*int64(time.Millisecond)
		e.Actor.Attributes = map[string]string{"name": name, "image": image}
		return e
	}
	evs := []engineEvent{
		ev("network", "create", "cork-abc-internal", "", 800),
		ev("container", "create", "cork-abc-proxy", "cork-bench-sidecar:1", 1390),
		ev("container", "start", "cork-abc-proxy", "cork-bench-sidecar:1", 2500),
		ev("container", "create", "cork-abc-probe", "cork-bench-sidecar:1", 2758),
		ev("container", "start", "cork-abc-probe", "cork-bench-sidecar:1", 3697),
		ev("container", "create", "cork-other-sandbox", "cork-bench-agent:1", 3000),
		ev("container", "start", "cork-other-sandbox", "cork-bench-agent:1", 3100),
		ev("container", "create", "cork-abc-sandbox", "cork-bench-agent:1", 4331),
		ev("container", "start", "cork-abc-sandbox", "cork-bench-agent:1", 5360),
		ev("container", "create", "happy_turing", "cork-bench-agent:1", 6000),
		ev("container", "start", "happy_turing", "cork-bench-agent:1", 6900),
	}
	d := &dockerEnv{agent: "cork-bench-agent:1"}
	got := engineStarts(evs, d.roleOf("cork", "abc"))
	want := map[string]time.Duration{"proxy": 1110 * time.Millisecond, "probe": 939 * time.Millisecond, "sandbox": 1029 * time.Millisecond}
	if len(got) != len(want) {
		t.Errorf("engineStarts(cork) = %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("engineStarts(cork): %s = %v, want %v", k, got[k], v)
		}
	}
	got = engineStarts(evs, d.roleOf("docker", ""))
	if len(got) != 1 || got["run"] != 900*time.Millisecond {
		t.Errorf("engineStarts(docker run) = %v, want run: 900ms", got)
	}
}
