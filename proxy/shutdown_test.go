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
		select {
		case <-time.After(300 * time.Millisecond):
		case <-r.Context().Done():
			return
		}
		_, _ = io.WriteString(w, "finished")
	})
	for _, tc := range []struct {
		name     string
		deadline time.Duration
		wantErr  error
	}{
		{"in-flight request finishes", 5 * time.Second, nil},
		{"deadline cuts it", 50 * time.Millisecond, context.DeadlineExceeded},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up := newUpstream(t, true, h)
			tp := startProxy(t, testPolicy, testTokens(), map[string]string{"api.example.test:443": up.addr()})
			c := tp.mitm(t, "api.example.test:443", "api.example.test")
			br := bufio.NewReader(c)
			if _, err := io.WriteString(c, "GET /slow HTTP/1.1\r\nHost: api.example.test\r\n\r\n"); err != nil {
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
				if body, _ := io.ReadAll(resp.Body); string(body) != "finished" {
					t.Errorf("body = %q, want the full answer", body)
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
