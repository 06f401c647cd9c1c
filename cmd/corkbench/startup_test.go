package main

import (
	"slices"
	"testing"
	"time"
)

func TestPct(t *testing.T) {
	ms := func(xs ...int) []time.Duration {
		var out []time.Duration
		for _, x := range xs {
			out = append(out, time.Duration(x)*time.Millisecond)
		}
		return out
	}
	twenty := ms(20, 19, 18, 17, 16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1)
	tests := []struct {
		name string
		xs   []time.Duration
		q    float64
		want time.Duration
	}{
		{"empty", nil, 0.9, 0},
		{"one", ms(7), 0.9, 7 * time.Millisecond},
		{"p90 of 20 is the 18th", twenty, 0.9, 18 * time.Millisecond},
		{"p50 of 20 is the 10th", twenty, 0.5, 10 * time.Millisecond},
		{"p90 of 10 is the 9th", ms(10, 1, 9, 2, 8, 3, 7, 4, 6, 5), 0.9, 9 * time.Millisecond},
		{"p100 is the largest", ms(3, 9, 1), 1, 9 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := slices.Clone(tt.xs)
			if got := pct(tt.xs, tt.q); got != tt.want {
				t.Errorf("pct(%v, %v) = %v, want %v", tt.xs, tt.q, got, tt.want)
			}
			if !slices.Equal(in, tt.xs) {
				t.Errorf("pct reordered its input: %v, was %v", tt.xs, in)
			}
		})
	}
}

func TestReadyLine(t *testing.T) {
	tests := []struct {
		name, stderr, want string
	}{
		{"confined", "cork: provisioning a sandbox home with 0 dummy file(s)\n" +
			"cork: sandbox ready (namespaces user,mount,pid,ipc,uts,net; landlock ABI 7; seccomp); running mark\n",
			"namespaces user,mount,pid,ipc,uts,net; landlock ABI 7; seccomp"},
		{"unconfined", "cork: sandbox ready (unconfined); running mark\n", "unconfined"},
		{"no progress line", `{"level":"info","msg":"proxy ready"}` + "\n", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := readyLine(tt.stderr); got != tt.want {
				t.Errorf("readyLine(%q) = %q, want %q", tt.stderr, got, tt.want)
			}
		})
	}
}

// TestStartupAdded checks that the sandbox's cost is paired by round:
// confined − unconfined of the same round, whatever the other rounds did.
func TestStartupAdded(t *testing.T) {
	ms := time.Millisecond
	r := &startupReport{samples: map[string][]startupSample{
		"unconfined": {{first: 40 * ms}, {first: 100 * ms}, {first: 30 * ms}},
		"confined":   {{first: 90 * ms}, {first: 160 * ms}, {first: 75 * ms}},
	}}
	got := r.added(firstOf)
	want := []time.Duration{50 * ms, 60 * ms, 45 * ms}
	if !slices.Equal(got, want) {
		t.Fatalf("added(first) = %v, want %v", got, want)
	}
	if m := median(got); m != 50*ms {
		t.Errorf("median(added) = %v, want 50ms", m)
	}
}

func TestStartupArgv(t *testing.T) {
	s := &startupEnv{cork: "/b/cork"}
	tests := []struct {
		variant string
		want    []string
	}{
		{"direct", []string{"/b/mark"}},
		{"unconfined", []string{"/b/cork", "run", "--backend", "local", "--inject", "api.example.com=STARTUP_VAR", "--no-isolate", "--", "/b/mark"}},
		{"confined", []string{"/b/cork", "run", "--backend", "local", "--inject", "api.example.com=STARTUP_VAR", "--", "/b/mark"}},
	}
	for _, tt := range tests {
		t.Run(tt.variant, func(t *testing.T) {
			if got := s.argv(tt.variant, "/b/mark"); !slices.Equal(got, tt.want) {
				t.Errorf("argv(%q) = %q, want %q", tt.variant, got, tt.want)
			}
		})
	}
}
