//go:build linux

package confine

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cork-sh/cork/internal/testing/testenv"
)

// hostDir is a new directory outside /tmp, which the sandbox replaces
// (hides under it are dropped).
func hostDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("/var/tmp", "cork-view-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	d, err = filepath.EvalSymlinks(d)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// fakeHome makes a home with a few credential locations and a project.
func fakeHome(t *testing.T) string {
	t.Helper()
	home := hostDir(t)
	for _, d := range []string{".codex", ".ssh", ".aws", ".local/bin", "bin", "proj", ".config/gh"} {
		if err := os.MkdirAll(filepath.Join(home, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{".netrc", ".codex/auth.json", ".ssh/id_ed25519", "proj/main.go"} {
		if err := os.WriteFile(filepath.Join(home, f), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return home
}

func find(ms []mount, path string) (mount, int) {
	for i, m := range ms {
		if m.Path == path {
			return m, i
		}
	}
	return mount{}, -1
}

func TestViewHidesTheCredentialTable(t *testing.T) {
	home := fakeHome(t)
	ms, secrets, err := View{Homes: []string{home}, Workspace: filepath.Join(home, "proj")}.mounts()
	if err != nil {
		t.Fatal(err)
	}
	// The home and ~/.config are masks that drop the credential names.
	wantDrops := map[string][]string{
		home:                           {".aws", ".codex", ".netrc", ".ssh"},
		filepath.Join(home, ".config"): {"gh"},
	}
	for dir, drop := range wantDrops {
		m, i := find(ms, dir)
		if i < 0 || m.Op != opMask || !slices.Equal(m.Drop, drop) {
			t.Errorf("%s: mount %+v, want a mask dropping %q", dir, m, drop)
		}
		for _, name := range drop {
			if !slices.Contains(secrets, filepath.Join(dir, name)) {
				t.Errorf("%s is not among the secrets %q", filepath.Join(dir, name), secrets)
			}
			if _, i := find(ms, filepath.Join(dir, name)); i >= 0 {
				t.Errorf("%s has a mount of its own as well as the mask", filepath.Join(dir, name))
			}
		}
	}
	_, maskAt := find(ms, home)
	_, wsAt := find(ms, filepath.Join(home, "proj"))
	if wsAt < maskAt {
		t.Errorf("the workspace bind (%d) comes before the mask of the home (%d)", wsAt, maskAt)
	}
	if m, i := find(ms, filepath.Join(home, "proj")); i < 0 || m.Op != opBind || !m.RW {
		t.Errorf("workspace: %+v, want a read-write bind", m)
	}
	if _, i := find(ms, filepath.Join(home, "bin")); i >= 0 {
		t.Errorf("~/bin is not a credential location but has a mount")
	}
}

// Where a credential location would appear, its directory is masked even
// when nothing is hidden there yet: a file created during the run does
// not show.
func TestViewMasksWhereSecretsWouldAppear(t *testing.T) {
	home := hostDir(t)
	os.Mkdir(filepath.Join(home, ".config"), 0o755) // holds no credential location yet
	ms, _, err := View{Homes: []string{home}}.mounts()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{home, filepath.Join(home, ".config")} {
		if m, i := find(ms, d); i < 0 || m.Op != opMask || len(m.Drop) != 0 {
			t.Errorf("%s: %+v, want a mask that drops nothing (yet)", d, m)
		}
	}
	if _, i := find(ms, filepath.Join(home, ".local")); i >= 0 {
		t.Errorf("~/.local does not exist but has a mount")
	}
}

func TestViewWorkspaceRules(t *testing.T) {
	home := fakeHome(t)
	tests := []struct {
		name, ws, want string
	}{
		{"the home itself", home, "is your home directory"},
		{"a directory holding the home", filepath.Dir(home), "holds your home directory " + home},
		{"inside a credential location", filepath.Join(home, ".codex"), "is inside " + filepath.Join(home, ".codex")},
		{"the whole tree", "/", "the whole tree"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := View{Homes: []string{home}, Workspace: tc.ws}.mounts()
			if err == nil || !strings.Contains(err.Error(), strings.TrimSuffix(tc.want, "/.")) {
				t.Errorf("workspace %s: error %v, want one containing %q", tc.ws, err, tc.want)
			}
			if err != nil && strings.Contains(err.Error(), "\n") {
				t.Errorf("error is not one line: %q", err)
			}
		})
	}
	// Through a symbolic link to the home: the same refusal.
	link := filepath.Join(hostDir(t), "ws")
	if err := os.Symlink(home, link); err != nil {
		t.Fatal(err)
	}
	if _, _, err := (View{Homes: []string{home}, Workspace: link}).mounts(); err == nil {
		t.Errorf("a workspace that is a link to the home was accepted")
	}
}

func TestViewAdjustments(t *testing.T) {
	home := fakeHome(t)
	extra := filepath.Join(home, "proj", "secret.txt")
	os.WriteFile(extra, []byte("x"), 0o600)
	ms, _, err := View{
		Homes:     []string{home},
		ReadOnly:  []string{filepath.Join(home, ".aws")},
		ReadWrite: []string{filepath.Join(home, "proj")},
		Hide:      []string{extra},
		Secrets:   []string{filepath.Join(home, "bin")},
	}.mounts()
	if err != nil {
		t.Fatal(err)
	}
	if m, i := find(ms, filepath.Join(home, ".aws")); i < 0 || m.Op != opBind || m.RW {
		t.Errorf("--read-only ~/.aws: %+v, want a read-only bind instead of the hide", m)
	}
	if m, _ := find(ms, home); slices.Contains(m.Drop, ".aws") || !slices.Contains(m.Drop, ".ssh") {
		t.Errorf("mask of the home %+v: want ~/.aws shown (--read-only) and ~/.ssh dropped", m)
	}
	// In a read-write tree a hide cannot be a mask (the command writes
	// there): the file itself is overmounted.
	if m, i := find(ms, extra); i < 0 || m.Op != opHide || m.Dir {
		t.Errorf("--hide FILE in a read-write tree: %+v, want a file hide", m)
	}
	// A read-write tree keeps the hides inside it, which are deeper and
	// so come later.
	_, bindAt := find(ms, filepath.Join(home, "proj"))
	hide, hideAt := find(ms, extra)
	if bindAt < 0 || hideAt < bindAt || hide.Op != opHide {
		t.Errorf("--read-write ~/proj at %d, hide of ~/proj/secret.txt at %d (%+v): the hide must come after", bindAt, hideAt, hide)
	}
	if m, _ := find(ms, home); !slices.Contains(m.Drop, "bin") {
		t.Errorf("a secret from the environment (~/bin): the home's mask %+v does not drop it", m)
	}
	for _, flag := range []struct {
		v    View
		want string
	}{
		{View{Homes: []string{home}, ReadWrite: []string{filepath.Join(home, "nope")}}, "--read-write " + filepath.Join(home, "nope") + ": no such file or directory"},
		{View{Homes: []string{home}, ReadOnly: []string{"/nope-cork"}}, "--read-only /nope-cork: no such file or directory"},
		{View{Homes: []string{home}, Hide: []string{"/nope-cork"}}, "--hide /nope-cork: no such file or directory"},
		{View{Homes: []string{home}, ReadWrite: []string{"/"}}, "--read-write /: the whole tree"},
		{View{Homes: []string{home}, ReadWrite: []string{home}}, "--read-write " + home + ": that is or holds your home directory"},
	} {
		if _, _, err := flag.v.mounts(); err == nil || !strings.Contains(err.Error(), flag.want) {
			t.Errorf("error %v, want %q", err, flag.want)
		}
	}
}

func TestViewHideHome(t *testing.T) {
	home := fakeHome(t)
	ms, _, err := View{
		Homes:    []string{home},
		HideHome: true,
		Path:     []string{filepath.Join(home, ".local/bin"), filepath.Join(home, "bin"), "/usr/bin"},
	}.mounts()
	if err != nil {
		t.Fatal(err)
	}
	m, at := find(ms, home)
	if m.Op != opHideHome {
		t.Fatalf("home: %+v, want an empty home", m)
	}
	for i, m := range ms {
		if within(m.Path, home) && m.Path != home && i < at {
			t.Errorf("%+v comes before the home is emptied", m)
		}
	}
	for _, p := range []string{filepath.Join(home, ".local"), filepath.Join(home, "bin")} {
		if m, i := find(ms, p); i < 0 || m.Op != opBind || m.RW {
			t.Errorf("%s: %+v, want a read-only bind (a PATH entry, with its prefix)", p, m)
		}
	}
	if _, i := find(ms, "/usr/bin"); i >= 0 {
		t.Errorf("/usr/bin is outside the home but has a mount")
	}
}

func TestViewResolvesLinks(t *testing.T) {
	home := fakeHome(t)
	elsewhere := hostDir(t)
	os.RemoveAll(filepath.Join(home, ".aws"))
	if err := os.Symlink(elsewhere, filepath.Join(home, ".aws")); err != nil {
		t.Fatal(err)
	}
	ms, _, err := View{Homes: []string{home}}.mounts()
	if err != nil {
		t.Fatal(err)
	}
	if m, i := find(ms, filepath.Dir(elsewhere)); i < 0 || m.Op != opMask || !slices.Contains(m.Drop, filepath.Base(elsewhere)) {
		t.Errorf("~/.aws → %s: %+v, want the link's target dropped from its directory", elsewhere, m)
	}
}

func TestLinkedSecrets(t *testing.T) {
	home := fakeHome(t)
	ws := filepath.Join(home, "proj")
	if err := os.Link(filepath.Join(home, ".codex/auth.json"), filepath.Join(ws, "innocent.json")); err != nil {
		testenv.Missing(t, "no hard links in %s: %v", ws, err)
	}
	ms, secrets, err := View{Homes: []string{home}, Workspace: ws}.mounts()
	if err != nil {
		t.Fatal(err)
	}
	got, err := linkedSecrets(secrets, ms)
	if err != nil {
		t.Fatal(err)
	}
	want := []linkedSecret{{link: filepath.Join(ws, "innocent.json"), secret: filepath.Join(home, ".codex/auth.json")}}
	if !slices.Equal(got, want) {
		t.Errorf("linkedSecrets = %+v, want %+v", got, want)
	}
}

func TestSecretsFromEnv(t *testing.T) {
	got := SecretsFromEnv(map[string]string{
		"CODEX_HOME": "/opt/codex", "KUBECONFIG": "/a/kube:/b/kube", "CARGO_HOME": "/c",
		"XDG_CONFIG_HOME": "/x", "GH_TOKEN": "not-a-path", "DOCKER_CONFIG": "relative/dir",
	})
	for _, want := range []string{"/opt/codex", "/a/kube", "/b/kube", "/c/credentials", "/c/credentials.toml", "/x/gh", "/x/gcloud"} {
		if !slices.Contains(got, want) {
			t.Errorf("SecretsFromEnv lacks %s: %q", want, got)
		}
	}
	for _, p := range got {
		if !filepath.IsAbs(p) || strings.Contains(p, "not-a-path") {
			t.Errorf("SecretsFromEnv returned %q", p)
		}
	}
}

func TestCommandDirs(t *testing.T) {
	// Under /tmp itself, whatever TMPDIR says: that is what the sandbox
	// replaces.
	dir, err := os.MkdirTemp("/tmp", "cork-cmddirs-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	bin := filepath.Join(dir, "real")
	os.Mkdir(bin, 0o755)
	os.WriteFile(filepath.Join(bin, "tool"), []byte("#!/bin/sh\n"), 0o755)
	links := filepath.Join(dir, "links")
	os.Mkdir(links, 0o755)
	os.Symlink(filepath.Join(bin, "tool"), filepath.Join(links, "tool"))
	got := commandDirs("tool", "/", []string{"PATH=/nonexistent:" + links})
	if want := []string{links, bin}; !slices.Equal(got, want) {
		t.Errorf("commandDirs = %q, want %q (the link's directory and its target's)", got, want)
	}
	if got := commandDirs("./tool", links, nil); !slices.Equal(got, []string{links, bin}) {
		t.Errorf("commandDirs(./tool) in %s = %q, want %q", links, got, []string{links, bin})
	}
	if got := commandDirs("sh", "/", []string{"PATH=/bin:/usr/bin"}); len(got) != 0 {
		t.Errorf("commandDirs(sh) = %q, want none outside /tmp", got)
	}
}

// The second review's findings, each a plan that showed a hidden path.
func TestViewReviewFindings(t *testing.T) {
	t.Run("a PATH directory inside a credential location stays hidden under --hide-home", func(t *testing.T) {
		home := fakeHome(t)
		os.MkdirAll(filepath.Join(home, ".claude/local"), 0o755)
		ms, _, err := View{Homes: []string{home}, HideHome: true, Path: []string{filepath.Join(home, ".claude/local"), "relative/bin"}}.mounts()
		if err != nil {
			t.Fatal(err)
		}
		claude := filepath.Join(home, ".claude")
		for _, m := range ms {
			if m.Op == opBind && (within(m.Path, claude) || within(claude, m.Path)) {
				t.Errorf("%+v shows (part of) ~/.claude", m)
			}
		}
	})
	t.Run("a home with glob characters", func(t *testing.T) {
		home := filepath.Join(hostDir(t), "h[b]me")
		os.MkdirAll(filepath.Join(home, ".aws"), 0o700)
		ms, _, err := View{Homes: []string{home}}.mounts()
		if err != nil {
			t.Fatal(err)
		}
		if m, _ := find(ms, home); !slices.Contains(m.Drop, ".aws") {
			t.Errorf("the home's mask %+v does not drop .aws", m)
		}
	})
	t.Run("a secret from the environment with glob characters", func(t *testing.T) {
		dir := hostDir(t)
		key := filepath.Join(dir, "key[1].json")
		os.WriteFile(key, []byte("x"), 0o600)
		ms, _, err := View{Secrets: []string{key}}.mounts()
		if err != nil {
			t.Fatal(err)
		}
		if m, _ := find(ms, dir); !slices.Contains(m.Drop, "key[1].json") {
			t.Errorf("the mask of %s is %+v, want key[1].json dropped", dir, m)
		}
	})
	t.Run("a dangling credential link is dropped", func(t *testing.T) {
		home := fakeHome(t)
		os.Symlink(filepath.Join(hostDir(t), "later"), filepath.Join(home, ".gemini"))
		ms, _, err := View{Homes: []string{home}}.mounts()
		if err != nil {
			t.Fatal(err)
		}
		if m, _ := find(ms, home); !slices.Contains(m.Drop, ".gemini") {
			t.Errorf("the home's mask %+v keeps the dangling ~/.gemini link", m)
		}
	})
	t.Run("a hide under /tmp inside a shown tree is kept", func(t *testing.T) {
		dir, _ := filepath.EvalSymlinks(t.TempDir())
		env := filepath.Join(dir, ".env")
		os.WriteFile(env, []byte("x"), 0o600)
		ms, _, err := View{ReadWrite: []string{dir}, Hide: []string{env}}.mounts()
		if err != nil {
			t.Fatal(err)
		}
		if m, i := find(ms, env); i < 0 || m.Op != opHide {
			t.Errorf("--hide %s in --read-write %s: %+v, want an overmount", env, dir, m)
		}
	})
	t.Run("--hide inside the workspace", func(t *testing.T) {
		home := fakeHome(t)
		ws := filepath.Join(home, "proj")
		secret := filepath.Join(ws, "main.go")
		ms, _, err := View{Homes: []string{home}, Workspace: ws, Hide: []string{secret}}.mounts()
		if err != nil {
			t.Fatalf("--hide of a file in the workspace: %v", err)
		}
		if m, i := find(ms, secret); i < 0 || m.Op != opHide {
			t.Errorf("%+v, want an overmount", m)
		}
	})
	t.Run("refusals", func(t *testing.T) {
		home := fakeHome(t)
		for _, tc := range []struct {
			v    View
			want string
		}{
			{View{Homes: []string{home}, ReadWrite: []string{filepath.Dir(home)}}, "is or holds your home directory"},
			{View{Homes: []string{home}, Workspace: "/tmp"}, "the sandbox has its own /tmp"},
			{View{Homes: []string{home}, ReadWrite: []string{"/dev/shm"}}, "the sandbox has its own"},
			{View{Homes: []string{home}, Hide: []string{"/"}}, "--hide /: the whole tree cannot be hidden"},
		} {
			if _, _, err := tc.v.mounts(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%+v: error %v, want %q", tc.v, err, tc.want)
			}
		}
	})
}
