package main

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Peers are the forward proxies cork is compared with on the paths that
// need no interception (CONNECT tunnel, plain HTTP): squid and tinyproxy,
// started from a generated configuration as children of the benchmark,
// in the foreground, on a free 127.0.0.1 port. Neither caches, and each
// logs one line per request or connection to a file, as cork writes its
// audit line. Their requests name the upstream by its address (route):
// tinyproxy resolves names with getaddrinfo only, and the benchmark's
// names resolve nowhere.

// peer is a running peer proxy.
type peer struct {
	*proxyProc
	version string // first line of `squid -v` / `tinyproxy -v`
}

// peerNames are the peers in the order they are reported.
var peerNames = []string{"squid", "tinyproxy"}

// startPeers starts every peer whose binary is installed. A peer that is
// absent or does not start is skipped with a logged line and a note for
// the report; it never fails the run.
func startPeers(dir string, up *upstream) (peers []*peer, notes []string) {
	for _, name := range peerNames {
		p, err := startPeer(name, dir, up)
		if err != nil {
			logf("%s skipped: %v", name, err)
			notes = append(notes, fmt.Sprintf("%s not measured: %v.", name, err))
			continue
		}
		logf("%s listening on %s (%s)", name, p.url.Host, p.version)
		peers = append(peers, p)
	}
	return peers, notes
}

// startPeer starts one peer and waits until it forwards a plain and a
// tunnelled request to up.
func startPeer(name, dir string, up *upstream) (*peer, error) {
	var dirs []string
	var start func(bin, dir string) (*proxyProc, error)
	switch name {
	case "squid":
		dirs, start = []string{"/usr/sbin", "/usr/local/sbin"}, startSquid
	case "tinyproxy":
		dirs, start = []string{"/usr/bin", "/usr/sbin", "/usr/local/bin"}, startTinyproxy
	default:
		return nil, fmt.Errorf("unknown peer %q", name)
	}
	bin, err := lookPeer(name, dirs...)
	if err != nil {
		return nil, err
	}
	out, err := exec.Command(bin, "-v").Output()
	if err != nil {
		return nil, fmt.Errorf("%s -v: %w", bin, err)
	}
	version, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	pp, err := start(bin, dir)
	if err != nil {
		return nil, err
	}
	p := &peer{proxyProc: pp, version: version}
	if err := waitForwarding(p.variant(up), pp.done); err != nil {
		pp.stop()
		return nil, fmt.Errorf("%s: %w\n%s", name, err, pp.lastLines())
	}
	return p, nil
}

// variant is how the load generator reaches up through p.
func (p *peer) variant(up *upstream) variant {
	return variant{name: p.name, proxy: p.url, pid: p.pid(), roots: up.pool(), up: up, peer: true}
}

// route is p as v sends it. A peer gets the upstream's address in the URL
// (so also in CONNECT); the Host header and, through clientTransport, the
// TLS server name keep the test names.
func (v variant) route(p path) path {
	if !v.peer || v.up == nil {
		return p
	}
	u, err := url.Parse(p.url)
	if err != nil {
		return p
	}
	port := "80"
	if u.Scheme == "https" {
		port = "443"
	}
	addr, ok := v.up.resolveMap()[u.Hostname()+":"+port]
	if !ok {
		return p
	}
	p.host, p.url = u.Host, u.Scheme+"://"+addr
	return p
}

// lookPeer finds a peer's binary on PATH or in dirs (sbin is often not on
// PATH).
func lookPeer(name string, dirs ...string) (string, error) {
	if bin, err := exec.LookPath(name); err == nil {
		return bin, nil
	}
	for _, d := range dirs {
		if bin, err := exec.LookPath(filepath.Join(d, name)); err == nil {
			return bin, nil
		}
	}
	return "", fmt.Errorf("%s not installed (not on PATH nor in %s)", name, strings.Join(dirs, ", "))
}

// waitForwarding waits until a plain and a tunnelled request through v
// succeed, for at most 15 s or until done closes (the peer exited).
func waitForwarding(v variant, done <-chan struct{}) error {
	deadline := time.Now().Add(15 * time.Second)
	for _, p := range []path{pathPlain, pathTunnel} {
		for {
			c, tr, err := warmClient(v, p)
			if err == nil {
				c.CloseIdleConnections()
				tr.CloseIdleConnections()
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("no %s request forwarded within 15s: %w", p.name, err)
			}
			select {
			case <-done:
				return errors.New("exited")
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	return nil
}

// squidConf is a forward proxy for 127.0.0.1 clients only: no cache, no
// disk, every CONNECT port allowed, one access-log line per request,
// everything it writes in its own directory. shutdown_lifetime 0 makes
// SIGTERM end it at once (the default waits 30 s for clients).
const squidConf = `http_port %[1]s
acl bench src 127.0.0.1/32
http_access allow bench
http_access deny all
cache deny all
cache_mem 0 MB
hosts_file %[2]s/hosts
pid_filename %[2]s/squid.pid
access_log stdio:%[2]s/access.log
cache_log %[2]s/cache.log
netdb_filename none
coredump_dir %[2]s
shutdown_lifetime 0 seconds
visible_hostname cork-bench
max_filedescriptors 4096
`

// startSquid runs `squid -N -f CONF` (foreground, no daemon, one process).
// As root squid drops to its cache_effective_user (Debian: proxy), so its
// directory is that user's, and the run's directory is made traversable
// (nothing in it is secret: the tokens go to cork on stdin).
func startSquid(bin, dir string) (*proxyProc, error) {
	sdir := filepath.Join(dir, "squid")
	if err := os.MkdirAll(sdir, 0o755); err != nil {
		return nil, err
	}
	listen, err := freePort()
	if err != nil {
		return nil, err
	}
	hosts := fmt.Sprintf("127.0.0.1 %s %s\n", hostMITM, hostTunnel)
	if err := os.WriteFile(filepath.Join(sdir, "hosts"), []byte(hosts), 0o644); err != nil {
		return nil, err
	}
	conf := filepath.Join(sdir, "squid.conf")
	if err := os.WriteFile(conf, fmt.Appendf(nil, squidConf, listen, sdir), 0o644); err != nil {
		return nil, err
	}
	if os.Geteuid() == 0 {
		if err := chownForSquid(dir, sdir); err != nil {
			return nil, err
		}
	}
	p := &proxyProc{name: "squid", cmd: exec.Command(bin, "-N", "-f", conf), done: make(chan struct{})}
	return p, startListening(p, listen)
}

// chownForSquid gives sdir to squid's unprivileged user and lets it
// traverse dir.
func chownForSquid(dir, sdir string) error {
	u, err := user.Lookup("proxy")
	if err != nil {
		return fmt.Errorf("squid runs as root and drops to user proxy: %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := os.Chmod(dir, 0o711); err != nil {
		return err
	}
	return filepath.Walk(sdir, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Chown(p, uid, gid)
	})
}

// tinyproxyConf: 127.0.0.1 only, enough clients for the 32-connection
// scenarios, no ConnectPort line (every port may be tunnelled), one log
// line per connection.
const tinyproxyConf = `Port %[1]s
Listen 127.0.0.1
Timeout 600
MaxClients 256
Allow 127.0.0.1
DisableViaHeader Yes
LogFile "%[2]s/tinyproxy.log"
LogLevel Connect
PidFile "%[2]s/tinyproxy.pid"
`

// startTinyproxy runs `tinyproxy -d -c CONF` (foreground).
func startTinyproxy(bin, dir string) (*proxyProc, error) {
	tdir := filepath.Join(dir, "tinyproxy")
	if err := os.MkdirAll(tdir, 0o755); err != nil {
		return nil, err
	}
	listen, err := freePort()
	if err != nil {
		return nil, err
	}
	_, port, _ := net.SplitHostPort(listen)
	conf := filepath.Join(tdir, "tinyproxy.conf")
	if err := os.WriteFile(conf, fmt.Appendf(nil, tinyproxyConf, port, tdir), 0o644); err != nil {
		return nil, err
	}
	p := &proxyProc{name: "tinyproxy", cmd: exec.Command(bin, "-d", "-c", conf), done: make(chan struct{})}
	return p, startListening(p, listen)
}

// startListening starts p and waits until listen accepts connections.
func startListening(p *proxyProc, listen string) error {
	p.cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	addr := make(chan string, 1)
	if err := p.start(func() { addr <- waitListening(listen, p.done) }); err != nil {
		return err
	}
	return p.waitAddr(addr)
}

// stopPeers stops every peer.
func stopPeers(peers []*peer) {
	for _, p := range peers {
		p.stop()
	}
}
