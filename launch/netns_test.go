//go:build linux

package launch

import (
	"bytes"
	"net"
	"os/exec"
	"slices"
	"testing"
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
		t.Skipf("host listener on 127.0.0.2:%d: %v", port, err)
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
