package launch

import (
	"context"
	"encoding/base64"
	"errors"
	"net/url"
	"strings"
	"testing"

	"github.com/cork-sh/cork/provision"
	"github.com/cork-sh/cork/resolve"
)

// resolved returns spec with its tokens resolved as `cork run` resolves
// them (Tokens); a missing credential leaves its slot without a token.
func resolved(spec *Spec) *Spec {
	spec.Tokens, _ = Tokens(spec.Plan, spec.HostEnv)
	return spec
}

// The one check of what the sandbox gets, for every backend: a real token
// anywhere in it is refused before anything is created, naming the slot
// and the place, never the value.
func TestRefuseTokens(t *testing.T) {
	t.Parallel()
	tokens := resolve.Tokens{"api": resolve.NewSecret(testToken)}
	keep := []string{"TERM"}
	cases := []struct {
		name   string
		change func(*Spec)
		where  string // "" = accepted
	}{
		{"placeholders only", func(*Spec) {}, ""},
		{"in an --env value", func(s *Spec) { s.Env = map[string]string{"LEAK": "Bearer " + testToken} }, "--env LEAK"},
		{"in an --env value, inside Basic", func(s *Spec) {
			s.Env = map[string]string{"AUTH": "Basic " + base64.StdEncoding.EncodeToString([]byte("x:"+testToken))}
		}, "--env AUTH"},
		{"in the command, URL-escaped", func(s *Spec) { s.Command = []string{"curl", "https://h/?k=" + url.QueryEscape(testToken+"/=")} }, "argument 1"},
		{"in a dummy file, base64", func(s *Spec) {
			s.Plan.Files = append(s.Plan.Files, provision.File{Path: ".b", Data: []byte(base64.RawURLEncoding.EncodeToString([]byte("ab" + testToken)))})
		}, "sandbox file .b"},
		{"in an --env name", func(s *Spec) { s.Env = map[string]string{testToken: "x"} }, "--env variable's name"},
		{"in the command", func(s *Spec) { s.Command = []string{"sh", "-c", "echo " + testToken} }, "argument 2"},
		{"in a plan variable", func(s *Spec) { s.Plan.Env["BAD"] = testToken }, "sandbox variable BAD"},
		{"in a kept host variable", func(s *Spec) { s.HostEnv["TERM"] = testToken }, "host variable TERM"},
		{"in a host variable the sandbox does not keep", func(s *Spec) { s.HostEnv["OTHER"] = testToken }, ""},
		{"in a dummy file", func(s *Spec) {
			s.Plan.Files = append(s.Plan.Files, provision.File{Path: ".x", Data: []byte("key=" + testToken)})
		}, "sandbox file .x"},
		{"in the image", func(s *Spec) { s.Image = "img:" + testToken }, "--image"},
		{"in the workspace", func(s *Spec) { s.Workspace = "/src/" + testToken }, "--workspace"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			spec := &Spec{Plan: testPlan(), HostEnv: map[string]string{"TERM": "xterm"}, Command: []string{"sh"}}
			tc.change(spec)
			err := refuseTokens(spec, tokens, keep)
			if tc.where == "" {
				if err != nil {
					t.Errorf("refuseTokens = %v, want nil", err)
				}
				return
			}
			var se *SetupError
			if !errors.As(err, &se) || !strings.Contains(err.Error(), tc.where) || !strings.Contains(err.Error(), "api") {
				t.Errorf("refuseTokens = %v, want a *SetupError naming slot api and %s", err, tc.where)
			}
			if err != nil && strings.Contains(err.Error(), testToken) {
				t.Errorf("refuseTokens error %q reveals the token", err)
			}
		})
	}
}

// A spec whose tokens were not resolved is refused before anything is
// created, naming the slot and its variable; so are a CA of the
// operator's (each run makes its own) and a spec without a command. Every
// backend goes through the same checks.
func TestSessionCheck(t *testing.T) {
	t.Parallel()
	for name, b := range Backends() {
		t.Run(name, func(t *testing.T) {
			spec := &Spec{Plan: testPlan(), HostEnv: map[string]string{"API_TOKEN": testToken}, Command: []string{"true"}, Image: "i"}
			_, err := b.Run(context.Background(), spec)
			var se *SetupError
			if !errors.As(err, &se) || !strings.Contains(err.Error(), "missing credential: API_TOKEN (slot api)") {
				t.Errorf("Run without tokens = %v, want a *SetupError naming the slot", err)
			}
			spec = resolved(spec)
			spec.Proxy.Settings.CACertFile, spec.Proxy.Settings.CAKeyFile = "/ca.pem", "/ca.key"
			if _, err := b.Run(context.Background(), spec); !errors.As(err, &se) || !strings.Contains(err.Error(), "CORK_CA_CERT_FILE, CORK_CA_KEY_FILE: not used by cork run") {
				t.Errorf("Run with a CA of the operator's = %v, want a *SetupError naming the variables", err)
			}
			spec.Proxy.Settings.CACertFile, spec.Proxy.Settings.CAKeyFile = "", ""
			spec.Env = map[string]string{"HOME": "/elsewhere"}
			if _, err := b.Run(context.Background(), spec); !errors.As(err, &se) || !strings.Contains(err.Error(), "--env HOME") {
				t.Errorf("Run with --env HOME = %v, want a *SetupError naming it", err)
			}
			spec.Env = nil
			spec.Command = nil
			if _, err := b.Run(context.Background(), spec); !errors.As(err, &se) || !strings.Contains(err.Error(), "no command") {
				t.Errorf("Run without a command = %v, want a *SetupError", err)
			}
		})
	}
}

// teardownFails is a sandbox whose command exits 7 and whose teardown
// fails.
type teardownFails struct{ dir string }

func (f *teardownFails) preflight(context.Context, *session) error { return nil }
func (f *teardownFails) makeHome(*session) (string, error)         { return f.dir, nil }
func (f *teardownFails) layout() layout                            { return layout{} }
func (f *teardownFails) startProxy(context.Context, *session) (*sessionProxy, error) {
	return &sessionProxy{url: "http://127.0.0.1:1", sink: nopSink{}, caPEM: []byte("ca")}, nil
}
func (f *teardownFails) run(context.Context, *session, map[string]string) (int, error) {
	return 7, nil
}
func (f *teardownFails) teardown(*session) error { return errors.New("namespace x: still there") }

type nopSink struct{}

func (nopSink) SetTokens(resolve.Tokens) {}

// TestTeardownErrorKeepsStatus: a teardown that fails after the command
// ran is a *TeardownError, beside the command's status, which stands.
func TestTeardownErrorKeepsStatus(t *testing.T) {
	spec := &Spec{Command: []string{"true"}, Tokens: resolve.Tokens{}}
	code, err := runSession(context.Background(), spec, &teardownFails{dir: t.TempDir()})
	var te *TeardownError
	if code != 7 || !errors.As(err, &te) || !strings.Contains(err.Error(), "still there") {
		t.Fatalf("runSession = %d, %v: want 7 and a *TeardownError", code, err)
	}
}
