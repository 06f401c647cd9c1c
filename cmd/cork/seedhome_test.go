package main

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// configMapVolume builds dir as the kubelet lays out a ConfigMap volume:
// the items in a timestamped directory, ..data a link to it, and each
// top-level item (a file, or the first directory of a nested path) a
// link through ..data. files maps item paths to contents and modes.
func configMapVolume(t *testing.T, dir string, files map[string]seedFile) {
	t.Helper()
	const stamp = "..2026_12_07_05_12_44.1234567890"
	top := map[string]bool{}
	for p, f := range files {
		full := filepath.Join(dir, stamp, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(f.data), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(full, f.mode); err != nil { // past the umask, and setuid too
			t.Fatal(err)
		}
		top[strings.Split(p, "/")[0]] = true
	}
	mustSymlink(t, stamp, filepath.Join(dir, "..data"))
	for name := range top {
		mustSymlink(t, filepath.Join("..data", name), filepath.Join(dir, name))
	}
}

type seedFile struct {
	data string
	mode fs.FileMode
}

func mustSymlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

// TestSeedHome: every item of a ConfigMap volume lands at its own path
// with its own mode (no setuid), directories 0700, and nothing of the
// volume's internals.
func TestSeedHome(t *testing.T) {
	from, to := t.TempDir(), t.TempDir()
	files := map[string]seedFile{
		".bashrc":                  {"export EDITOR=vi\n", 0o644},
		".npmrc":                   {"//registry.npmjs.org/:_authToken=placeholder-npm-0000\n", 0o600},
		".config/gh/hosts.yml":     {"github.com:\n  oauth_token: placeholder-gh-0000\n", 0o600},
		".config/git/config":       {"[user]\n\tname = agent\n", 0o666},
		"bin/tool":                 {"#!/bin/sh\n", 0o755 | fs.ModeSetuid | fs.ModeSetgid},
		".local/share/empty-named": {"", 0o640},
	}
	configMapVolume(t, from, files)
	code, stdout, stderr := runCork(t, nil, "seed-home", "--from", from, "--to", to)
	if code != 0 || stderr != "" || stdout != "seeded 6 files into "+to+"\n" {
		t.Fatalf("cork seed-home: exit %d, stdout %q, stderr %q; want 0, \"seeded 6 files into %s\\n\"", code, stdout, stderr, to)
	}
	got := map[string]string{}
	err := filepath.WalkDir(to, func(path string, d fs.DirEntry, err error) error {
		if err != nil || path == to {
			return err
		}
		rel, _ := filepath.Rel(to, path)
		fi, err := os.Lstat(path)
		if err != nil {
			return err
		}
		switch {
		case fi.IsDir():
			if fi.Mode() != fs.ModeDir|0o700 {
				t.Errorf("%s: mode %v, want drwx------", rel, fi.Mode())
			}
		case fi.Mode().IsRegular():
			want, ok := files[rel]
			if !ok {
				t.Errorf("%s: not an item of the volume", rel)
				return nil
			}
			if fi.Mode() != want.mode.Perm() {
				t.Errorf("%s: mode %v, want %v", rel, fi.Mode(), want.mode.Perm())
			}
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			got[rel] = string(data)
		default:
			t.Errorf("%s: %v, want a file or a directory", rel, fi.Mode().Type())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for p, f := range files {
		if got[p] != f.data {
			t.Errorf("%s = %q, want %q", p, got[p], f.data)
		}
	}
	if len(got) != len(files) {
		t.Errorf("copied %d files, want %d", len(got), len(files))
	}
}

// TestSeedHomeRefuses: a link out of --from (relative, absolute or deep
// inside the volume), a link loop, and anything already in --to (a file,
// a directory, a link) stop the copy with one line naming the path; the
// existing file and a link's target are left as they were.
func TestSeedHomeRefuses(t *testing.T) {
	outside := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(outside, []byte("host secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := map[string]seedFile{".bashrc": {"export A=1\n", 0o644}, ".config/gh/hosts.yml": {"x\n", 0o600}}
	tests := []struct {
		name  string
		setup func(t *testing.T, from, to string)
		want  string // stderr, with FROM and TO for the directories
	}{
		{"relative link out", func(t *testing.T, from, to string) {
			rel, _ := filepath.Rel(from, outside)
			mustSymlink(t, rel, filepath.Join(from, "evil"))
		}, "cork: seed-home: --from FROM/evil: symbolic link to \"REL\" refused: it must resolve inside --from (path escapes from parent)\n"},
		{"absolute link", func(t *testing.T, from, to string) {
			mustSymlink(t, outside, filepath.Join(from, "evil"))
		}, "cork: seed-home: --from FROM/evil: symbolic link to \"" + outside + "\" refused: it must resolve inside --from (path escapes from parent)\n"},
		{"link out deep in the volume", func(t *testing.T, from, to string) {
			mustSymlink(t, strings.Repeat("../", 12)+outside[1:], filepath.Join(from, "..data", ".config", "gh", "leak"))
		}, "cork: seed-home: --from FROM/.config/gh/leak: symbolic link to \"" + strings.Repeat("../", 12) + outside[1:] + "\" refused: it must resolve inside --from (path escapes from parent)\n"},
		{"dangling link", func(t *testing.T, from, to string) {
			mustSymlink(t, "..data/gone", filepath.Join(from, "gone"))
		}, "cork: seed-home: --from FROM/gone: symbolic link to \"..data/gone\" refused: it must resolve inside --from (no such file or directory)\n"},
		{"link loop", func(t *testing.T, from, to string) {
			mustSymlink(t, ".", filepath.Join(from, "..data", ".config", "up"))
		}, "cork: seed-home: --from FROM/.config/up: a symbolic link to a directory that contains it\n"},
		{"existing file", func(t *testing.T, from, to string) {
			if err := os.WriteFile(filepath.Join(to, ".bashrc"), []byte("mine\n"), 0o600); err != nil {
				t.Fatal(err)
			}
		}, "cork: seed-home: --to TO/.bashrc: exists; seed-home overwrites nothing\n"},
		{"existing directory", func(t *testing.T, from, to string) {
			if err := os.Mkdir(filepath.Join(to, ".config"), 0o755); err != nil {
				t.Fatal(err)
			}
		}, "cork: seed-home: --to TO/.config: exists; seed-home overwrites nothing\n"},
		{"existing link", func(t *testing.T, from, to string) {
			mustSymlink(t, outside, filepath.Join(to, ".bashrc"))
		}, "cork: seed-home: --to TO/.bashrc: exists; seed-home overwrites nothing\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			from, to := t.TempDir(), t.TempDir()
			configMapVolume(t, from, base)
			tc.setup(t, from, to)
			rel, _ := filepath.Rel(from, outside)
			want := strings.NewReplacer("FROM", from, "TO", to, "REL", rel).Replace(tc.want)
			code, stdout, stderr := runCork(t, nil, "seed-home", "--from", from, "--to", to)
			if code != 1 || stdout != "" || stderr != want {
				t.Errorf("cork seed-home: exit %d, stdout %q, stderr %q; want 1, nothing,\n%q", code, stdout, stderr, want)
			}
			if data, err := os.ReadFile(outside); err != nil || string(data) != "host secret\n" {
				t.Errorf("%s = %q, %v; want it untouched", outside, data, err)
			}
			if tc.name == "existing file" {
				if data, _ := os.ReadFile(filepath.Join(to, ".bashrc")); string(data) != "mine\n" {
					t.Errorf("the existing .bashrc = %q, want it untouched", data)
				}
			}
		})
	}
}

func TestSeedHomeUsage(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "nope")
	for _, tt := range []struct {
		args []string
		want string
	}{
		{nil, "cork: seed-home: missing --from, --to\n"},
		{[]string{"--from", dir}, "cork: seed-home: missing --to\n"},
		{[]string{"--to", dir}, "cork: seed-home: missing --from\n"},
		{[]string{"--from", missing, "--to", dir}, "cork: seed-home: --from " + missing + ": no such file or directory\n"},
		{[]string{"--from", dir, "--to", missing}, "cork: seed-home: --to " + missing + ": no such file or directory\n"},
		{[]string{"--from", dir, "--to", dir, "extra"}, "cork: seed-home: unexpected argument \"extra\"\n"},
	} {
		code, stdout, stderr := runCork(t, nil, append([]string{"seed-home"}, tt.args...)...)
		if code != 2 || stdout != "" || stderr != tt.want {
			t.Errorf("cork seed-home %q: exit %d, stdout %q, stderr %q; want 2, nothing, %q", tt.args, code, stdout, stderr, tt.want)
		}
	}
}

// TestSeedHomeModes: --modes gives a file its mode in --to instead of
// the source's, which a pod's fsGroup widens (an item of mode 0600 shows
// as 0640); a file without an entry keeps the source's mode, and an
// entry through a nested path (a link through ..data) applies.
func TestSeedHomeModes(t *testing.T) {
	from, to := t.TempDir(), t.TempDir()
	configMapVolume(t, from, map[string]seedFile{
		".npmrc":               {"//registry.npmjs.org/:_authToken=placeholder-npm-0000\n", 0o640},
		".config/gh/hosts.yml": {"github.com:\n  oauth_token: placeholder-gh-0000\n", 0o640},
		".bashrc":              {"export EDITOR=vi\n", 0o644},
		"bin/tool":             {"#!/bin/sh\n", 0o750},
	})
	modes := filepath.Join(t.TempDir(), "modes.json")
	if err := os.WriteFile(modes, []byte(`{".npmrc": 384, ".config/gh/hosts.yml": 256, "bin/tool": 448}`), 0o644); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := runCork(t, nil, "seed-home", "--from", from, "--to", to, "--modes", modes)
	if code != 0 || stderr != "" || stdout != "seeded 4 files into "+to+"\n" {
		t.Fatalf("cork seed-home --modes: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	for p, want := range map[string]fs.FileMode{".npmrc": 0o600, ".config/gh/hosts.yml": 0o400, "bin/tool": 0o700, ".bashrc": 0o644} {
		fi, err := os.Stat(filepath.Join(to, p))
		if err != nil {
			t.Errorf("%s: %v", p, err)
		} else if fi.Mode() != want {
			t.Errorf("%s: mode %v, want %v", p, fi.Mode(), want)
		}
	}
}

// TestSeedHomeModesRefused: a --modes entry for a file that is not in
// --from (or is a directory), a mode with bits outside 0777, a path with
// .. or into the volume's internals, and a file that is not one JSON
// object of numbers are usage errors naming --modes and each entry, all
// at once, before anything is copied.
func TestSeedHomeModesRefused(t *testing.T) {
	tests := []struct {
		name, modes string
		want        []string // the lines after "cork: seed-home: --modes FILE: "
	}{
		{"not there", `{".npmrc": 384, "nope/gone": 384}`, []string{`"nope/gone": not in --from: no such file or directory`}},
		{"a directory", `{".config": 448}`, []string{`".config": not a regular file of --from`}},
		{"setuid", `{".npmrc": 2432}`, []string{`".npmrc": mode 2432: want a number from 0 to 511 (0777), e.g. 384 for 0600`}},
		{"negative", `{".npmrc": -1}`, []string{`".npmrc": mode -1: want a number from 0 to 511 (0777), e.g. 384 for 0600`}},
		{"fraction", `{".npmrc": 384.5}`, []string{`".npmrc": mode 384.5: want a number from 0 to 511 (0777), e.g. 384 for 0600`}},
		{"dot dot", `{"../escape": 384, ".config/../.npmrc": 384, "/etc/passwd": 384, "..data/.npmrc": 384}`, []string{
			`"../escape": want a relative path inside --from, without ".."`,
			`"..data/.npmrc": want a relative path inside --from, without ".."`,
			`".config/../.npmrc": want a relative path inside --from, without ".."`,
			`"/etc/passwd": want a relative path inside --from, without ".."`}},
		{"several", `{"gone": 384, ".npmrc": 4096}`, []string{
			`".npmrc": mode 4096: want a number from 0 to 511 (0777), e.g. 384 for 0600`,
			`"gone": not in --from: no such file or directory`}},
		{"not an object", `[384]`, []string{`want a JSON object of relative path to mode, e.g. {".npmrc": 384}: json: cannot unmarshal array into Go value of type map[string]json.Number`}},
		{"two objects", `{} {}`, []string{`want one JSON object: more follows it`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			from, to := t.TempDir(), t.TempDir()
			configMapVolume(t, from, map[string]seedFile{".npmrc": {"x\n", 0o640}, ".config/gh/hosts.yml": {"y\n", 0o640}})
			modes := filepath.Join(t.TempDir(), "modes.json")
			if err := os.WriteFile(modes, []byte(tc.modes), 0o644); err != nil {
				t.Fatal(err)
			}
			var want strings.Builder
			for _, l := range tc.want {
				want.WriteString("cork: seed-home: --modes " + modes + ": " + l + "\n")
			}
			code, stdout, stderr := runCork(t, nil, "seed-home", "--from", from, "--to", to, "--modes", modes)
			if code != 2 || stdout != "" || stderr != want.String() {
				t.Errorf("exit %d, stdout %q, stderr\n%q; want 2, nothing,\n%q", code, stdout, stderr, want.String())
			}
			if entries, _ := os.ReadDir(to); len(entries) != 0 {
				t.Errorf("--to holds %d entries, want none: nothing is copied", len(entries))
			}
		})
	}
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.json")
	code, _, stderr := runCork(t, nil, "seed-home", "--from", dir, "--to", t.TempDir(), "--modes", missing)
	if want := "cork: seed-home: --modes " + missing + ": no such file or directory\n"; code != 2 || stderr != want {
		t.Errorf("missing --modes file: exit %d, stderr %q; want 2, %q", code, stderr, want)
	}
}
