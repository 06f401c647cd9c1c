// Package smolvmstandin is a test-only stand-in for the smolvm CLI, which
// cannot run on machines without KVM. Main plays `smolvm machine run`: it
// records the invocation for the test to check, then runs the command for
// real, but inside a network namespace the test prepared (its stand-in for
// the VM's network: a veth whose far end is a host address the proxy
// listens on, and no other route), with only the -e environment, and with
// guest paths under -v mounts mapped back to their host directories.
//
// It is configured by a JSON file named ConfigFile next to the executable
// (the tests put a link named "smolvm" first on PATH), never by the
// environment, which cork filters. It refuses to run a command outside a
// namespace.
package smolvmstandin

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
)

// ConfigFile is the stand-in's configuration, next to its executable.
const ConfigFile = "smolvm-standin.json"

// GuestPath is the PATH a command gets, as an image's default would be.
const GuestPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Config is the content of ConfigFile.
type Config struct {
	// Netns is the network namespace (as for `ip netns exec`) the command
	// runs in. Required.
	Netns string `json:"netns"`
	// Record is where the invocation's arguments (without argv[0]) are
	// written as a JSON array. Empty records nothing.
	Record string `json:"record"`
}

// Invocation is a parsed `smolvm machine run` command line.
type Invocation struct {
	Net        bool
	Image      string
	AllowCIDR  []netip.Prefix
	AllowHost  []string
	Proxy      string
	Volumes    []Volume
	Workdir    string
	Env        []string // K=V, in order
	Stdin, TTY bool
	Command    []string
}

// Volume is one -v HOST:GUEST[:ro].
type Volume struct {
	Host, Guest string
	ReadOnly    bool
}

// Main runs the stand-in with args (os.Args) and returns its exit status.
func Main(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	cfg, err := loadConfig(args[0])
	if err != nil {
		fmt.Fprintf(stderr, "smolvm stand-in: %v\n", err)
		return 125
	}
	if cfg.Record != "" {
		b, _ := json.Marshal(args[1:])
		if err := os.WriteFile(cfg.Record, b, 0o600); err != nil {
			fmt.Fprintf(stderr, "smolvm stand-in: record: %v\n", err)
			return 125
		}
	}
	inv, err := Parse(args[1:])
	if err != nil {
		fmt.Fprintf(stderr, "Error: %v\n", err)
		return 2
	}
	if err := inv.check(); err != nil {
		fmt.Fprintf(stderr, "Error: %v\n", err)
		return 2
	}
	if cfg.Netns == "" {
		fmt.Fprintln(stderr, "smolvm stand-in: no network namespace configured; refusing to run the command on the host's network")
		return 125
	}
	return inv.run(cfg.Netns, stdin, stdout, stderr)
}

func loadConfig(argv0 string) (Config, error) {
	var cfg Config
	self := argv0
	if !filepath.IsAbs(self) {
		if p, err := exec.LookPath(argv0); err == nil {
			self = p
		}
	}
	b, err := os.ReadFile(filepath.Join(filepath.Dir(self), ConfigFile))
	if err != nil {
		return cfg, err
	}
	return cfg, json.Unmarshal(b, &cfg)
}

// Parse parses the arguments after argv[0]: "machine run FLAGS -- COMMAND".
// It knows the flags cork uses and rejects any other, as smolvm's parser
// would.
func Parse(args []string) (*Invocation, error) {
	if len(args) < 2 || args[0] != "machine" || args[1] != "run" {
		return nil, fmt.Errorf("want `machine run`, got %q", args)
	}
	inv := &Invocation{}
	fs := flag.NewFlagSet("smolvm machine run", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.BoolVar(&inv.Net, "net", false, "")
	fs.StringVar(&inv.Image, "image", "", "")
	fs.StringVar(&inv.Proxy, "proxy", "", "")
	fs.StringVar(&inv.Workdir, "workdir", "", "")
	fs.BoolVar(&inv.Stdin, "i", false, "")
	fs.BoolVar(&inv.TTY, "t", false, "")
	fs.Func("allow-cidr", "", func(v string) error {
		p, err := netip.ParsePrefix(v)
		if err != nil {
			return err
		}
		inv.AllowCIDR = append(inv.AllowCIDR, p)
		return nil
	})
	fs.Func("allow-host", "", func(v string) error { inv.AllowHost = append(inv.AllowHost, v); return nil })
	fs.Func("env", "", func(v string) error {
		if k, _, ok := strings.Cut(v, "="); !ok || k == "" {
			return fmt.Errorf("--env %q: want KEY=VALUE", v)
		}
		inv.Env = append(inv.Env, v)
		return nil
	})
	fs.Func("volume", "", func(v string) error {
		vol := Volume{}
		if strings.HasSuffix(v, ":ro") {
			vol.ReadOnly = true
			v = strings.TrimSuffix(v, ":ro")
		}
		var ok bool
		if vol.Host, vol.Guest, ok = strings.Cut(v, ":"); !ok || !filepath.IsAbs(vol.Host) || !filepath.IsAbs(vol.Guest) {
			return fmt.Errorf("--volume %q: want HOST:GUEST[:ro] with absolute paths", v)
		}
		inv.Volumes = append(inv.Volumes, vol)
		return nil
	})
	if err := fs.Parse(args[2:]); err != nil {
		return nil, err
	}
	// flag stops at the first non-flag or after "--": smolvm needs "--"
	// before a command.
	rest := fs.Args()
	if n := len(args[2:]) - len(rest); n == 0 || args[2:][n-1] != "--" {
		if len(rest) > 0 {
			return nil, fmt.Errorf("unexpected argument %q (the command goes after --)", rest[0])
		}
	}
	inv.Command = rest
	return inv, nil
}

// check applies what smolvm would refuse or what would fail in a VM.
func (inv *Invocation) check() error {
	var errs []error
	if inv.Image == "" {
		errs = append(errs, errors.New("--image: required"))
	}
	if len(inv.Command) == 0 {
		errs = append(errs, errors.New("no command"))
	}
	if inv.Proxy != "" && (len(inv.AllowCIDR) > 0 || len(inv.AllowHost) > 0) {
		// The image pull goes through --proxy: its address must be allowed.
		u, err := url.Parse(inv.Proxy)
		if err != nil {
			errs = append(errs, fmt.Errorf("--proxy %q: %v", inv.Proxy, err))
		} else if ip, err := netip.ParseAddr(u.Hostname()); err != nil || !inv.allowed(ip) {
			errs = append(errs, fmt.Errorf("--proxy %q: not admitted by the egress allow list", inv.Proxy))
		}
	}
	return errors.Join(errs...)
}

func (inv *Invocation) allowed(ip netip.Addr) bool {
	for _, p := range inv.AllowCIDR {
		if p.Contains(ip) {
			return true
		}
	}
	for _, h := range inv.AllowHost {
		if a, err := netip.ParseAddr(h); err == nil && a == ip {
			return true
		}
	}
	return false
}

// hostPath maps a guest path under a mount to its host path; other
// strings are returned unchanged.
func (inv *Invocation) hostPath(s string) string {
	vols := append([]Volume(nil), inv.Volumes...)
	sort.Slice(vols, func(i, j int) bool { return len(vols[i].Guest) > len(vols[j].Guest) })
	for _, v := range vols {
		g := strings.TrimSuffix(v.Guest, "/")
		if s == g {
			return v.Host
		}
		if strings.HasPrefix(s, g+"/") {
			return filepath.Join(v.Host, s[len(g)+1:])
		}
	}
	return s
}

func (inv *Invocation) run(netns string, stdin io.Reader, stdout, stderr io.Writer) int {
	env := []string{"PATH=" + GuestPath}
	for _, kv := range inv.Env {
		k, v, _ := strings.Cut(kv, "=")
		env = append(env, k+"="+inv.hostPath(v))
	}
	argv := []string{"netns", "exec", netns}
	for _, a := range inv.Command {
		argv = append(argv, inv.hostPath(a))
	}
	cmd := exec.Command("ip", argv...)
	cmd.Env = env
	if inv.Workdir != "" {
		cmd.Dir = inv.hostPath(inv.Workdir)
	}
	if inv.Stdin {
		cmd.Stdin = stdin
	}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(stderr, "smolvm stand-in: %v\n", err)
		return 125
	}
	done := make(chan struct{})
	go func() {
		for {
			select {
			case s := <-sigs:
				cmd.Process.Signal(s)
			case <-done:
				return
			}
		}
	}()
	err := cmd.Wait()
	close(done)
	if err == nil {
		return 0
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return ee.ExitCode()
	}
	fmt.Fprintf(stderr, "smolvm stand-in: %v\n", err)
	return 125
}
