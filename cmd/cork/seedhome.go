package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// runSeedHome is the hidden `cork seed-home --from DIR --to DIR [--modes
// FILE]`: the
// kubernetes backend's agent pod runs it in an init container to copy
// the sandbox home from a ConfigMap volume (read-only, at --from) into a
// writable emptyDir (--to). It copies every regular file reachable from
// --from under the same relative path, skipping the volume's internals
// (names starting with ".."; a ConfigMap key cannot start so). Symbolic
// links are followed only where they resolve inside --from (a ConfigMap
// volume's items are relative links through ..data); any other link is
// refused, as is an absolute one. Directories are made 0700, files get
// the source's permission bits (the item's mode; never setuid, setgid or
// sticky) unless --modes gives theirs, and nothing already in --to is
// followed or overwritten: an existing file or directory there is an
// error. --modes is a JSON object of relative path to mode, a number
// (384 for 0600): the kubelet widens a ConfigMap item's mode in a pod
// with an fsGroup (0600 shows as 0640), so the launcher says what each
// file's mode is; a file without an entry keeps the source's. An entry
// whose path has a .. (or starts one, as the volume's internals do) or
// is not a regular file of --from, or whose mode has bits outside 0777,
// is a usage error naming it, found before anything is copied. It prints
// one line,
// `seeded N files into DIR`; errors are one line naming the path (exit
// 1), or the flag (exit 2).
func runSeedHome(ctx context.Context, args []string, _ map[string]string, _ io.Reader, stdout, stderr io.Writer) error {
	flags := newFlagSet("seed-home", "--from DIR --to DIR [--modes FILE]", stderr)
	from := flags.String("from", "", "the sandbox home to copy: a ConfigMap volume's mount; required")
	to := flags.String("to", "", "the directory to fill, e.g. an emptyDir; nothing in it is overwritten; required")
	modesFile := flags.String("modes", "", "a JSON object {\"relative/path\": mode as a number, e.g. 384 for 0600}: each file's mode in --to\n"+
		"instead of the source's; empty: the source's")
	if err := parseFlags(flags, args, stdout); err != nil {
		return err
	}
	switch {
	case flags.NArg() > 0:
		return usageErrorf("seed-home: unexpected argument %q", flags.Arg(0))
	case *from == "" && *to == "":
		return usageErrorf("seed-home: missing --from, --to")
	case *from == "":
		return usageErrorf("seed-home: missing --from")
	case *to == "":
		return usageErrorf("seed-home: missing --to")
	}
	src, err := os.OpenRoot(*from)
	if err != nil {
		return usageErrorf("seed-home: --from %s: %v", *from, innerError(err))
	}
	defer src.Close()
	dst, err := os.OpenRoot(*to)
	if err != nil {
		return usageErrorf("seed-home: --to %s: %v", *to, innerError(err))
	}
	defer dst.Close()
	s := &seeder{src: src, dst: dst, from: *from, to: *to}
	if *modesFile != "" {
		if s.modes, err = readModes(*modesFile, src); err != nil {
			return &usageError{prefixLines("seed-home: --modes "+*modesFile, err)}
		}
	}
	if err := s.copyDir(ctx, ".", nil); err != nil {
		return fmt.Errorf("seed-home: %w", err)
	}
	fmt.Fprintf(stdout, "seeded %d files into %s\n", s.files, *to)
	return nil
}

// seeder copies a tree from src to dst (see runSeedHome). Not safe for
// concurrent use.
type seeder struct {
	src, dst *os.Root
	from, to string                 // the roots as given, for errors
	modes    map[string]fs.FileMode // --modes: relative path to mode; nil: none
	files    int                    // regular files copied so far
}

// readModes reads the --modes file: a JSON object of relative
// path to mode, each path a regular file of src (following links that
// stay inside it). It returns every bad entry at once, one line each.
func readModes(file string, src *os.Root) (map[string]fs.FileMode, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, innerError(err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var raw map[string]json.Number
	if err := dec.Decode(&raw); err != nil {
		return nil, fmt.Errorf("want a JSON object of relative path to mode, e.g. {\".npmrc\": 384}: %v", err)
	}
	if dec.More() {
		return nil, errors.New("want one JSON object: more follows it")
	}
	modes := make(map[string]fs.FileMode, len(raw))
	var errs []error
	for _, p := range slices.Sorted(maps.Keys(raw)) {
		n, err := strconv.ParseUint(raw[p].String(), 10, 32)
		switch {
		case !localPath(p):
			errs = append(errs, fmt.Errorf("%q: want a relative path inside --from, without \"..\"", p))
		case err != nil || n&^0o777 != 0:
			errs = append(errs, fmt.Errorf("%q: mode %s: want a number from 0 to 511 (0777), e.g. 384 for 0600", p, raw[p]))
		default:
			if fi, err := src.Stat(p); err != nil {
				errs = append(errs, fmt.Errorf("%q: not in --from: %v", p, innerError(err)))
			} else if !fi.Mode().IsRegular() {
				errs = append(errs, fmt.Errorf("%q: not a regular file of --from", p))
			}
			modes[p] = fs.FileMode(n)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return modes, nil
}

// localPath reports whether p is a clean relative path that names no
// parent and none of a ConfigMap volume's internals (..data): no
// element is or starts with "..".
func localPath(p string) bool {
	if p == "" || p != path.Clean(p) || path.IsAbs(p) || p == "." {
		return false
	}
	for _, e := range strings.Split(p, "/") {
		if strings.HasPrefix(e, "..") {
			return false
		}
	}
	return true
}

// fileID identifies a directory, to catch a link to one of its own
// ancestors.
type fileID struct{ dev, ino uint64 }

func idOf(fi fs.FileInfo) (fileID, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fileID{}, false
	}
	return fileID{uint64(st.Dev), uint64(st.Ino)}, true
}

// copyDir copies the entries of the directory rel (of src) into rel of
// dst, which exists; ancestors are the directories above it.
func (s *seeder) copyDir(ctx context.Context, rel string, ancestors []fileID) error {
	d, err := s.src.Open(rel)
	if err != nil {
		return s.srcError(rel, err)
	}
	fi, err := d.Stat()
	if err != nil {
		d.Close()
		return s.srcError(rel, err)
	}
	entries, err := d.ReadDir(-1)
	d.Close()
	if err != nil {
		return s.srcError(rel, err)
	}
	if id, ok := idOf(fi); ok {
		ancestors = append(ancestors, id)
	}
	slices.SortFunc(entries, func(a, b fs.DirEntry) int { return strings.Compare(a.Name(), b.Name()) })
	for _, e := range entries {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if strings.HasPrefix(e.Name(), "..") {
			continue // the volume's internals: ..data, ..2026_12_07_…
		}
		name := filepath.Join(rel, e.Name())
		fi, err := s.src.Stat(name) // follows links that stay inside src only
		switch {
		case err != nil:
			return s.srcError(name, err)
		case fi.IsDir():
			if id, ok := idOf(fi); ok && slices.Contains(ancestors, id) {
				return fmt.Errorf("--from %s: a symbolic link to a directory that contains it", filepath.Join(s.from, name))
			}
			if err := s.dst.Mkdir(name, 0o700); err != nil {
				return s.dstError(name, err)
			}
			if err := s.copyDir(ctx, name, ancestors); err != nil {
				return err
			}
		case fi.Mode().IsRegular():
			if err := s.copyFile(name); err != nil {
				return err
			}
		default:
			return fmt.Errorf("--from %s: %v: not a regular file or directory", filepath.Join(s.from, name), fi.Mode().Type())
		}
	}
	return nil
}

// copyFile copies the regular file rel of src to a new file rel of dst
// with its mode from --modes, else the source's permission bits.
func (s *seeder) copyFile(rel string) error {
	// O_NONBLOCK: should rel have become a FIFO since it was checked, the
	// open does not hang; the check below then refuses it.
	in, err := s.src.OpenFile(rel, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return s.srcError(rel, err)
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return s.srcError(rel, err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("--from %s: not a regular file", filepath.Join(s.from, rel))
	}
	out, err := s.dst.OpenFile(rel, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return s.dstError(rel, err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copy %s to %s: %w", filepath.Join(s.from, rel), filepath.Join(s.to, rel), err)
	}
	// Chmod, not the open's mode: the umask must not change the item's
	// mode. Perm() holds no setuid, setgid or sticky bit, nor do --modes.
	mode := fi.Mode().Perm()
	if m, ok := s.modes[filepath.ToSlash(rel)]; ok {
		mode = m
	}
	if err := out.Chmod(mode); err != nil {
		out.Close()
		return s.dstError(rel, err)
	}
	if err := out.Close(); err != nil {
		return s.dstError(rel, err)
	}
	s.files++
	return nil
}

// srcError names the source path rel and says why it cannot be read; a
// link that leaves --from (or dangles) is said to be one.
func (s *seeder) srcError(rel string, err error) error {
	path := filepath.Join(s.from, rel)
	if lfi, lerr := s.src.Lstat(rel); lerr == nil && lfi.Mode().Type() == fs.ModeSymlink {
		target, _ := s.src.Readlink(rel)
		return fmt.Errorf("--from %s: symbolic link to %q refused: it must resolve inside --from (%v)", path, target, innerError(err))
	}
	return fmt.Errorf("--from %s: %v", path, innerError(err))
}

// dstError names the destination path rel and says why it cannot be
// written.
func (s *seeder) dstError(rel string, err error) error {
	path := filepath.Join(s.to, rel)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("--to %s: exists; seed-home overwrites nothing", path)
	}
	return fmt.Errorf("--to %s: %v", path, innerError(err))
}

// innerError drops a PathError's operation and path (relative to a root
// here): the caller names the path as the user gave it.
func innerError(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
