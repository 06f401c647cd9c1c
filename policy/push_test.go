package policy

import "testing"

func TestPushAllows(t *testing.T) {
	agent := &Push{Branches: []string{"agent/*", "fix-?"}}
	all := &Push{Branches: []string{"*", "*/*"}, Tags: true, Delete: true}
	tests := []struct {
		name string
		p    *Push
		ref  string
		del  bool
		want bool
	}{
		{"nil allows a branch", nil, "refs/heads/main", false, true},
		{"nil allows a delete", nil, "refs/heads/main", true, true},
		{"nil allows other refs", nil, "refs/notes/commits", false, true},
		{"zero refuses a branch", &Push{}, "refs/heads/main", false, false},
		{"zero refuses a tag", &Push{}, "refs/tags/v1", false, false},
		{"pattern matches", agent, "refs/heads/agent/x", false, true},
		{"star does not cross slash", agent, "refs/heads/agent/x/y", false, false},
		{"pattern is anchored", agent, "refs/heads/agent", false, false},
		{"other branch", agent, "refs/heads/main", false, false},
		{"question mark", agent, "refs/heads/fix-1", false, true},
		{"question mark one char", agent, "refs/heads/fix-12", false, false},
		{"delete needs Delete", agent, "refs/heads/agent/x", true, false},
		{"tag needs Tags", agent, "refs/tags/v1", false, false},
		{"tags", all, "refs/tags/v1", false, true},
		{"tag delete", all, "refs/tags/v1", true, true},
		{"branch delete", all, "refs/heads/x/y", true, true},
		{"delete still needs a match", &Push{Delete: true, Branches: []string{"a"}}, "refs/heads/b", true, false},
		{"empty branch name", all, "refs/heads/", false, false},
		{"empty tag name", all, "refs/tags/", false, false},
		{"notes refused", all, "refs/notes/commits", false, false},
		{"pull refused", all, "refs/pull/1/head", false, false},
		{"HEAD refused", all, "HEAD", false, false},
		{"short name refused", all, "main", false, false},
		{"case matters", agent, "refs/Heads/agent/x", false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.p.Allows(tt.ref, tt.del); got != tt.want {
				t.Errorf("Allows(%q, %v) = %v, want %v", tt.ref, tt.del, got, tt.want)
			}
		})
	}
}
