package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cork-sh/cork/internal/testing/testenv"
)

func TestJudge(t *testing.T) {
	tests := []struct {
		name         string
		before, now  []float64
		higherBetter bool
		wantDiff     float64
		wantSpread   float64
		want         judgement
	}{
		{"within the wider range", []float64{0.36, 0.37, 0.40}, []float64{0.33, 0.35, 0.36}, true, -0.02, 0.04, judgedWithin},
		{"lower ratio beyond the spread", []float64{0.44, 0.45, 0.46}, []float64{0.40, 0.41, 0.42}, true, -0.04, 0.02, judgedWorse},
		{"higher ratio beyond the spread", []float64{0.40, 0.41, 0.42}, []float64{0.44, 0.45, 0.46}, true, 0.04, 0.02, judgedBetter},
		{"more CPU beyond the spread", []float64{86, 87, 88}, []float64{104, 106, 108}, false, 19, 4, judgedWorse},
		{"less CPU beyond the spread", []float64{104, 106, 108}, []float64{86, 87, 88}, false, -19, 4, judgedBetter},
		{"equal to the spread is noise", []float64{1, 2}, []float64{2, 3}, false, 1, 1, judgedWithin},
		{"one round", []float64{0.40}, []float64{0.30}, true, -0.10, 0, judgedNoSpread},
		{"no rounds", nil, nil, true, 0, 0, judgedNoSpread},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			diff, spread, j := judge(tt.before, tt.now, tt.higherBetter)
			if !closeTo(diff, tt.wantDiff) || !closeTo(spread, tt.wantSpread) || j != tt.want {
				t.Errorf("judge(%v, %v, %v) = %v, %v, %v, want %v, %v, %v",
					tt.before, tt.now, tt.higherBetter, diff, spread, j, tt.wantDiff, tt.wantSpread, tt.want)
			}
		})
	}
}

func closeTo(a, b float64) bool { return a-b < 1e-9 && b-a < 1e-9 }

func TestScrubRowVerdict(t *testing.T) {
	tests := []struct {
		name               string
		row                scrubRow
		wantDiff, wantText string
	}{
		{"ratio within", scrubRow{format: "%.2f", higherBetter: true, before: []float64{0.36, 0.40}, now: []float64{0.35, 0.38}},
			"-0.02", "within the spread (0.04)"},
		{"ms worse", scrubRow{format: "%+.2f ms", before: []float64{0.6, 0.7}, now: []float64{2.6, 2.7}},
			"+2.00 ms", "**worse** beyond the spread (0.10 ms)"},
		{"µs better", scrubRow{format: "%.0f µs", before: []float64{120, 124}, now: []float64{90, 92}},
			"-31 µs", "better beyond the spread (4 µs)"},
		{"one round", scrubRow{format: "%.2f", higherBetter: true, before: []float64{0.4}, now: []float64{0.3}},
			"-0.10", "one round: no spread to judge by"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			diff, text := tt.row.verdict()
			if diff != tt.wantDiff || text != tt.wantText {
				t.Errorf("verdict() = %q, %q, want %q, %q", diff, text, tt.wantDiff, tt.wantText)
			}
		})
	}
}

// loadAt is a made-up run of rps requests per second for one second,
// with cpu of proxy time.
func loadAt(rps int, cpu time.Duration) loadResult {
	return loadResult{n: rps, elapsed: time.Second, proxyCPU: cpu}
}

// madeUpReport is a scrubcost report with MITM keep-alive at 1 and 32
// connections over three rounds: direct at 10000 req/s, before at the
// given ratios of it at 1 conn, now at nowRatios; both level at 32.
func madeUpReport(beforeRatios, nowRatios []float64) *scrubReport {
	o := options{conns: 32, rounds: 3, duration: time.Second, sseRuns: 2, sseEvents: 10, sseGapMS: 20,
		bulkMiB: 64, bulkRounds: 3, corkLogLevel: "info"}
	r := &report{opts: o, started: time.Date(2026, 12, 7, 15, 0, 0, 0, time.UTC), machine: "test machine",
		load: map[string]map[string][]loadResult{"mitm-1": {}, "mitm-32": {}}}
	for i := range beforeRatios {
		r.load["mitm-1"]["direct"] = append(r.load["mitm-1"]["direct"], loadAt(10000, time.Second))
		r.load["mitm-1"]["cork@30e65e4"] = append(r.load["mitm-1"]["cork@30e65e4"], loadAt(int(10000*beforeRatios[i]), time.Second))
		r.load["mitm-1"]["cork"] = append(r.load["mitm-1"]["cork"], loadAt(int(10000*nowRatios[i]), time.Second))
		for _, v := range []string{"direct", "cork@30e65e4", "cork"} {
			r.load["mitm-32"][v] = append(r.load["mitm-32"][v], loadAt(10000-i*100, time.Second))
		}
	}
	return &scrubReport{report: r, ref: gitRef{short: "30e65e4", subject: "before"}, before: "cork@30e65e4", now: "cork",
		nowDesc: "the working tree at 0000000", goVersion: "go1.26.8"}
}

func TestScrubReportTarget(t *testing.T) {
	tests := []struct {
		name        string
		before, now []float64
		wantResult  string
		wantVerdict string
	}{
		{"level", []float64{0.36, 0.37, 0.40}, []float64{0.35, 0.37, 0.38}, "| pass |", "within the spread (0.04)"},
		{"regression", []float64{0.36, 0.37, 0.38}, []float64{0.30, 0.31, 0.32}, "| **FAIL** |", "**worse** beyond the spread (0.02)"},
		{"one round", []float64{0.37}, []float64{0.30}, "| – (one round) |", "one round: no spread to judge by"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			madeUpReport(tt.before, tt.now).write(&b)
			out := b.String()
			target := scrubLine(out, "no regression beyond the run-to-run noise")
			if !strings.HasSuffix(target, tt.wantResult) {
				t.Errorf("target row = %q, want it to end in %q", target, tt.wantResult)
			}
			row := scrubLine(out, "| MITM + inject, keep-alive, 1 conn: req/s ÷ direct |")
			if !strings.Contains(row, tt.wantVerdict) {
				t.Errorf("1-conn row = %q, want %q in it", row, tt.wantVerdict)
			}
			if !strings.Contains(out, "| MITM + inject, keep-alive, 32 conns: req/s ÷ direct | 1.00 (1.00") {
				t.Errorf("no level 32-conn row in:\n%s", out)
			}
		})
	}
}

func scrubLine(s, sub string) string {
	for _, line := range strings.Split(s, "\n") {
		if strings.Contains(line, sub) {
			return line
		}
	}
	return ""
}

func TestPerRoundSSE(t *testing.T) {
	ms := func(xs ...int) []sseResult {
		var out []sseResult
		for _, x := range xs {
			out = append(out, sseResult{first: time.Duration(x) * time.Millisecond, maxGap: 20 * time.Millisecond})
		}
		return out
	}
	// Two streams per round, three rounds (the third of "now" missing).
	r := &report{opts: options{sseRuns: 2}, sse: map[string]map[string][]sseResult{"mitm": {
		"direct": ms(1, 3, 1, 1, 2, 2),
		"now":    ms(2, 4, 5, 5),
	}}}
	got := r.perRoundSSE("mitm", "now", true)
	want := []float64{1, 4}
	if len(got) != len(want) || !closeTo(got[0], want[0]) || !closeTo(got[1], want[1]) {
		t.Errorf("perRoundSSE(mitm, now, first) = %v, want %v", got, want)
	}
}

func needGitTool(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		testenv.Missing(t, "needs git on PATH")
	}
}

func TestResolveRef(t *testing.T) {
	needGitTool(t)
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	head, err := gitOut(root, "rev-parse", "HEAD")
	if err != nil {
		testenv.Missing(t, "needs a git checkout of cork: %v", err)
	}
	r, err := resolveRef(root, "HEAD")
	if err != nil {
		t.Fatalf("resolveRef(%q, HEAD) = %v", root, err)
	}
	if r.commit != head || r.short == "" || r.subject == "" || r.top == "" {
		t.Errorf("resolveRef(%q, HEAD) = %+v, want commit %s with a short hash, subject and top", root, r, head)
	}

	var skip *refSkip
	if _, err := resolveRef(root, "no-such-ref-for-corkbench"); !errors.As(err, &skip) || !strings.Contains(err.Error(), "no such commit") {
		t.Errorf("resolveRef(unknown) = %v, want a skip naming no such commit", err)
	}
	if _, err := resolveRef(root, "--output=/tmp/x"); !errors.As(err, &skip) {
		t.Errorf("resolveRef(option-like) = %v, want a skip", err)
	}
	notGit := t.TempDir()
	t.Setenv("GIT_CEILING_DIRECTORIES", filepath.Dir(notGit))
	if _, err := resolveRef(notGit, "HEAD"); !errors.As(err, &skip) || !strings.Contains(err.Error(), "not in a git checkout") {
		t.Errorf("resolveRef(%q) = %v, want a skip naming no checkout", notGit, err)
	}
}

func TestRunScrubCostSkipsUnknownRef(t *testing.T) {
	needGitTool(t)
	var b bytes.Buffer
	if err := runScrubCost(options{scrubRef: "no-such-ref-for-corkbench"}, &b); err != nil {
		t.Fatalf("runScrubCost(unknown ref) = %v, want a note and no error", err)
	}
	if !strings.Contains(b.String(), "### "+scrubTitle) || !strings.Contains(b.String(), "Skipped: ") {
		t.Errorf("runScrubCost(unknown ref) wrote %q, want the section with a Skipped: note", b.String())
	}
}

// gitRepo makes a git repository in a temporary directory with files
// (path → content) committed, and returns its directory.
func gitRepo(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, args := range [][]string{
		{"init", "-q"},
		{"add", "."},
		{"-c", "user.name=bench", "-c", "user.email=bench@example.invalid", "commit", "-q", "-m", "the only commit"},
	} {
		if _, err := gitOut(dir, args...); err != nil {
			t.Fatalf("git %v: %v", args, err)
		}
	}
	return dir
}

func TestBuildAt(t *testing.T) {
	needGitTool(t)
	if _, err := exec.LookPath("go"); err != nil {
		testenv.Missing(t, "needs the go tool on PATH")
	}
	const goMod = "module example.invalid/fake\n\ngo 1.26\n"
	tests := []struct {
		name    string
		main    string
		wantErr string // "" for a built binary
	}{
		{"builds", "package main\n\nfunc main() {}\n", ""},
		{"a compile error is a skip naming it", "package main\n\nfunc main() { undefined() }\n", "undefined: undefined"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The module sits below the top of the checkout, as prefix tests.
			repo := gitRepo(t, map[string]string{"mod/go.mod": goMod, "mod/cmd/cork/main.go": tt.main})
			r, err := resolveRef(filepath.Join(repo, "mod"), "HEAD")
			if err != nil {
				t.Fatalf("resolveRef(HEAD) = %v", err)
			}
			if r.prefix != "mod/" {
				t.Errorf("resolveRef(HEAD).prefix = %q, want %q", r.prefix, "mod/")
			}
			bin, err := buildAt(r, t.TempDir())
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("buildAt(HEAD) = %v", err)
				}
				if fi, err := os.Stat(bin); err != nil || fi.Mode()&0o111 == 0 {
					t.Errorf("buildAt(HEAD) = %s, not an executable: %v", bin, err)
				}
				return
			}
			var skip *refSkip
			if !errors.As(err, &skip) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("buildAt(HEAD) = %v, want a skip naming %q", err, tt.wantErr)
			}
		})
	}
}
