package gitpush

import (
	"errors"
	"strings"
	"testing"
)

func TestRefusal(t *testing.T) {
	cmds := []Command{{zero1, oidA, "refs/heads/main"}, {oidA, zero1, "refs/tags/v1"}}
	reason := func(c Command) string { return "denied " + c.Ref[5:] }
	report := pkt("unpack ok\n") + pkt("ng refs/heads/main denied heads/main\n") + pkt("ng refs/tags/v1 denied tags/v1\n") + "0000"
	for _, tc := range []struct {
		name string
		caps []string
		want string
		err  error
	}{
		{"report-status", []string{"report-status"}, report, nil},
		{"report-status-v2", []string{"report-status-v2", "quiet"}, report, nil},
		{"side-band-64k", []string{"report-status", "side-band-64k"},
			pkt("\x02cork: no\ncork: line?two\n") + pkt("\x01"+report) + "0000", nil},
		{"no report", []string{"side-band-64k"}, "", ErrNoReport},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &Request{Commands: cmds, Capabilities: tc.caps}
			got, err := Refusal(r, []string{"cork: no", "cork: line\ntwo"}, reason)
			if !errors.Is(err, tc.err) || string(got) != tc.want {
				t.Errorf("Refusal(%q) = %q, %v; want %q, %v", tc.caps, got, err, tc.want, tc.err)
			}
		})
	}
}

func TestRefusalSplitsBands(t *testing.T) {
	var cmds []Command
	for range 3000 {
		cmds = append(cmds, Command{zero1, oidA, "refs/heads/" + strings.Repeat("b", 60)})
	}
	msgs := make([]string, 3000)
	for i := range msgs {
		msgs[i] = "cork: push to refs/heads/" + strings.Repeat("b", 60) + " denied by policy"
	}
	out, err := Refusal(&Request{Commands: cmds, Capabilities: []string{"report-status", "side-band-64k"}}, msgs,
		func(Command) string { return "denied" })
	if err != nil {
		t.Fatalf("Refusal = %v", err)
	}
	checkBands(t, out)
	if len(out) < 2*3000*70 {
		t.Errorf("Refusal is %d bytes, want every message and status", len(out))
	}
}
