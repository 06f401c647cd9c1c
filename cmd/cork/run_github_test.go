package main

import (
	"flag"
	"io"
	"reflect"
	"testing"

	"github.com/cork-sh/cork/provision"
)

// TestGitHubFlags: --github-host, --github-read-only and --push-branch set
// the github profile's options, and only its.
func TestGitHubFlags(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want provision.Profile
	}{
		{"none", []string{"--agent", "github"}, provision.GitHub{}},
		{"host", []string{"--agent", "github", "--github-host", "ghe.example.com"}, provision.GitHub{Host: "ghe.example.com"}},
		{"read-only", []string{"--agent", "github", "--github-read-only"}, provision.GitHub{ReadOnly: true}},
		{"push branches", []string{"--push-branch", "agent/*", "--agent", "github", "--push-branch", "cork-*"}, provision.GitHub{PushBranches: []string{"agent/*", "cork-*"}}},
		{"enterprise push", []string{"--agent", "github", "--github-host", "ghe.example.com", "--push-branch", "agent/*"}, provision.GitHub{Host: "ghe.example.com", PushBranches: []string{"agent/*"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := flag.NewFlagSet("run", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			f := newRunFlags(fs)
			if err := fs.Parse(append(tt.args, "--agent", "codex")); err != nil {
				t.Fatal(err)
			}
			profiles, err := f.profiles()
			if err != nil {
				t.Fatalf("profiles() error = %v", err)
			}
			if len(profiles) != 2 || !reflect.DeepEqual(profiles[0], tt.want) || !reflect.DeepEqual(profiles[1], provision.Codex{}) {
				t.Errorf("profiles() = %#v, want [%#v codex]", profiles, tt.want)
			}
		})
	}
}
