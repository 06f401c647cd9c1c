package launch

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
)

// Labels that name the cork process owning a docker session, so that a
// later cork can tell a session whose cork is gone (killed, crashed, the
// machine rebooted) from one still running, even when the pid was reused.
const (
	LabelPID   = "cork.pid"   // cork's process id
	LabelStart = "cork.start" // its start time (Linux: clock ticks after boot); empty where unknown
	LabelBoot  = "cork.boot"  // the host's boot id; empty where unknown
	LabelHost  = "cork.host"  // the host's name: another host's sessions are never judged
	// LabelMachine is the machine's id (/etc/machine-id) and LabelPIDNS
	// its pid namespace: hosts that share a name (CI runners, containers
	// with the host's UTS namespace) are still told apart. Empty where
	// unknown.
	LabelMachine = "cork.machine"
	LabelPIDNS   = "cork.pidns"
)

// owner identifies a cork process: the values of the owner labels.
type owner struct {
	pid                               int
	start, boot, host, machine, pidns string
}

// selfOwner is the identity of this process.
func selfOwner() owner {
	host, _ := os.Hostname()
	return owner{pid: os.Getpid(), start: procStart(os.Getpid()), boot: bootID(), host: host,
		machine: machineID(), pidns: pidNamespace()}
}

func (o owner) labels() []string {
	return []string{
		"--label", LabelPID + "=" + strconv.Itoa(o.pid),
		"--label", LabelStart + "=" + o.start,
		"--label", LabelBoot + "=" + o.boot,
		"--label", LabelHost + "=" + o.host,
		"--label", LabelMachine + "=" + o.machine,
		"--label", LabelPIDNS + "=" + o.pidns,
	}
}

// gone reports whether the process o names has ended, as seen from self.
// It errs on the side of keeping: a session is judged gone only when its
// owner ran on this host (same name, and the same machine id and pid
// namespace where recorded) and is provably not running any more. With
// shared (a cluster many hosts use), an owner without a machine id is
// never judged: a host name alone does not tell two machines apart.
func (o owner) gone(self owner, shared bool) bool {
	switch {
	case o.pid <= 0 || o.host == "" || o.host != self.host:
		return false // not ours to judge
	case o.machine != "" && o.machine != self.machine, o.pidns != "" && o.pidns != self.pidns:
		return false // another machine, or another pid namespace, of the same name
	case shared && (o.machine == "" || self.machine == ""):
		return false
	case o.boot != "" && self.boot != "" && o.boot != self.boot:
		return true // the host rebooted since
	case !pidAlive(o.pid):
		return true
	case o.start != "":
		// The pid was reused by another process; a start time that
		// cannot be read (hidepid) proves nothing.
		cur := procStart(o.pid)
		return cur != "" && cur != o.start
	}
	return false
}

// DockerLeftover is one container, network or volume of a docker session
// whose cork process is gone.
type DockerLeftover struct {
	Kind    string // "container", "network" or "volume"
	ID      string // the engine's id (a volume's name)
	Name    string
	Session string
	Removed bool // false with dryRun, or when removal failed
}

func (l DockerLeftover) String() string {
	return l.Kind + " " + l.Name
}

// DockerGC finds the objects of docker sessions whose cork process is
// gone and, unless dryRun, removes them: containers first (with their
// anonymous volumes), then networks and volumes. cli and hostEnv select
// the docker client and engine as for Docker. Objects of running sessions,
// of other hosts, and without owner labels (made by a cork before them)
// are left alone. The error joins every failure; the leftovers found are
// returned either way.
func DockerGC(ctx context.Context, cli string, hostEnv map[string]string, dryRun bool) ([]DockerLeftover, error) {
	c, err := newDockerCLI(cli, hostEnv)
	if err != nil {
		return nil, err
	}
	return dockerGC(ctx, c, selfOwner(), dryRun, "")
}

// dockerGC is DockerGC with the client, the identity to judge from, and a
// session to spare (the caller's own, being created).
func dockerGC(ctx context.Context, cli *dockerCLI, self owner, dryRun bool, spare string) ([]DockerLeftover, error) {
	format := fmt.Sprintf(`{{.ID}}\t{{.Name}}\t{{.Label %q}}\t{{.Label %q}}\t{{.Label %q}}\t{{.Label %q}}\t{{.Label %q}}\t{{.Label %q}}\t{{.Label %q}}`,
		LabelSession, LabelPID, LabelStart, LabelBoot, LabelHost, LabelMachine, LabelPIDNS)
	kinds := []struct {
		kind string
		list []string
		rm   []string
	}{
		{"container", []string{"ps", "--all", "--no-trunc"}, []string{"rm", "--force", "--volumes"}},
		{"network", []string{"network", "ls", "--no-trunc"}, []string{"network", "rm"}},
		{"volume", []string{"volume", "ls"}, []string{"volume", "rm", "--force"}},
	}
	var found []DockerLeftover
	var errs []error
	for _, k := range kinds {
		f := format
		if k.kind == "container" {
			f = strings.Replace(f, "{{.Name}}", "{{.Names}}", 1)
		}
		if k.kind == "volume" {
			f = strings.Replace(f, "{{.ID}}", "{{.Name}}", 1)
		}
		lines, err := cli.lines(ctx, append(k.list, "--filter", "label="+LabelSession, "--format", f)...)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		var ids []string
		start := len(found)
		for _, l := range lines {
			fl := strings.Split(l, "\t")
			if len(fl) != 9 || fl[2] == spare {
				continue
			}
			pid, _ := strconv.Atoi(fl[3])
			o := owner{pid: pid, start: fl[4], boot: fl[5], host: fl[6], machine: fl[7], pidns: fl[8]}
			if !o.gone(self, false) {
				continue
			}
			found = append(found, DockerLeftover{Kind: k.kind, ID: fl[0], Name: fl[1], Session: fl[2]})
			ids = append(ids, fl[0])
		}
		if dryRun || len(ids) == 0 {
			continue
		}
		// One at a time: an object that another cleaner (a janitor, a
		// concurrent gc) removed meanwhile is not a failure.
		for i, id := range ids {
			if _, err := cli.output(ctx, append(k.rm, id)...); err != nil && !notFound(err) {
				errs = append(errs, err)
				continue
			}
			found[start+i].Removed = true
		}
	}
	return found, errors.Join(errs...)
}

// summarizeLeftovers is the one-line account of a gc: the sessions and
// how many objects of each kind.
func summarizeLeftovers(ls []DockerLeftover) string {
	sessions := map[string]bool{}
	count := map[string]int{}
	for _, l := range ls {
		sessions[l.Session] = true
		count[l.Kind]++
	}
	ids := make([]string, 0, len(sessions))
	for s := range sessions {
		ids = append(ids, s)
	}
	sort.Strings(ids)
	return fmt.Sprintf("session(s) %s: %d container(s), %d network(s), %d volume(s)",
		strings.Join(ids, ", "), count["container"], count["network"], count["volume"])
}
