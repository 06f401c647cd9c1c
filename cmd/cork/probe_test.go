package main

import (
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestProbe: `cork probe` exits 0 once anything answers HTTP at the
// proxy address (a refusal counts: the proxy answered), and exits 1 with
// one line naming the address when nothing does within its timeout.
func TestProbe(t *testing.T) {
	answering := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusProxyAuthRequired)
	}))
	t.Cleanup(answering.Close)
	// A port nothing listens on: bind, note, close.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()

	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantOut  string
		wantErr  string
		maxTime  time.Duration
	}{
		{"answers", []string{"probe", "--timeout", "5s", answering.URL}, 0, "answered 407", "", 5 * time.Second},
		{"nothing listens", []string{"probe", "--timeout", "600ms", "http://" + dead}, 1, "",
			"cork: probe: proxy " + dead + ": no answer within 600ms: ", 5 * time.Second},
		{"not a URL", []string{"probe", "10.0.0.1:3128"}, 2, "", "want http://HOST:PORT", time.Second},
		{"no URL", []string{"probe"}, 2, "", "want one proxy URL", time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			code, stdout, stderr := runCork(t, nil, tc.args...)
			took := time.Since(start)
			if code != tc.wantCode {
				t.Errorf("exit %d, want %d (stdout %q, stderr %q)", code, tc.wantCode, stdout, stderr)
			}
			if !strings.Contains(stdout, tc.wantOut) {
				t.Errorf("stdout %q lacks %q", stdout, tc.wantOut)
			}
			if !strings.Contains(stderr, tc.wantErr) {
				t.Errorf("stderr %q lacks %q", stderr, tc.wantErr)
			}
			if tc.wantCode == 1 && strings.Count(stderr, "\n") != 1 {
				t.Errorf("stderr is %d lines, want one: %q", strings.Count(stderr, "\n"), stderr)
			}
			if took > tc.maxTime {
				t.Errorf("took %v, want at most %v", took, tc.maxTime)
			}
		})
	}
}
