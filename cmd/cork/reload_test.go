package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/cork-sh/cork/internal/testing/testenv"
	"github.com/cork-sh/cork/policy"
	"github.com/cork-sh/cork/proxy"
	"github.com/cork-sh/cork/settings"
)

// startProcProxy starts `cork proxy` as its own process with policy and
// env (on top of a loopback listener and debug logs), sending no tokens:
// the test owns its stdin. It returns once the proxy listens.
func startProcProxy(t *testing.T, policy string, env ...string) *corkProxy {
	t.Helper()
	p := launchCorkProxy(t, policy, true, env...)
	p.addr = p.waitLog(t, "proxy listening")["addr"].(string)
	return p
}

// signal sends sig to the proxy process.
func (p *corkProxy) signal(t *testing.T, sig os.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal %v: %v", sig, err)
	}
}

// waitExit waits up to limit for the process to end and returns its exit
// status.
func (p *corkProxy) waitExit(t *testing.T, limit time.Duration) int {
	t.Helper()
	select {
	case <-p.stopped:
		return p.cmd.ProcessState.ExitCode()
	case <-time.After(limit):
		t.Fatalf("cork proxy still running %v after SIGTERM; log:\n%s", limit, p.logText())
		return -1
	}
}

// connectStatus sends CONNECT target through the proxy at addr and
// returns the status: 200 for a tunnel, 403 for a denial.
func connectStatus(t *testing.T, addr, target string) int {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target)
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: http.MethodConnect})
	if err != nil {
		t.Fatalf("CONNECT %s: %v", target, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// startSink listens on loopback and holds every connection until the test
// ends: a tunnel's far end.
func startSink(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { close(done); ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { <-done; c.Close() }()
		}
	}()
	return ln.Addr().String()
}

// replaceFile replaces path by a file holding data, by rename, as editors
// and config managers do.
func replaceFile(t *testing.T, path, data string) {
	t.Helper()
	tmp := path + ".new"
	if err := os.WriteFile(tmp, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func TestReloadAppliesAValidPolicyAndKeepsItOverABadOne(t *testing.T) {
	sink := startSink(t)
	p := startProcProxy(t, "allow:\n  - one.test\n",
		"CORK_ALLOW_PRIVATE=127.0.0.0/8",
		"CORK_RESOLVE=one.test:443="+sink+",two.test:443="+sink)
	check := func(t *testing.T, when string, want map[string]int) {
		t.Helper()
		for target, status := range want {
			if got := connectStatus(t, p.addr, target); got != status {
				t.Errorf("%s: CONNECT %s = %d, want %d", when, target, got, status)
			}
		}
	}
	check(t, "first policy", map[string]int{"one.test:443": 200, "two.test:443": 403})

	replaceFile(t, p.policy, "allow:\n  - two.test\n")
	p.signal(t, syscall.SIGHUP)
	if m := p.waitLog(t, "policy reloaded"); m["policy"] != p.policy {
		t.Errorf("reload line policy = %v, want %q", m["policy"], p.policy)
	}
	check(t, "after a valid reload", map[string]int{"one.test:443": 403, "two.test:443": 200})

	replaceFile(t, p.policy, "routes:\n  - host: three.test\n    slot: nosuchslot\n")
	p.signal(t, syscall.SIGHUP)
	m := p.waitLog(t, "policy reload rejected; keeping the current policy")
	if m["policy"] != p.policy || m["level"] != "error" {
		t.Errorf("rejected reload line = %v, want level error and policy %q", m, p.policy)
	}
	if e, _ := m["error"].(string); !strings.Contains(e, "nosuchslot") {
		t.Errorf("rejected reload error = %q, want it to name the unknown slot", e)
	}
	check(t, "after a rejected reload", map[string]int{"one.test:443": 403, "two.test:443": 200})
}

// TestReloadOfAFIFODoesNotBlockShutdown: the policy replaced by a FIFO
// (open(2) waits for a writer that never comes) must not keep SIGTERM
// from stopping the proxy.
func TestReloadOfAFIFODoesNotBlockShutdown(t *testing.T) {
	p := startProcProxy(t, "allow:\n  - one.test\n")
	if err := os.Remove(p.policy); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(p.policy, 0o644); err != nil {
		t.Fatal(err)
	}
	p.signal(t, syscall.SIGHUP)
	p.signal(t, syscall.SIGHUP) // coalesced behind the first
	// policy.Load opens without blocking and refuses what is not a
	// regular file; TestStuckReloadDoesNotBlockShutdown covers a reload
	// that hangs anyway.
	m := p.waitLog(t, "policy reload rejected; keeping the current policy")
	if e, _ := m["error"].(string); !strings.Contains(e, p.policy) || !strings.Contains(e, "not a regular file") {
		t.Errorf("rejected reload error = %q, want it to name %s as not a regular file", e, p.policy)
	}
	start := time.Now()
	p.signal(t, syscall.SIGTERM)
	if code := p.waitExit(t, 5*time.Second); code != 0 {
		t.Errorf("exit status after SIGTERM = %d, want 0; log:\n%s", code, p.logText())
	}
	if log := p.logText(); !strings.Contains(log, `"msg":"stopped"`) && !strings.Contains(log, `"message":"stopped"`) {
		t.Errorf("no clean shutdown (%v after SIGTERM); log:\n%s", time.Since(start), p.logText())
	}
}

// TestStuckReloadDoesNotBlockShutdown runs serveProxy in this process with
// a reload that never returns (whatever policy.Load does with a FIFO, a
// hung mount can still hold a read): cancellation, which SIGTERM causes,
// must still stop it promptly.
func TestStuckReloadDoesNotBlockShutdown(t *testing.T) {
	pol, err := policy.Parse([]byte("allow:\n  - one.test\n"))
	if err != nil {
		t.Fatal(err)
	}
	var logBuf testenv.Buffer
	log := zerolog.New(&logBuf)
	p, err := proxy.New(proxy.Config{Policy: pol, Logger: &log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	stuck := make(chan struct{})
	t.Cleanup(func() { close(stuck) })
	entered := make(chan struct{}, 10)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	done := make(chan error, 1)
	opts := &settings.Proxy{Listen: "127.0.0.1:0", TokensFile: "unused", PolicyFile: "policy.yaml"}
	go func() {
		done <- serveProxy(ctx, p, opts, nil, nil, log, func() error {
			entered <- struct{}{}
			<-stuck
			return nil
		})
	}()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(logBuf.String(), "proxy listening") {
		if time.Now().After(deadline) {
			t.Fatalf("serveProxy did not start; log:\n%s", logBuf.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	// serveProxy has called signal.Notify(SIGHUP) before that line, so this
	// reaches it rather than the default action.
	for range 3 {
		if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-entered:
	case <-time.After(5 * time.Second):
		t.Fatal("SIGHUP did not start a reload")
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("serveProxy = %v, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("serveProxy still running 5s after cancellation with a reload stuck; log:\n%s", logBuf.String())
	}
	if n := len(entered); n != 0 {
		t.Errorf("%d more reloads started while one was stuck, want 0", n)
	}
}

// TestReloaderCoalesces: requests made while a reload runs give one more
// reload, not one each, and never wait.
func TestReloaderCoalesces(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	started := make(chan int32, 10)
	release := make(chan struct{})
	var n atomic.Int32
	r := startReloader(ctx, func() {
		started <- n.Add(1)
		<-release
	})
	waitStarted := func(want int32) {
		t.Helper()
		select {
		case got := <-started:
			if got != want {
				t.Fatalf("reload #%d started, want #%d", got, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("reload #%d never started", want)
		}
	}
	r.request()
	waitStarted(1)
	begin := time.Now()
	for range 5 {
		r.request() // while #1 is stuck
	}
	if d := time.Since(begin); d > time.Second {
		t.Errorf("request() during a reload took %v, want no wait", d)
	}
	release <- struct{}{}
	waitStarted(2)
	release <- struct{}{}
	select {
	case got := <-started:
		t.Errorf("reload #%d started; want the five requests folded into one", got)
	case <-time.After(300 * time.Millisecond):
	}
	r.request()
	waitStarted(3)
	release <- struct{}{}
}

// TestReloaderStopsWithContext: after ctx is done, requests start nothing.
func TestReloaderStopsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var calls atomic.Int32
	r := startReloader(ctx, func() { calls.Add(1) })
	cancel()
	time.Sleep(50 * time.Millisecond) // let the goroutine see ctx
	r.request()
	time.Sleep(100 * time.Millisecond)
	if c := calls.Load(); c != 0 {
		t.Errorf("reloads after cancel = %d, want 0", c)
	}
}
