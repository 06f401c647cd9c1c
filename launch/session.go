package launch

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/cork-sh/cork/proxy/scrub"
	"github.com/cork-sh/cork/resolve"
	"github.com/cork-sh/cork/settings"
)

// sandbox is what a backend supplies to a session: how the sandbox's
// proxy is reached and how its command runs. Everything else — the checks
// on the spec, the sandbox home and its dummy files, the trust files, the
// sandbox's environment, the refresh of host credentials and the order of
// teardown — is the session's, written once (runSession).
//
// A session calls, in order: preflight, makeHome, startProxy, run; then
// teardown, whatever happened, once preflight has succeeded.
type sandbox interface {
	// preflight checks everything the backend can before anything is
	// created (an image, a binary, a workspace, an engine). Its errors are
	// *SetupError.
	preflight(ctx context.Context, s *session) error
	// makeHome creates the host directory that the sandbox sees as its
	// home (teardown removes it).
	makeHome(s *session) (string, error)
	// layout says where the sandbox sees its home, and which host
	// variables it keeps (terminal and locale settings, no credential).
	layout() layout
	// startProxy starts the proxy serving s.tokens, or a sidecar serving
	// them, and says how the sandbox reaches it.
	startProxy(ctx context.Context, s *session) (*sessionProxy, error)
	// run runs the command in the sandbox with env (paths as the sandbox
	// sees them) and returns its exit status.
	run(ctx context.Context, s *session, env map[string]string) (int, error)
	// teardown removes whatever the backend created; errors name what is
	// left.
	teardown(s *session) error
}

// layout is where a sandbox sees what the session provides.
type layout struct {
	// home is the sandbox home as the sandbox sees it; empty: the host
	// path (local).
	home string
	// hostEnv are the host variables the sandbox keeps.
	hostEnv []string
}

// sessionProxy is the proxy of a session as the sandbox reaches it.
type sessionProxy struct {
	url   string    // with the session's client credential
	sink  tokenSink // where refreshed tokens go
	caPEM []byte    // the session CA, for the sandbox to trust
	// caPath is where the sandbox finds the CA alone; empty: the file the
	// session writes into the home (SandboxCAFile).
	caPath string
}

// session is one run of a command in a sandbox.
type session struct {
	spec   *Spec
	tokens resolve.Tokens
	home   string // the sandbox home on the host
}

// runSession runs spec's command in sb: the sandbox lifecycle of every
// backend.
func runSession(ctx context.Context, spec *Spec, sb sandbox) (code int, err error) {
	spec = withSessionID(spec, sb)
	s := &session{spec: spec, tokens: spec.Tokens}
	if len(spec.Command) == 0 {
		return 0, setupErrorf("no command to run")
	}
	if err := s.check(sb.layout()); err != nil {
		return 0, err
	}
	if err := sb.preflight(ctx, s); err != nil {
		return 0, err
	}
	defer func() {
		if terr := sb.teardown(s); terr != nil {
			if err == nil {
				// The command ran: its status stands beside this.
				err = &TeardownError{Err: terr}
			} else {
				err = errors.Join(err, terr)
			}
		}
	}()
	spec.progress("provisioning a sandbox home with %d dummy file(s)", len(spec.Plan.Files))
	if s.home, err = sb.makeHome(s); err != nil {
		return 0, err
	}
	if err := WriteFiles(s.home, spec.Plan.Files); err != nil {
		return 0, err
	}
	px, err := sb.startProxy(ctx, s)
	if err != nil {
		return 0, err
	}
	stopRefresh, err := watchSources(ctx, spec, px.sink)
	if err != nil {
		return 0, fmt.Errorf("watch host credentials: %w", err)
	}
	defer stopRefresh()
	caPath, bundlePath, err := writeTrust(s.home, px.caPEM)
	if err != nil {
		return 0, err
	}
	l := sb.layout()
	if l.home != "" {
		caPath = l.home + "/" + SandboxCAFile
		bundlePath = l.home + "/" + SandboxBundleFile
	}
	if px.caPath != "" {
		caPath = px.caPath
	}
	return sb.run(ctx, s, s.sandboxEnv(l, px.url, bundlePath, caPath))
}

// check refuses a spec that cannot run: a slot without its resolved
// token (a *resolve.MissingError), or a real token in anything given to
// the sandbox. It runs before anything is created or asked of the host
// (a Docker engine, a smolvm binary), for every backend.
func (s *session) check(l layout) error {
	spec := s.spec
	if ps := spec.Proxy.Settings; ps.CACertFile != "" || ps.CAKeyFile != "" || ps.CA != nil {
		// Every backend the same: the docker sidecar could not use it
		// either.
		return setupErrorf("%s, %s: not used by cork run: each run makes its own session CA, name-constrained to the intercepted hosts; a CA of your own is for cork proxy",
			settings.CACertFileVar, settings.CAKeyFileVar)
	}
	var missing []resolve.Missing
	for slot, name := range spec.Plan.Egress.TokenEnvMap {
		if s.tokens[slot].IsZero() {
			missing = append(missing, resolve.Missing{Slot: slot, Env: name})
		}
	}
	if len(missing) > 0 {
		slices.SortFunc(missing, func(a, b resolve.Missing) int { return strings.Compare(a.Env+"\x00"+a.Slot, b.Env+"\x00"+b.Slot) })
		return &SetupError{Err: &resolve.MissingError{Missing: missing}}
	}
	if _, ok := spec.Env["HOME"]; ok {
		return setupErrorf("--env HOME: the sandbox's HOME is cork's: it holds the dummy files and the CA")
	}
	return refuseTokens(spec, s.tokens, l.hostEnv)
}

// refuseTokens enforces, for every backend, that the sandbox gets
// placeholders only: no real token in the command's arguments, a sandbox
// variable (--env, the plan's, one of hostEnv: the host variables the
// sandbox keeps), a
// dummy file, the image or the workspace's path — all of which end up in
// the sandbox, and some in a process's argv on the host (docker, smolvm)
// or in `docker inspect`. A token is found as is and in every form the
// proxy's scrubber knows (URL- and JSON-escaped, hex, base64 at any
// alignment: so inside a Basic credential too). It names the slot and the
// place, never the value.
func refuseTokens(spec *Spec, tokens resolve.Tokens, hostEnv []string) error {
	findIn := tokens.Matcher(scrub.Encodings)
	for _, k := range slices.Sorted(maps.Keys(spec.Env)) {
		if slot, ok := findIn(k); ok {
			return setupErrorf("an --env variable's name holds the real %s credential: the sandbox gets placeholders only", slot)
		}
		if slot, ok := findIn(spec.Env[k]); ok {
			return setupErrorf("--env %s holds the real %s credential: the sandbox gets placeholders only, cork injects the real one on the way out", k, slot)
		}
	}
	for i, a := range spec.Command {
		if slot, ok := findIn(a); ok {
			return setupErrorf("argument %d of the command holds the real %s credential: the sandbox gets placeholders only", i, slot)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(spec.Plan.Env)) {
		if slot, ok := findIn(spec.Plan.Env[k]); ok {
			return setupErrorf("sandbox variable %s of the plan holds the real %s credential: a profile must give the sandbox placeholders only", k, slot)
		}
	}
	for _, k := range hostEnv {
		if slot, ok := findIn(spec.HostEnv[k]); ok {
			return setupErrorf("host variable %s holds the real %s credential, and the sandbox would keep it: unset it for cork run", k, slot)
		}
	}
	for _, f := range spec.Plan.Files {
		if slot, ok := findIn(f.Path + "\x00" + string(f.Data)); ok {
			return setupErrorf("sandbox file %s of the plan holds the real %s credential: a profile must give the sandbox dummy files only", f.Path, slot)
		}
	}
	for what, v := range map[string]string{"--image": spec.Image, "--workspace": spec.Workspace} {
		if slot, ok := findIn(v); ok {
			return setupErrorf("%s holds the real %s credential: it would be visible in the sandbox", what, slot)
		}
	}
	return nil
}

// sandboxEnv is the sandbox's environment, paths as the sandbox sees
// them: the host variables the layout keeps, the plan's (dummy)
// variables, the proxy and CA variables (SandboxEnv), Spec.Env, and HOME.
// A value starting with "~/" is relative to the sandbox home.
func (s *session) sandboxEnv(l layout, proxyURL, bundlePath, caPath string) map[string]string {
	home := l.home
	if home == "" {
		home = s.home
	}
	env := map[string]string{}
	for _, k := range l.hostEnv {
		if v, ok := s.spec.HostEnv[k]; ok {
			env[k] = v
		}
	}
	maps.Copy(env, sandboxEnvExpand(s.spec.Plan.Env, home))
	maps.Copy(env, SandboxEnv(proxyURL, bundlePath, caPath))
	maps.Copy(env, sandboxEnvExpand(s.spec.Env, home))
	env["HOME"] = home
	return env
}

// sandboxEnvExpand resolves plan environment values that start with "~/"
// against the sandbox home, as the sandbox sees it.
func sandboxEnvExpand(env map[string]string, home string) map[string]string {
	out := make(map[string]string, len(env))
	for k, v := range env {
		if strings.HasPrefix(v, "~/") {
			v = strings.TrimSuffix(home, "/") + v[1:]
		}
		out[k] = v
	}
	return out
}
