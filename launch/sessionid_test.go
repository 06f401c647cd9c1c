package launch

import (
	"context"
	"testing"

	"github.com/cork-sh/cork/resolve"
)

// idRecorder is a sandbox that records the session id its proxy gets.
type idRecorder struct {
	teardownFails
	got string
}

func (r *idRecorder) startProxy(_ context.Context, s *session) (*sessionProxy, error) {
	r.got = s.spec.Proxy.Settings.SessionID
	return &sessionProxy{url: "http://127.0.0.1:1", sink: nopSink{}, caPEM: []byte("ca")}, nil
}
func (r *idRecorder) teardown(*session) error { return nil }

// TestSessionIDReachesTheProxy: the proxy's settings carry a session id
// (a fresh one, or the one given), and the caller's Spec is not changed.
func TestSessionIDReachesTheProxy(t *testing.T) {
	spec := &Spec{Command: []string{"true"}, Tokens: resolve.Tokens{}}
	r := &idRecorder{teardownFails: teardownFails{dir: t.TempDir()}}
	if _, err := runSession(context.Background(), spec, r); err != nil {
		t.Fatal(err)
	}
	if len(r.got) != 12 {
		t.Errorf("session id = %q, want a fresh 12-digit id", r.got)
	}
	if spec.Proxy.Settings.SessionID != "" {
		t.Errorf("runSession set the caller's Spec.Proxy.Settings.SessionID = %q", spec.Proxy.Settings.SessionID)
	}
	spec.Proxy.Settings.SessionID = "given-1"
	r = &idRecorder{teardownFails: teardownFails{dir: t.TempDir()}}
	if _, err := runSession(context.Background(), spec, r); err != nil {
		t.Fatal(err)
	}
	if r.got != "given-1" {
		t.Errorf("session id = %q, want the one given, given-1", r.got)
	}
	d := &dockerSandbox{id: "abc123"}
	if got := withSessionID(&Spec{}, d).Proxy.Settings.SessionID; got != "abc123" {
		t.Errorf("docker session id = %q, want its sandbox id abc123", got)
	}
}
