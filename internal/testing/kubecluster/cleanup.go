package kubecluster

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ownedChainPrefixes name the iptables chains the cluster's components
// create: kubelet and kube-proxy (KUBE-*), kube-router (KUBE-ROUTER-*,
// KUBE-POD-FW-*, KUBE-NWPLCY-*), the bridge and portmap CNI plugins (CNI-*).
var ownedChainPrefixes = []string{"KUBE-", "CNI-"}

// routerChainPrefixes are kube-router's chains alone (its network policy
// controller); kube-proxy's KUBE-* chains stay.
var routerChainPrefixes = []string{"KUBE-ROUTER-", "KUBE-POD-FW-", "KUBE-NWPLCY-"}

// routerIPSetPrefixes are kube-router's ipsets (IPv4 and IPv6 names).
var routerIPSetPrefixes = []string{"KUBE-SRC-", "KUBE-DST-", "inet6:KUBE-SRC-", "inet6:KUBE-DST-"}

// teardown removes everything a cluster with state directory dir may have
// left: its processes and containers, the mounts under dir, its firewall
// rules, ipsets, the bridge, the lo address, the pods' cgroups and dir
// itself. It is safe on a partial start and on a killed run's leftovers.
func teardown(ctx context.Context, dir string) error {
	var errs []error
	if dir != "" {
		killUnder(dir)
		errs = append(errs, killContainers(ctx, dir))
		killUnder(dir) // shims a container kill may have woken
		errs = append(errs, unmountUnder(dir))
		removeShimSockets(dir)
	}
	for _, ipt := range []string{"iptables", "ip6tables"} {
		errs = append(errs, cleanIPTables(ctx, ipt, ownedChainPrefixes, ruleComment))
	}
	errs = append(errs, destroyIPSets(ctx, routerIPSetPrefixes))
	for _, link := range []string{bridgeName, "kube-bridge", "kube-dummy-if"} {
		if _, err := os.Stat("/sys/class/net/" + link); err == nil {
			_, err := run(ctx, "ip", "link", "del", link)
			errs = append(errs, err)
		}
	}
	if out, err := run(ctx, "ip", "-o", "addr", "show", "dev", "lo"); err == nil && bytes.Contains(out, []byte(" "+nodeIP+"/32 ")) {
		_, err := run(ctx, "ip", "addr", "del", nodeIP+"/32", "dev", "lo")
		errs = append(errs, err)
	}
	removePodCgroups()
	if dir != "" {
		if err := os.RemoveAll(dir); err != nil {
			errs = append(errs, fmt.Errorf("remove state dir: %w", err))
		}
	}
	return errors.Join(errs...)
}

// killUnder SIGKILLs every process whose command line names dir: all the
// components and containerd's shims (-address dir/...). Container
// processes do not name it; killContainers ends them.
func killUnder(dir string) {
	self := os.Getpid()
	for range 3 {
		var pids []int
		entries, _ := os.ReadDir("/proc")
		for _, e := range entries {
			pid, err := strconv.Atoi(e.Name())
			if err != nil || pid == self {
				continue
			}
			cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
			if err != nil || !bytes.Contains(cmdline, []byte(dir+"/")) {
				continue
			}
			pids = append(pids, pid)
		}
		if len(pids) == 0 {
			return
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// killContainers force-deletes every container in the cluster's own runc
// root (dir/runc, set in the containerd config).
func killContainers(ctx context.Context, dir string) error {
	root := filepath.Join(dir, "runc", criNamespace)
	if _, err := os.Stat(root); err != nil {
		return nil
	}
	out, err := run(ctx, "runc", "--root", root, "list", "-q")
	if err != nil {
		return err
	}
	ids := strings.Fields(string(out))
	errs := make([]error, len(ids))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8) // each delete waits for its container's death
	for i, id := range ids {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			_, errs[i] = run(ctx, "runc", "--root", root, "delete", "--force", id)
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// removeShimSockets removes the sockets of the cluster's containerd shims.
// containerd 1.6 puts them in /run/containerd/s whatever its config says,
// named sha256(<grpc address>/<namespace>/<container id>); a killed shim
// leaves its socket behind.
func removeShimSockets(dir string) {
	sock := filepath.Join(dir, "containerd", "containerd.sock")
	tasks, _ := os.ReadDir(filepath.Join(dir, "containerd", "state", "io.containerd.runtime.v2.task", criNamespace))
	for _, task := range tasks {
		sum := sha256.Sum256([]byte(filepath.Join(sock, criNamespace, task.Name())))
		_ = os.Remove(filepath.Join("/run/containerd/s", hex.EncodeToString(sum[:])))
	}
}

// unmountUnder detaches every mount point under dir, deepest first: the
// containers' root filesystems, the pods' network namespaces and volumes.
func unmountUnder(dir string) error {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return fmt.Errorf("read mounts: %w", err)
	}
	defer f.Close()
	var points []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		p := unescapeMount(fields[4])
		if p == dir || strings.HasPrefix(p, dir+"/") {
			points = append(points, p)
		}
	}
	sort.Slice(points, func(i, j int) bool { return len(points[i]) > len(points[j]) })
	var errs []error
	for _, p := range points {
		if err := syscall.Unmount(p, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOENT) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", p, err))
		}
	}
	return errors.Join(errs...)
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// cleanIPTables removes, in every table, the chains whose names start with
// one of prefixes, the rules elsewhere that jump to them and, if comment is
// not empty, the rules carrying it; in one iptables-restore --noflush per
// table, so other owners' rules (Docker's) stay untouched.
func cleanIPTables(ctx context.Context, ipt string, prefixes []string, comment string) error {
	if _, err := exec.LookPath(ipt + "-save"); err != nil {
		return nil
	}
	owned := func(chain string) bool {
		for _, p := range prefixes {
			if strings.HasPrefix(chain, p) {
				return true
			}
		}
		return false
	}
	var errs []error
	for _, table := range []string{"filter", "nat", "mangle", "raw"} {
		var err error
		for range 3 { // a concurrent writer (dockerd) may change a rule under us
			if err = cleanTable(ctx, ipt, table, owned, comment); err == nil {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func cleanTable(ctx context.Context, ipt, table string, owned func(string) bool, comment string) error {
	out, err := run(ctx, ipt+"-save", "-t", table)
	if err != nil {
		return nil // table absent in this kernel
	}
	var dels, chains []string
	for _, line := range strings.Split(string(out), "\n") {
		switch {
		case strings.HasPrefix(line, ":"):
			name, _, _ := strings.Cut(line[1:], " ")
			if owned(name) {
				chains = append(chains, name)
			}
		case strings.HasPrefix(line, "-A "):
			fields := strings.Fields(line)
			if owned(fields[1]) {
				continue // goes with its chain
			}
			if jumpsTo(fields, owned) || (comment != "" && strings.Contains(line, comment)) {
				dels = append(dels, "-D "+line[3:])
			}
		}
	}
	if len(dels) == 0 && len(chains) == 0 {
		return nil
	}
	var script strings.Builder
	fmt.Fprintf(&script, "*%s\n", table)
	for _, d := range dels {
		script.WriteString(d + "\n")
	}
	for _, ch := range chains {
		fmt.Fprintf(&script, ":%s - [0:0]\n", ch) // flushes it
	}
	for _, ch := range chains {
		fmt.Fprintf(&script, "-X %s\n", ch)
	}
	script.WriteString("COMMIT\n")
	cmd := exec.CommandContext(ctx, ipt+"-restore", "-w", "--noflush")
	cmd.Stdin = strings.NewReader(script.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s-restore table %s: %w: %s", ipt, table, err, bytes.TrimSpace(out))
	}
	return nil
}

func jumpsTo(fields []string, owned func(string) bool) bool {
	for i := 0; i+1 < len(fields); i++ {
		if (fields[i] == "-j" || fields[i] == "-g") && owned(fields[i+1]) {
			return true
		}
	}
	return false
}

// destroyIPSets destroys the ipsets whose names start with one of
// prefixes. Run after the rules that use them are gone.
func destroyIPSets(ctx context.Context, prefixes []string) error {
	if _, err := exec.LookPath("ipset"); err != nil {
		return nil
	}
	out, err := run(ctx, "ipset", "list", "-n")
	if err != nil {
		return nil // no ip_set support: nothing to remove
	}
	var errs []error
	for _, name := range strings.Fields(string(out)) {
		for _, p := range prefixes {
			if strings.HasPrefix(name, p) {
				_, err := run(ctx, "ipset", "destroy", name)
				errs = append(errs, err)
				break
			}
		}
	}
	return errors.Join(errs...)
}

// removePodCgroups removes the kubelet's kubepods cgroup trees (cgroupfs
// driver), deepest first; best effort: a busy cgroup stays.
func removePodCgroups() {
	roots, _ := filepath.Glob("/sys/fs/cgroup/*/kubepods")
	if st, err := os.Stat("/sys/fs/cgroup/kubepods"); err == nil && st.IsDir() {
		roots = append(roots, "/sys/fs/cgroup/kubepods")
	}
	for _, root := range roots {
		var dirs []string
		_ = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, path)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- {
			_ = syscall.Rmdir(dirs[i])
		}
	}
}

// lockMachine takes the machine-wide exclusive lock, waiting while another
// cluster runs, until ctx ends.
func lockMachine(ctx context.Context, path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open lock file %s: %w", path, err)
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("wait for lock %s (another cluster runs): %w", path, ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
}
