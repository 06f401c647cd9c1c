package launch

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/cork-sh/cork/internal/testing/testenv"
)

// deadPID returns the pid of a process that has ended and been reaped.
func deadPID(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		testenv.Missing(t, "the true command, to make a pid that has ended: %v", err)
	}
	return cmd.Process.Pid
}

// TestOwnerGone: a session is judged gone only when its owner ran on this
// host and provably stopped: another boot, no such pid, or a reused pid.
func TestOwnerGone(t *testing.T) {
	self := selfOwner()
	if self.host == "" {
		testenv.Missing(t, "a host name (os.Hostname): the owner labels need one")
	}
	dead := deadPID(t)
	ended := owner{pid: dead, host: self.host, boot: self.boot, machine: self.machine, pidns: self.pidns}
	otherMachine := ended
	otherMachine.machine, otherMachine.boot = "another-machine", "another-boot"
	otherNS := ended
	otherNS.pidns = "1"
	legacy := owner{pid: dead, host: self.host, boot: self.boot} // labels from before machine ids
	tests := []struct {
		name         string
		o            owner
		want, shared bool // shared: judged for a cluster many hosts use
	}{
		{"this process", self, false, false},
		{"no owner labels", owner{}, false, false},
		{"another host", owner{pid: dead, host: self.host + "-other"}, false, false},
		{"ended process", ended, true, true},
		{"another boot", owner{pid: self.pid, start: self.start, host: self.host, boot: "another-boot", machine: self.machine, pidns: self.pidns}, self.boot != "", self.boot != "" && self.machine != ""},
		{"reused pid", owner{pid: self.pid, start: self.start + "1", host: self.host, boot: self.boot, machine: self.machine, pidns: self.pidns}, self.start != "", self.start != "" && self.machine != ""},
		// Hosts of one name: another machine (CI runners), another pid
		// namespace (containers sharing the host's name).
		{"another machine of the same name", otherMachine, false, false},
		{"another pid namespace", otherNS, false, false},
		{"no machine id recorded", legacy, true, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.o.gone(self, false); got != tc.want {
				t.Errorf("%+v.gone(local engine) = %v, want %v", tc.o, got, tc.want)
			}
			if got := tc.o.gone(self, true); got != (tc.want && tc.shared) {
				t.Errorf("%+v.gone(shared cluster) = %v, want %v", tc.o, got, tc.want && tc.shared)
			}
		})
	}
	if runtime.GOOS == "linux" && self.pidns == "" {
		t.Error("on Linux, the pid namespace must be known")
	}
	if runtime.GOOS == "linux" && (self.start == "" || self.boot == "") {
		t.Errorf("on Linux, start %q and boot %q must be known", self.start, self.boot)
	}
}

// fakeDockerGC is a docker client that lists objects of three sessions
// (one whose owner is this process, one whose owner ended, one of another
// host) and records every command.
func fakeDockerGC(t *testing.T) (cli *dockerCLI, argv string) {
	t.Helper()
	self := selfOwner()
	dead := deadPID(t)
	row := func(id, name, session string, pid int, host string) string {
		return strings.Join([]string{id, name, session, strconv.Itoa(pid), self.start, self.boot, host, self.machine, self.pidns}, `\t`)
	}
	rows := func(kind string) string {
		return strings.Join([]string{
			row("l-"+kind, "cork-live-"+kind, "live", self.pid, self.host),
			row("d-"+kind, "cork-dead-"+kind, "dead", dead, self.host),
			row("o-"+kind, "cork-other-"+kind, "other", dead, self.host+"-other"),
			row("s-"+kind, "cork-spare-"+kind, "spare", dead, self.host),
		}, `\n`)
	}
	dir := t.TempDir()
	argv = filepath.Join(dir, "argv")
	script := "#!/bin/sh\nprintf '%s\\n' \"$*\" >> '" + argv + "'\n" +
		"case \"$1 $2\" in\n" +
		"'ps --all') printf '" + rows("c") + "\\n' ;;\n" +
		"'network ls') printf '" + rows("n") + "\\n' ;;\n" +
		"'volume ls') printf '" + rows("v") + "\\n' ;;\n" +
		// A janitor removed the volume first: not a failure.
		"'volume rm') echo 'Error: No such volume: d-v' >&2; exit 1 ;;\n" +
		"esac\n"
	bin := filepath.Join(dir, "docker")
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return &dockerCLI{path: bin}, argv
}

// TestDockerGC: only the ended session's objects are found; with dryRun
// nothing is removed; otherwise each is removed, containers first.
func TestDockerGC(t *testing.T) {
	if runtime.GOOS == "windows" {
		testenv.Missing(t, "a POSIX shell: the fake docker client is a shell script")
	}
	for _, dryRun := range []bool{true, false} {
		t.Run("dryRun="+strconv.FormatBool(dryRun), func(t *testing.T) {
			cli, argvFile := fakeDockerGC(t)
			left, err := dockerGC(context.Background(), cli, selfOwner(), dryRun, "spare")
			if err != nil {
				t.Fatalf("dockerGC: %v", err)
			}
			var names []string
			for _, l := range left {
				names = append(names, l.String())
				if l.Session != "dead" || l.Removed == dryRun {
					t.Errorf("leftover %+v: want session dead, removed %v", l, !dryRun)
				}
			}
			if got, want := strings.Join(names, ","), "container cork-dead-c,network cork-dead-n,volume cork-dead-v"; got != want {
				t.Errorf("found %s, want %s", got, want)
			}
			b, _ := os.ReadFile(argvFile)
			var rms []string
			for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
				if strings.Contains(l, " rm") || strings.HasPrefix(l, "rm") {
					rms = append(rms, l)
				}
			}
			want := []string{"rm --force --volumes d-c", "network rm d-n", "volume rm --force d-v"}
			if dryRun {
				want = nil
			}
			if strings.Join(rms, "|") != strings.Join(want, "|") {
				t.Errorf("removals %q, want %q", rms, want)
			}
			if s := summarizeLeftovers(left); s != "session(s) dead: 1 container(s), 1 network(s), 1 volume(s)" {
				t.Errorf("summary %q", s)
			}
		})
	}
}
