package confine

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// HomeSecrets are the credential locations hidden in the invoking user's
// real home: they are empty in the sandbox. Every entry is documented in
// docs/SECURITY.md ("What the local sandbox hides"); a glob matches
// several names.
var HomeSecrets = []string{
	// Agent CLIs.
	".codex", ".claude", ".claude.json", ".gemini", ".copilot", ".config/github-copilot",
	// Forges, clouds and clusters.
	".config/gh", ".config/hub", ".config/glab-cli", ".config/gcloud", ".aws", ".azure", ".kube",
	".docker", ".terraform.d", ".vault-token", ".config/op", ".config/rclone",
	// Keys and passwords.
	".ssh", ".gnupg", ".password-store", ".netrc", ".git-credentials", ".pgpass", ".my.cnf",
	// Git and container credential stores, model hubs.
	".config/git/credentials", ".cache/git/credential", ".config/containers/auth.json", ".cache/huggingface/token", ".huggingface",
	// Package registries.
	".npmrc", ".yarnrc", ".yarnrc.yml", ".pypirc", ".gem/credentials", ".cargo/credentials", ".cargo/credentials.toml",
	".m2/settings.xml", ".gradle/gradle.properties", ".nuget/NuGet",
	// Browser profiles and keyrings.
	".mozilla", ".config/google-chrome", ".config/chromium", ".config/BraveSoftware", ".local/share/keyrings",
	// Shell and REPL histories (an exported token is typed into them).
	".bash_history", ".zsh_history", ".local/share/fish/fish_history", ".python_history", ".node_repl_history", ".psql_history",
}

// SystemSecrets are host locations hidden outside any home: password
// hashes, container engine sockets, per-user runtime directories (keyring
// and agent sockets) and SSH host keys.
var SystemSecrets = []string{
	"/etc/shadow", "/etc/shadow-", "/etc/gshadow", "/etc/gshadow-", "/etc/ssh/ssh_host_*_key",
	"/run/docker.sock", "/var/run/docker.sock", "/run/docker", "/run/containerd", "/run/podman",
	"/run/crio", "/run/buildkit", "/run/libvirt", "/run/snapd.socket", "/run/snapd-snap.socket",
	// Per-user runtime directories, the system bus (polkit would treat the
	// command as the user's session), systemd's private socket, smart
	// cards, screen sessions.
	"/run/user", "/run/dbus", "/run/systemd/private", "/run/pcscd", "/run/screen",
}

// EnvSecrets are the host variables that move a credential location:
// each names a file or directory to hide (a list, for KUBECONFIG).
// XDG_CONFIG_HOME moves every ".config/…" entry of HomeSecrets.
var EnvSecrets = []string{
	"CODEX_HOME", "CLAUDE_CONFIG_DIR", "GH_CONFIG_DIR", "GEMINI_CONFIG_DIR", "DOCKER_CONFIG", "GNUPGHOME",
	"AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE", "GOOGLE_APPLICATION_CREDENTIALS", "CLOUDSDK_CONFIG",
	"AZURE_CONFIG_DIR", "KUBECONFIG", "NPM_CONFIG_USERCONFIG", "npm_config_userconfig", "PIP_CONFIG_FILE",
	"NETRC", "PASSWORD_STORE_DIR", "VAULT_CONFIG_PATH", "HF_TOKEN_PATH", "SSH_AUTH_SOCK",
}

// SecretsFromEnv lists the credential locations env's variables point at
// (EnvSecrets, CARGO_HOME's credentials, XDG_CONFIG_HOME's entries).
// Only paths are read from env.
func SecretsFromEnv(env map[string]string) []string {
	var out []string
	for _, k := range EnvSecrets {
		for _, p := range filepath.SplitList(env[k]) {
			if filepath.IsAbs(p) {
				out = append(out, p)
			}
		}
	}
	if c := env["CARGO_HOME"]; filepath.IsAbs(c) {
		out = append(out, filepath.Join(c, "credentials"), filepath.Join(c, "credentials.toml"))
	}
	if x := env["XDG_CONFIG_HOME"]; filepath.IsAbs(x) {
		for _, rel := range HomeSecrets {
			if r, ok := strings.CutPrefix(rel, ".config/"); ok {
				out = append(out, filepath.Join(x, r))
			}
		}
	}
	return out
}

// View is what the sandbox sees of the host's filesystem: the whole tree
// read-only, except what it names.
type View struct {
	// Homes are the invoking user's real home directories (from the
	// password database and $HOME); HomeSecrets are hidden in each.
	Homes []string
	// Workspace is read-write. It may not be a home, contain a hidden
	// location, or lie in one. Empty: none.
	Workspace string
	// SandboxHome (the dummy files) is read-write.
	SandboxHome string
	// ReadWrite, ReadOnly and Hide adjust the defaults (--read-write,
	// --read-only, --hide). A ReadWrite or ReadOnly path that is a hidden
	// location un-hides it.
	ReadWrite, ReadOnly, Hide []string
	// HideHome hides each whole home except the workspace and the
	// directories on Path (with their parent, so that an npm or Go prefix
	// keeps its lib next to its bin).
	HideHome bool
	Path     []string
	// Secrets are further credential locations to hide (SecretsFromEnv);
	// Sockets further host paths (the proxy's private directory).
	Secrets, Sockets []string
}

// mount is one step of the sandbox's filesystem view, applied in order
// after the host tree is made read-only and /tmp, /dev and /proc are
// replaced.
type mount struct {
	Op   string `json:"op"` // opBind, opHide
	Path string `json:"path"`
	Src  string `json:"src,omitempty"` // opBind: the host path shown at Path
	RW   bool   `json:"rw,omitempty"`
	// Dir (opHide): Path is a directory, hidden by an empty tmpfs; else a
	// file, hidden by an empty file.
	Dir bool `json:"dir,omitempty"`
	// Drop (opMask): the names in the directory Path that the sandbox
	// does not see; it sees the others as they were at the start.
	Drop []string `json:"drop,omitempty"`
}

const (
	opBind = "bind"
	opHide = "hide"
	opMask = "mask"
	// opHideHome hides a home directory under an empty tmpfs that later
	// binds fill in.
	opHideHome = "hide-home"
)

// privateDirs are replaced by the sandbox's own: nothing of the host's
// shows there, and binds into them get their mount point created.
// /run holds the host's service sockets (databases, the journal, D-Bus,
// container engines) and per-user runtime directories: the sandbox gets
// an empty one of its own.
var privateDirs = []string{"/tmp", "/run", "/dev", "/proc"}

// mounts computes the view's steps, and the credential locations hidden.
// Errors name the flag or path at fault.
func (v View) mounts() (out []mount, secrets []string, err error) {
	pl := &viewPlan{
		homes:      slices.DeleteFunc(realPaths(v.Homes), func(h string) bool { return h == "/" }),
		hidden:     map[string]bool{},
		credential: map[string]bool{},
		userHidden: map[string]bool{},
		binds:      map[string]mount{},
	}
	if err := pl.hide(v); err != nil {
		return nil, nil, err
	}
	if err := pl.bind(v); err != nil {
		return nil, nil, err
	}
	if v.HideHome {
		pl.hideHomes(v.Path)
	}
	pl.hideSteps()
	for p := range pl.credential {
		secrets = append(secrets, p)
	}
	slices.Sort(secrets)
	return pl.steps(), secrets, nil
}

// viewPlan is what mounts works out, step by step.
type viewPlan struct {
	homes      []string
	hidden     map[string]bool // resolved host path → hide it
	credential map[string]bool
	userHidden map[string]bool // --hide: may lie in the workspace
	watched    []string        // directories where credential locations are, or would appear
	binds      map[string]mount
	out        []mount
}

// secret hides every existing resolution of p as a credential location.
func (pl *viewPlan) secret(p string) {
	for _, r := range existing(p) {
		pl.hidden[r], pl.credential[r] = true, true
	}
}

// hide collects what the sandbox does not see: the credential tables'
// locations in every home and the system, the host's credential
// variables' files, the sockets, the other users' homes, and --hide.
func (pl *viewPlan) hide(v View) error {
	for _, h := range pl.homes {
		pl.watched = append(pl.watched, h)
		for _, rel := range HomeSecrets {
			// The home is a path, not a pattern: only the table's
			// entries are globs.
			pat := filepath.Join(escapeGlob(h), rel)
			pl.watched = append(pl.watched, filepath.Dir(filepath.Join(h, rel)))
			matches, _ := filepath.Glob(pat)
			for _, m := range matches {
				pl.secret(m)
			}
		}
	}
	for _, pat := range SystemSecrets {
		matches, _ := filepath.Glob(pat)
		for _, m := range matches {
			pl.secret(m)
		}
	}
	for _, p := range v.Secrets {
		pl.watched = append(pl.watched, filepath.Dir(p))
		pl.secret(p)
	}
	for _, p := range v.Sockets {
		for _, r := range existing(p) {
			pl.hidden[r] = true
		}
	}
	for _, p := range otherHomes(pl.homes) {
		pl.hidden[p] = true
	}
	for _, p := range v.Hide {
		r, err := realPath(p)
		if err != nil {
			return fmt.Errorf("--hide %s: %w", p, err)
		}
		if r == "/" {
			return fmt.Errorf("--hide %s: the whole tree cannot be hidden", p)
		}
		pl.hidden[r], pl.credential[r], pl.userHidden[r] = true, true, true
	}
	return nil
}

// bind collects the binds: --read-only, --read-write, the sandbox home and
// the workspace. An explicit view of a hidden location un-hides it.
func (pl *viewPlan) bind(v View) error {
	add := func(flag, p string, rw bool) error {
		r, err := realPath(p)
		if err != nil {
			return fmt.Errorf("%s %s: %w", flag, p, err)
		}
		if r == "/" {
			return fmt.Errorf("%s %s: the whole tree cannot be %s", flag, p, map[bool]string{true: "read-write", false: "re-bound"}[rw])
		}
		if rw && slices.ContainsFunc(pl.homes, func(h string) bool { return within(h, r) }) {
			return fmt.Errorf("%s %s: that is or holds your home directory, whose shell start-up files would let the command run code outside the sandbox; give a directory inside it", flag, p)
		}
		if slices.Contains(privateDirs, r) || r == "/dev/shm" {
			return fmt.Errorf("%s %s: the sandbox has its own; give a directory inside it", flag, p)
		}
		delete(pl.hidden, r)
		delete(pl.credential, r)
		pl.binds[r] = mount{Op: opBind, Path: r, Src: r, RW: rw}
		return nil
	}
	for _, p := range v.ReadOnly {
		if err := add("--read-only", p, false); err != nil {
			return err
		}
	}
	for _, p := range v.ReadWrite {
		if err := add("--read-write", p, true); err != nil {
			return err
		}
	}
	if v.SandboxHome != "" {
		r, err := realPath(v.SandboxHome)
		if err != nil {
			return fmt.Errorf("sandbox home: %w", err)
		}
		pl.binds[r] = mount{Op: opBind, Path: r, Src: r, RW: true}
	}
	if v.Workspace != "" {
		ws, err := realPath(v.Workspace)
		if err != nil {
			return fmt.Errorf("workspace %s: %w", v.Workspace, err)
		}
		if err := checkWorkspace(ws, pl.homes, pl.credential, pl.userHidden); err != nil {
			return err
		}
		pl.binds[ws] = mount{Op: opBind, Path: ws, Src: ws, RW: true}
	}
	return nil
}

// hideHomes hides every home whole (--hide-home), but for the
// directories on path inside it.
func (pl *viewPlan) hideHomes(path []string) {
	for _, h := range pl.homes {
		pl.out = append(pl.out, mount{Op: opHideHome, Path: h, Dir: true})
		for _, d := range keptPathDirs(h, path) {
			// Never a credential location, nor one inside it (Claude
			// Code's ~/.claude/local on PATH): it stays hidden.
			if pl.hidden[d] || hiddenAncestor(d, pl.hidden) {
				continue
			}
			if _, ok := pl.binds[d]; !ok {
				pl.binds[d] = mount{Op: opBind, Path: d, Src: d}
			}
		}
	}
}

// hideSteps turns the hidden locations into steps. A hide is a mask of
// its parent where it can be: an overmount of the path itself would
// vanish when the host renames over it (as editors, bash's history and
// credential stores write), and a location created on the host later
// would show. A masked directory shows only what it held at the start,
// minus the hidden names.
func (pl *viewPlan) hideSteps() {
	masks := map[string][]string{}
	for p := range pl.hidden {
		if _, err := os.Lstat(p); err != nil || hiddenAncestor(p, pl.hidden) {
			continue
		}
		if d := filepath.Dir(p); maskable(d, pl.binds) {
			masks[d] = append(masks[d], filepath.Base(p))
			continue
		}
		st, err := os.Stat(p)
		if err != nil {
			continue // a dangling link where no mask can drop it: its target is hidden if it appears
		}
		pl.out = append(pl.out, mount{Op: opHide, Path: p, Dir: st.IsDir()})
	}
	// The directories where a credential location would appear are
	// masked even when it does not exist yet (a first `codex login`, a
	// first `gh auth login` during the run): the nearest existing
	// directory above each, and every home.
	for _, w := range pl.watched {
		if d := existingDir(w); d != "" && maskable(d, pl.binds) && !pl.hidden[d] && !hiddenAncestor(d, pl.hidden) {
			if _, ok := masks[d]; !ok {
				masks[d] = nil
			}
		}
	}
	for d, names := range masks {
		slices.Sort(names)
		pl.out = append(pl.out, mount{Op: opMask, Path: d, Dir: true, Drop: names})
	}
}

// steps orders the steps: shallow before deep, so that a hide inside a
// read-write tree wins and a bind inside a hidden one shows; at equal
// depth a bind comes before a hide of the same path (which then wins).
func (pl *viewPlan) steps() []mount {
	out := pl.out
	for _, b := range pl.binds {
		out = append(out, b)
	}
	slices.SortStableFunc(out, func(a, b mount) int {
		if d := depth(a.Path) - depth(b.Path); d != 0 {
			return d
		}
		if a.Op != b.Op {
			return strings.Compare(opOrder(a.Op), opOrder(b.Op))
		}
		return strings.Compare(a.Path, b.Path)
	})
	return dropShadowed(out, pl.binds)
}

// existingDir is dir, or its nearest existing ancestor, resolved; "" if
// there is none but the root.
func existingDir(dir string) string {
	for d := dir; d != "/" && d != "."; d = filepath.Dir(d) {
		if r, err := realPath(d); err == nil {
			if st, err := os.Stat(r); err == nil && st.IsDir() {
				return r
			}
		}
	}
	return ""
}

// hiddenAncestor reports whether a directory above p is hidden (and p
// with it).
func hiddenAncestor(p string, hidden map[string]bool) bool {
	for d := filepath.Dir(p); d != "/" && d != "."; d = filepath.Dir(d) {
		if hidden[d] {
			return true
		}
	}
	return false
}

// unmaskable are directories too central to replace: their hidden
// entries are overmounted one by one instead.
var unmaskable = []string{"/", "/etc"}

// maskable reports whether the directory d may be replaced by a mask:
// not a central one, and not in a read-write tree (whose contents the
// command changes).
func maskable(d string, binds map[string]mount) bool {
	if slices.Contains(unmaskable, d) {
		return false
	}
	for _, b := range binds {
		if b.RW && within(d, b.Path) {
			return false
		}
	}
	return true
}

func opOrder(op string) string {
	switch op {
	case opHideHome:
		return "0"
	case opBind:
		return "1"
	}
	return "2"
}

// dropShadowed removes hides under a private directory: the host's /tmp,
// /dev and /proc do not show anyway, but where a bind shows a part of them.
func dropShadowed(ms []mount, binds map[string]mount) []mount {
	return slices.DeleteFunc(ms, func(m mount) bool {
		if m.Op == opBind {
			return false
		}
		for _, b := range binds {
			if within(m.Path, b.Path) {
				return false
			}
		}
		for _, d := range privateDirs {
			if within(m.Path, d) {
				return true
			}
		}
		return false
	})
}

// checkWorkspace refuses a workspace that is or holds a home, one the
// sandbox replaces (/tmp, /dev, /proc), or one that contains or lies
// inside a credential location (a --hide path in it is fine: it is
// overmounted).
func checkWorkspace(ws string, homes []string, credential, userHidden map[string]bool) error {
	if ws == "/" {
		return errorf("workspace %s: the whole tree cannot be the workspace", ws)
	}
	if slices.Contains(privateDirs, ws) || ws == "/dev/shm" {
		return errorf("workspace %s: the sandbox has its own %s; use a directory inside it", ws, ws)
	}
	for _, h := range homes {
		if ws == h {
			return errorf("workspace %s is your home directory, which holds credentials; use a project directory", ws)
		}
		if within(h, ws) {
			return errorf("workspace %s holds your home directory %s; use a project directory", ws, h)
		}
	}
	for p := range credential {
		if within(ws, p) {
			return errorf("workspace %s is inside %s, a hidden credential location", ws, p)
		}
		if within(p, ws) && !userHidden[p] {
			return errorf("workspace %s contains %s, a hidden credential location; use a directory that does not", ws, p)
		}
	}
	return nil
}

// keptPathDirs are the directories on path under home that --hide-home
// keeps visible: each with its parent (a prefix such as ~/.local or
// ~/go), unless the parent is the home itself.
func keptPathDirs(home string, path []string) []string {
	var out []string
	for _, d := range path {
		if !filepath.IsAbs(d) {
			continue // relative to wherever cork runs: not a PATH entry to keep
		}
		r, err := realPath(d)
		if err != nil || !within(r, home) || r == home {
			continue
		}
		if parent := filepath.Dir(r); parent != home {
			r = parent
		}
		out = append(out, r)
	}
	return out
}

// otherHomes are the home directories of other users: every directory
// in /home and every password-database home of a uid ≥ 1000, and /root,
// except the invoking user's homes and their ancestors.
func otherHomes(mine []string) []string {
	cand := map[string]bool{"/root": true}
	if ents, err := os.ReadDir("/home"); err == nil {
		for _, e := range ents {
			cand[filepath.Join("/home", e.Name())] = true
		}
	}
	if f, err := os.Open("/etc/passwd"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fields := strings.Split(sc.Text(), ":")
			if len(fields) < 6 {
				continue
			}
			if uid, err := strconv.Atoi(fields[2]); err == nil && uid >= 1000 && uid != 65534 && filepath.IsAbs(fields[5]) {
				cand[fields[5]] = true
			}
		}
		f.Close()
	}
	var out []string
	for p := range cand {
		r, err := realPath(p)
		if err != nil || r == "/" {
			continue
		}
		if slices.ContainsFunc(mine, func(h string) bool { return within(h, r) }) {
			continue
		}
		if st, err := os.Stat(r); err == nil && st.IsDir() {
			out = append(out, r)
		}
	}
	return out
}

// realPath is p made absolute with every symbolic link resolved.
func realPath(p string) (string, error) {
	a, err := filepath.Abs(p)
	if err != nil {
		return "", err
	}
	r, err := filepath.EvalSymlinks(a)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			return "", pe.Err
		}
		return "", err
	}
	return r, nil
}

func realPaths(ps []string) []string {
	var out []string
	for _, p := range ps {
		if r, err := realPath(p); err == nil && !slices.Contains(out, r) {
			out = append(out, r)
		}
	}
	return out
}

// existing is p resolved, when it exists; and when p is a symbolic link,
// also the link itself (its directory resolved), even a dangling one: a
// target that appears during the run must not show through it.
func existing(p string) []string {
	var out []string
	if st, err := os.Lstat(p); err == nil && st.Mode()&os.ModeSymlink != 0 {
		if dir, err := realPath(filepath.Dir(p)); err == nil {
			out = append(out, filepath.Join(dir, filepath.Base(p)))
		}
	}
	if r, err := realPath(p); err == nil && !slices.Contains(out, r) {
		out = append(out, r)
	}
	return out
}

// escapeGlob quotes the pattern characters of a literal path.
func escapeGlob(p string) string {
	var b strings.Builder
	for _, c := range p {
		if strings.ContainsRune(`*?[\`, c) {
			b.WriteByte('\\')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// within reports whether p is dir or lies under it.
func within(p, dir string) bool {
	if dir == "/" {
		return true
	}
	return p == dir || strings.HasPrefix(p, dir+"/")
}

func depth(p string) int { return strings.Count(filepath.Clean(p), "/") }
