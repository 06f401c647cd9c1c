package main

import (
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cork-sh/cork/internal/testing/testenv"
)

func TestParseInitTrace(t *testing.T) {
	stderr := `init internal/bytealg @0.008 ms, 0 ms clock, 0 bytes, 0 allocs
init runtime @0.20 ms, 0.10 ms clock, 0 bytes, 0 allocs
some other line
init k8s.io/client-go/kubernetes/scheme @48 ms, 3.9 ms clock, 672648 bytes, 5665 allocs
init github.com/elazarl/goproxy @36 ms, 1.2 ms clock, 62416 bytes, 255 allocs
init main @50 ms, 0.042 ms clock, 256 bytes, 2 allocs
cork devel go1.26.8 linux/amd64
`
	got := parseInitTrace(stderr)
	if got.packages != 5 {
		t.Errorf("parseInitTrace: packages = %d, want 5", got.packages)
	}
	if want := msDur(0.1 + 3.9 + 1.2 + 0.042); got.clock != want {
		t.Errorf("parseInitTrace: clock = %v, want %v", got.clock, want)
	}
	if got.bytes != 672648+62416+256 {
		t.Errorf("parseInitTrace: bytes = %d, want %d", got.bytes, 672648+62416+256)
	}
	if want := msDur(51.9); got.end != want {
		t.Errorf("parseInitTrace: end = %v, want %v (scheme's @48 + 3.9)", got.end, want)
	}
	top := got.topModules(2)
	if len(top) != 2 || top[0] != "k8s.io 3.9 ms" || top[1] != "github.com/elazarl/goproxy 1.2 ms" {
		t.Errorf("topModules(2) = %q, want k8s.io then github.com/elazarl/goproxy", top)
	}
}

func TestModuleOf(t *testing.T) {
	for pkg, want := range map[string]string{
		"runtime":     "std",
		"crypto/x509": "std",
		"main":        "main",
		"k8s.io/apimachinery/pkg/util/validation": "k8s.io",
		"github.com/cork-sh/cork/proxy":           "github.com/cork-sh/cork",
		"golang.org/x/net/http2":                  "golang.org/x/net",
		"google.golang.org/protobuf/types/known":  "google.golang.org",
	} {
		if got := moduleOf(pkg); got != want {
			t.Errorf("moduleOf(%q) = %q, want %q", pkg, got, want)
		}
	}
}

// TestPollReady: the admin port answers 503 twice, then 200; pollReady
// returns once both ports answered, and gives up on a closed done.
func TestPollReady(t *testing.T) {
	var n atomic.Int32
	admin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/readyz" {
			t.Errorf("path %q, want /readyz", r.URL.Path)
		}
		if n.Add(1) <= 2 {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer admin.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	t0 := time.Now()
	rt, err := pollReady(ln.Addr().String(), admin.Listener.Addr().String(), nil, t0, 5*time.Second)
	if err != nil {
		t.Fatalf("pollReady: %v", err)
	}
	if rt.accept <= 0 || rt.ready <= 0 || n.Load() != 3 {
		t.Errorf("pollReady = %+v after %d /readyz, want both set after 3", rt, n.Load())
	}

	done := make(chan struct{})
	close(done)
	if _, err := pollReady(ln.Addr().String(), "127.0.0.1:1", done, time.Now(), 5*time.Second); err != errExited {
		t.Errorf("pollReady with done closed = %v, want errExited", err)
	}
}

// TestStartReadyCork starts the real `cork proxy` as the proxystart and
// memory phases do and reads its memory.
func TestStartReadyCork(t *testing.T) {
	if testing.Short() {
		t.Skip("builds cork: not with -short")
	}
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	bin, err := buildCork(root, dir)
	if err != nil {
		t.Fatal(err)
	}
	up, err := startUpstream(false)
	if err != nil {
		t.Fatal(err)
	}
	defer up.close()
	pdir := filepath.Join(dir, "session")
	if err := corkDir(pdir, up); err != nil {
		t.Fatal(err)
	}
	p, rt, err := startReadyCork(bin, pdir, up.resolveMap(), "info")
	if err != nil {
		t.Fatalf("startReadyCork: %v", err)
	}
	defer p.stop()
	if rt.accept <= 0 || rt.ready <= 0 {
		t.Errorf("startReadyCork: times %+v, want both > 0", rt)
	}
	m, err := readMem(p.pid())
	if err != nil {
		testenv.Missing(t, "readMem needs Linux's /proc/PID/smaps_rollup: %v", err)
	}
	if m.rss <= 0 || m.anon <= 0 || m.pss <= 0 {
		t.Errorf("readMem(cork proxy) = %+v, want VmRSS, RssAnon and Pss > 0", m)
	}
	if _, err := os.Stat(filepath.Join(pdir, "cork-ca.pem")); err != nil {
		t.Errorf("cork proxy wrote no CA: %v", err)
	}
}
