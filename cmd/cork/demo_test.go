package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDemo runs `cork demo` as the README's first command does: it must
// exit 0 and say that every check passed.
func TestDemo(t *testing.T) {
	requireSandbox(t) // the demo runs its agent in the default local sandbox
	out, err := exec.Command(corkBinary(t), "demo", "--log").CombinedOutput()
	if err != nil {
		t.Fatalf("cork demo: %v\n%s", err, out)
	}
	for _, want := range []string{
		"sandbox ▸ answer: Hello from behind cork: your token never entered the sandbox.",
		"403 not_allowed",
		"✓ the API received the real token, not the placeholder",
		"cork demo: all 6 checks passed",
		`"decision":"inject"`,
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("cork demo output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(string(out), "✗") {
		t.Errorf("cork demo reported a failed check:\n%s", out)
	}
}
