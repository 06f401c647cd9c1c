package launch

import (
	"os"
	"strconv"
	"strings"
)

// procStart is the start time of process pid in clock ticks after boot
// (field 22 of /proc/PID/stat), or "" when it cannot be read. With the
// boot id, it tells a process from a later one given the same pid.
func procStart(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return ""
	}
	// The command name (field 2) may hold spaces and parentheses: the
	// fields that follow start after its last ')'.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return ""
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 { // fields 3..22
		return ""
	}
	return f[19]
}

// bootID is the kernel's id of this boot, or "" when it cannot be read.
func bootID() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// machineID is the machine's id (systemd's /etc/machine-id, or D-Bus's),
// or "" when it has none.
func machineID() string {
	for _, f := range []string{"/etc/machine-id", "/var/lib/dbus/machine-id"} {
		if b, err := os.ReadFile(f); err == nil {
			if id := strings.TrimSpace(string(b)); id != "" {
				return id
			}
		}
	}
	return ""
}

// pidNamespace is the inode of this process's pid namespace, or "" when
// it cannot be read: a pid means a process only within its namespace.
func pidNamespace() string {
	l, err := os.Readlink("/proc/self/ns/pid")
	if err != nil {
		return ""
	}
	return strings.TrimSuffix(strings.TrimPrefix(l, "pid:["), "]")
}
