package smolvmstandin

import (
	"slices"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	args := []string{"machine", "run", "--net", "--image", "alpine", "--allow-cidr", "10.0.0.1/32",
		"--allow-host", "10.0.0.1", "--proxy", "http://10.0.0.1:3128",
		"--volume", "/tmp/h:/home/cork", "--volume", "/src:/workspace:ro", "--workdir", "/workspace",
		"-i", "--env", "HOME=/home/cork", "--env", "F=/home/cork/.cork/ca.pem", "--", "sh", "-c", "ls /workspace/x"}
	inv, err := Parse(args)
	if err != nil {
		t.Fatalf("Parse = %v", err)
	}
	if !inv.Net || inv.Image != "alpine" || !inv.Stdin || inv.TTY || inv.Workdir != "/workspace" {
		t.Errorf("Parse = %+v", inv)
	}
	if want := []Volume{{"/tmp/h", "/home/cork", false}, {"/src", "/workspace", true}}; !slices.Equal(inv.Volumes, want) {
		t.Errorf("Volumes = %v, want %v", inv.Volumes, want)
	}
	if !slices.Equal(inv.Command, []string{"sh", "-c", "ls /workspace/x"}) {
		t.Errorf("Command = %q", inv.Command)
	}
	if err := inv.check(); err != nil {
		t.Errorf("check = %v", err)
	}
	for in, want := range map[string]string{
		"/home/cork":             "/tmp/h",
		"/home/cork/.cork/a.pem": "/tmp/h/.cork/a.pem",
		"/home/corky":            "/home/corky",
		"/workspace/x":           "/src/x",
		"http://10.0.0.1:3128":   "http://10.0.0.1:3128",
	} {
		if got := inv.hostPath(in); got != want {
			t.Errorf("hostPath(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseRefuses(t *testing.T) {
	cases := map[string][]string{
		"not machine run":    {"machine", "exec", "--", "sh"},
		"unknown flag":       {"machine", "run", "--image", "a", "--privileged", "--", "sh"},
		"command without --": {"machine", "run", "--image", "a", "sh"},
		"relative volume":    {"machine", "run", "--image", "a", "-v", "src:/w", "--", "sh"},
		"bad env":            {"machine", "run", "--image", "a", "-e", "NOEQUALS", "--", "sh"},
	}
	for name, args := range cases {
		if _, err := Parse(args); err == nil {
			t.Errorf("%s: Parse(%q) = nil error", name, args)
		}
	}
	inv, err := Parse([]string{"machine", "run", "--allow-cidr", "10.0.0.1/32", "--proxy", "http://10.0.0.2:1", "--", "sh"})
	if err != nil {
		t.Fatal(err)
	}
	if err := inv.check(); err == nil || !strings.Contains(err.Error(), "--image") || !strings.Contains(err.Error(), "not admitted") {
		t.Errorf("check = %v, want errors about --image and the proxy's address", err)
	}
}
