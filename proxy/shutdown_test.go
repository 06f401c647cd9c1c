package proxy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net/http"
	"testing"
	"time"
)

// Shutdown lets a request in flight inside an intercepted connection
// finish, then closes the connection; a deadline cuts what remains.
func TestShutdown(t *testing.T) {
	started := make(chan struct{}, 2)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started <- struct{}{}
		if r.URL.Path == "/stream" {
			// Chunked: the last chunk is written after the body ends.
			for range 3 {
				_, _ = io.WriteString(w, "chunk ")
				w.(http.Flusher).Flush()
				time.Sleep(100 * time.Millisecond)
			}
			_, _ = io.WriteString(w, "finished")
			return
		}
		select {
		case <-time.After(300 * time.Millisecond):
		case <-r.Context().Done():
			return
		}
		_, _ = io.WriteString(w, "finished")
	})
	for _, tc := range []struct {
		name     string
		path     string
		deadline time.Duration
		wantErr  error
		want     string
	}{
		{"in-flight request finishes", "/slow", 5 * time.Second, nil, "finished"},
		{"in-flight stream finishes", "/stream", 5 * time.Second, nil, "chunk chunk chunk finished"},
		{"deadline cuts it", "/slow", 50 * time.Millisecond, context.DeadlineExceeded, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up := newUpstream(t, true, h)
			tp := startProxy(t, testPolicy, testTokens(), map[string]string{"api.example.test:443": up.Addr()})
			c := tp.mitm(t, "api.example.test:443", "api.example.test")
			br := bufio.NewReader(c)
			if _, err := io.WriteString(c, "GET "+tc.path+" HTTP/1.1\r\nHost: api.example.test\r\n\r\n"); err != nil {
				t.Fatal(err)
			}
			<-started
			ctx, cancel := context.WithTimeout(context.Background(), tc.deadline)
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- tp.Shutdown(ctx) }()

			_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
			resp, err := http.ReadResponse(br, nil)
			if tc.wantErr == nil {
				if err != nil {
					t.Fatalf("read response during Shutdown: %v", err)
				}
				if body, err := io.ReadAll(resp.Body); string(body) != tc.want || err != nil {
					t.Errorf("body = %q (%v), want the full answer %q", body, err, tc.want)
				}
			} else if err == nil {
				t.Errorf("got a response %d after the deadline, want the connection cut", resp.StatusCode)
			}
			if err := <-done; !errors.Is(err, tc.wantErr) {
				t.Errorf("Shutdown = %v, want %v", err, tc.wantErr)
			}
			if _, err := br.ReadByte(); err == nil {
				t.Errorf("intercepted connection still open after Shutdown")
			}
		})
	}
}
