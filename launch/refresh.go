package launch

import (
	"context"
	"maps"
	"path/filepath"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/cork-sh/cork/resolve"
)

// RefreshDebounce is how long the watcher waits after the last change to a
// host credential file before re-reading it: editors and CLIs write in
// bursts (truncate, write, rename).
const RefreshDebounce = 150 * time.Millisecond

// tokenSink receives refreshed tokens: the in-process proxy, or the
// sidecar's stdin.
type tokenSink interface {
	SetTokens(resolve.Tokens)
}

// watchSources watches the host files provisioning read (the directories,
// so atomic renames are seen) and, on change, re-reads them, re-resolves
// through Tokens and pushes the result to sink. The returned stop function
// ends the watch. A plan without sources watches nothing.
func watchSources(ctx context.Context, spec *Spec, sink tokenSink) (stop func(), err error) {
	if len(spec.Plan.Sources) == 0 {
		return func() {}, nil
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, err
	}
	files := map[string]bool{}
	dirs := map[string]bool{}
	for _, s := range spec.Plan.Sources {
		p := filepath.Clean(s.Path)
		files[p] = true
		dirs[filepath.Dir(p)] = true
	}
	for d := range dirs {
		if err := w.Add(d); err != nil {
			w.Close()
			return nil, err
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer w.Close()
		var timer *time.Timer
		var fire <-chan time.Time
		for {
			select {
			case <-ctx.Done():
				return
			case ev, ok := <-w.Events:
				if !ok {
					return
				}
				if !files[filepath.Clean(ev.Name)] {
					continue
				}
				if timer == nil {
					timer = time.NewTimer(RefreshDebounce)
				} else {
					timer.Reset(RefreshDebounce)
				}
				fire = timer.C
			case err, ok := <-w.Errors:
				if !ok {
					return
				}
				if l := spec.Proxy.Logger; l != nil {
					l.Warn().Str("error", err.Error()).Msg("credential watch")
				}
			case <-fire:
				fire = nil
				refresh(spec, sink)
			}
		}
	}()
	return func() { cancel(); wg.Wait() }, nil
}

// overlay returns a new Env holding base overlaid by top.
func overlay(base, top resolve.Env) resolve.Env {
	out := maps.Clone(base)
	if out == nil {
		out = resolve.Env{}
	}
	maps.Copy(out, top)
	return out
}

// refresh re-reads every source and pushes re-resolved tokens: the same
// provisioned-env shape as provisioning's, through the same resolution
// (Tokens). A source
// that cannot be read (mid-write, or broken) leaves the tokens as they are.
func refresh(spec *Spec, sink tokenSink) {
	plan := spec.Plan
	for _, s := range spec.Plan.Sources {
		vals, err := s.Read()
		if err != nil {
			if l := spec.Proxy.Logger; l != nil {
				l.Warn().Str("file", s.Path).Str("error", err.Error()).Msg("credential refresh: keeping the current tokens")
			}
			return
		}
		plan.ProvisionedEnv = overlay(plan.ProvisionedEnv, vals)
	}
	tokens, err := Tokens(plan, spec.HostEnv)
	if err != nil {
		if l := spec.Proxy.Logger; l != nil {
			l.Warn().Str("error", err.Error()).Msg("credential refresh: keeping the current tokens")
		}
		return
	}
	sink.SetTokens(tokens)
	if l := spec.Proxy.Logger; l != nil {
		l.Info().Strs("slots", tokens.Slots()).Msg("credentials refreshed")
	}
	spec.progress("host credentials changed; proxy tokens refreshed")
}
