package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
)

// runSeedHome is the hidden `cork seed-home --from DIR --to DIR`: the
// kubernetes backend's agent pod runs it in an init container to copy
// the sandbox home from a ConfigMap volume (read-only, at --from) into a
// writable emptyDir (--to). It copies every regular file reachable from
// --from under the same relative path, skipping the volume's internals
// (names starting with ".."; a ConfigMap key cannot start so). Symbolic
// links are followed only where they resolve inside --from (a ConfigMap
// volume's items are relative links through ..data); any other link is
// refused, as is an absolute one. Directories are made 0700, files get
// the source's permission bits (the item's mode; never setuid, setgid or
// sticky), and nothing already in --to is followed or overwritten: an
// existing file or directory there is an error. It prints one line,
// `seeded N files into DIR`; errors are one line naming the path (exit
// 1), or the flag (exit 2).
func runSeedHome(ctx context.Context, args []string, _ map[string]string, _ io.Reader, stdout, stderr io.Writer) error {
	flags := newFlagSet("seed-home", "--from DIR --to DIR", stderr)
	from := flags.String("from", "", "the sandbox home to copy: a ConfigMap volume's mount; required")
	to := flags.String("to", "", "the directory to fill, e.g. an emptyDir; nothing in it is overwritten; required")
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
	from, to string // the roots as given, for errors
	files    int    // regular files copied so far
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
// with the source's permission bits.
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
	// mode. Perm() holds no setuid, setgid or sticky bit.
	if err := out.Chmod(fi.Mode().Perm()); err != nil {
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
