package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Peers are the forward proxies cork is compared with on the paths that
// need no interception (CONNECT tunnel, plain HTTP): squid and tinyproxy,
// started from a generated configuration as children of the benchmark,
// in the foreground, on a free 127.0.0.1 port. Neither caches; squid logs
// a line per request to a file, as cork writes its audit line, tinyproxy
// only warnings (see tinyproxyConf). Their requests name the upstream by its address (route):
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
		if tail := pp.lastLines(); tail != "" {
			err = fmt.Errorf("%w; its last lines: %s", err, strings.ReplaceAll(tail, "\n", " / "))
		}
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return p, nil
}

// variant is how the load generator reaches up through p.
func (p *peer) variant(up *upstream) variant {
	return variant{name: p.name, proxy: p.url, pid: p.pid(), roots: up.pool(), up: up, peer: true}
}

// route is p as v sends it. A peer gets the upstream's address in the URL
// (so also in CONNECT); in a tunnel the Host header and, through
// clientTransport, the TLS server name keep the test names. Plain HTTP
// keeps the address as Host: Go writes the Host into the absolute URI
// that a forward proxy reads.
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
	if u.Scheme == "https" {
		p.host = u.Host
	}
	p.url = u.Scheme + "://" + addr
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
// scenarios, no ConnectPort line (every port may be tunnelled), warnings
// only in the log: tinyproxy fsyncs its log file after every line, three
// per request at LogLevel Connect, and that fsync dominated its latency.
const tinyproxyConf = `Port %[1]s
Listen 127.0.0.1
Timeout 600
MaxClients 256
Allow 127.0.0.1
DisableViaHeader Yes
LogFile "%[2]s/tinyproxy.log"
LogLevel Warning
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

// peerSet describes the peers of a run for the report.
type peerSet struct {
	names, versions []string
	notes           []string // peers skipped, and why
}

// runPeers starts the peers when the requests or latency phase runs and
// returns their variants, their description and a function that stops
// them.
func runPeers(o options, e *env) ([]variant, peerSet, func()) {
	var ps peerSet
	if !o.phase("requests") && !o.phase("latency") {
		return nil, ps, func() {}
	}
	peers, notes := startPeers(e.dir, e.up)
	ps.notes = notes
	var vs []variant
	for _, p := range peers {
		vs = append(vs, p.variant(e.up))
		ps.names = append(ps.names, p.name)
		ps.versions = append(ps.versions, p.version)
	}
	return vs, ps, func() { stopPeers(peers) }
}

// sentence says which peers ran, in which versions, and which were
// skipped.
func (ps peerSet) sentence() string {
	var parts []string
	for i, n := range ps.names {
		parts = append(parts, fmt.Sprintf("%s (`%s`)", n, ps.versions[i]))
	}
	s := ""
	if len(parts) > 0 {
		s = "Peers on the paths without interception: " + strings.Join(parts, ", ") + ", started by the benchmark " +
			"from a generated configuration (127.0.0.1 only, no cache, squid logging a line per request to a file, " +
			"tinyproxy only warnings: it fsyncs its log after every line); their requests name the upstream by its " +
			"127.0.0.1 address (in a tunnel, Host and the TLS server name stay the test names)."
	}
	if slices.Contains(ps.names, "tinyproxy") {
		s += " tinyproxy answers plain HTTP with `Connection: close`, so on that path it opens a new connection per request."
	}
	return strings.TrimSpace(s + " " + strings.Join(ps.notes, " "))
}

// writePeers writes the requests phase's scenarios through the peers.
func (r *report) writePeers(w io.Writer) {
	if len(r.peers.names) == 0 {
		if len(r.peers.notes) > 0 {
			fmt.Fprintf(w, "\n%s\n", r.peers.sentence())
		}
		return
	}
	names := append([]string{"direct", "cork"}, r.peers.names...)
	fmt.Fprintf(w, "\n#### Requests through the peers (GET 1 KiB body, same rounds)\n\n%s\n\n", r.peers.sentence())
	fmt.Fprint(w, "| scenario | direct req/s |")
	for _, n := range names[1:] {
		fmt.Fprintf(w, " %s req/s (÷ direct) |", n)
	}
	fmt.Fprintf(w, " p50 %s | p99 %s | proxy CPU per request %s |\n", strings.Join(names, " / "), strings.Join(names, " / "), strings.Join(names[1:], " / "))
	fmt.Fprintf(w, "|---|---|%s---|---|---|\n", strings.Repeat("---|", len(names)-1))
	for _, sc := range scenarios(r.opts) {
		k := sc.key
		if sc.path.auth || r.load[k] == nil {
			continue
		}
		fmt.Fprintf(w, "| %s | %.0f |", sc.title, r.rps(k, "direct"))
		var p50, p99, cpu []string
		for _, n := range names {
			if n != "direct" {
				fmt.Fprintf(w, " %.0f (%.2f) |", r.rps(k, n), r.ratio(k, n))
				cpu = append(cpu, fmt.Sprintf("%.0f", r.cpuPerReq(k, n)))
			}
			p50 = append(p50, fmtDur(r.lat(k, n, .5)))
			p99 = append(p99, fmtDur(r.lat(k, n, .99)))
		}
		errs := ""
		for _, n := range names {
			if e := r.errs(k, n); e > 0 {
				errs += fmt.Sprintf(" (errors %s: %d)", n, e)
			}
		}
		fmt.Fprintf(w, " %s | %s | %s µs%s |\n", strings.Join(p50, " / "), strings.Join(p99, " / "), strings.Join(cpu, " / "), errs)
	}
}

// tunnelTarget is the tunnel row: CONNECT tunnel at -conns
// connections, ≥ squid in the same run and ≥ 0.65 of direct.
func (r *report) tunnelTarget(row func(target, measured string, ok bool)) {
	key := "tunnel-" + itoa(r.opts.conns)
	if r.load[key] == nil {
		return
	}
	tk := r.ratio(key, "cork")
	measured := fmt.Sprintf("%.2f (baseline %.2f", tk, r.ratio(key, "baseline"))
	ok := tk >= 0.65
	for _, n := range r.peers.names {
		measured += fmt.Sprintf(", %s %.2f", n, r.ratio(key, n))
	}
	if slices.Contains(r.peers.names, "squid") && r.load[key]["squid"] != nil {
		ok = ok && tk >= r.ratio(key, "squid")
	} else {
		measured += "; squid not run"
	}
	row("CONNECT tunnel, "+itoa(r.opts.conns)+" conns: ≥ squid in the same run and ≥ 0.65 of direct", measured+")", ok)
}
