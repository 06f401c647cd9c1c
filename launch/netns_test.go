//go:build linux

package launch

import (
	"bytes"
	"context"
	"net"
	"os/exec"
	"slices"
	"testing"

	"github.com/cork-sh/cork/internal/testenv"
	"golang.org/x/sys/unix"
)

func TestNetns(t *testing.T) {
	requirePrivileged(t, false)
	t.Parallel()
	probe := helperLink(t, probeName)
	ns, err := newNetns()
	if err != nil {
		t.Fatalf("newNetns() = %v", err)
	}
	defer ns.Close()
	defer ns.ln.Close()
	go func() {
		for {
			c, err := ns.ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	// The same port on the host's loopback: the child must not reach it.
	port := ns.ln.Addr().(*net.TCPAddr).Port
	host, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2), Port: port})
	if err != nil {
		testenv.Missing(t, "host listener on 127.0.0.2:%d: %v", port, err)
	}
	defer host.Close()

	var out bytes.Buffer
	cmd := exec.Command(probe, "ifaces", "dial="+ns.ln.Addr().String()+","+host.Addr().String())
	cmd.Stdout = &out
	if err := ns.start(cmd); err != nil {
		t.Fatalf("ns.start = %v", err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("probe: %v\n%s", err, out.String())
	}
	lines := parseProbe(t, out.String())
	if len(lines) != 2 {
		t.Fatalf("probe output:\n%s", out.String())
	}
	if !slices.Equal(lines[0].Ifaces, []string{"lo"}) {
		t.Errorf("interfaces in the namespace = %q, want only lo", lines[0].Ifaces)
	}
	if got := lines[1].Dials[ns.ln.Addr().String()]; got != "ok" {
		t.Errorf("dial the proxy listener %s = %s, want ok", ns.ln.Addr(), got)
	}
	if got := lines[1].Dials[host.Addr().String()]; got != "ECONNREFUSED" {
		t.Errorf("dial the host's %s = %s, want ECONNREFUSED (the namespace's own loopback)", host.Addr(), got)
	}
}

// A local sandbox runs as cork's user: cork makes itself non-dumpable so
// the child cannot read the host credentials in cork's own environment
// through /proc/<cork>/environ (or ptrace it).
func TestLocalProtectsCorkProcess(t *testing.T) {
	spec, _, stderr := localSpec(t, nil, "/bin/true")
	if code, err := (&Local{}).Run(context.Background(), spec); err != nil || code != 0 {
		t.Fatalf("Run = %d, %v; stderr:\n%s", code, err, stderr)
	}
	d, err := unix.PrctlRetInt(unix.PR_GET_DUMPABLE, 0, 0, 0, 0)
	if err != nil || d != 0 {
		t.Errorf("PR_GET_DUMPABLE after a local run = %d, %v; want 0", d, err)
	}
}
