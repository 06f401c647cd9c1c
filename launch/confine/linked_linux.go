package confine

import (
	"io/fs"
	"path/filepath"
	"syscall"
)

// linkBudget bounds the files linkedSecrets looks at in each tree.
const linkBudget = 50000

type linkedSecret struct{ link, secret string }

// linkedSecrets finds the hard links to files of the hidden credential
// locations that the sandbox would still show: files in the binds (the workspace, --read-write
// and --read-only paths) sharing an inode with a file of a hidden
// credential location. Hiding a path does not hide its inode's other
// names. Only when a hidden file has more than one link are the binds
// walked, so the usual cost is a walk of the (small) credential
// locations.
func linkedSecrets(hidden []string, ms []mount) ([]linkedSecret, error) {
	type inode struct{ dev, ino uint64 }
	secrets := map[inode]string{}
	for _, h := range hidden {
		walk(h, func(p string, st *syscall.Stat_t) {
			if st.Nlink > 1 {
				secrets[inode{uint64(st.Dev), st.Ino}] = p
			}
		})
	}
	if len(secrets) == 0 {
		return nil, nil
	}
	var out []linkedSecret
	for _, m := range ms {
		if m.Op != opBind {
			continue
		}
		walk(m.Src, func(p string, st *syscall.Stat_t) {
			if s, ok := secrets[inode{uint64(st.Dev), st.Ino}]; ok && st.Nlink > 1 && s != p {
				out = append(out, linkedSecret{link: p, secret: s})
			}
		})
	}
	return out, nil
}

// walk calls fn for each regular file under root (root itself when it
// is one), up to linkBudget files, without following symbolic links.
func walk(root string, fn func(string, *syscall.Stat_t)) {
	n := 0
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if n++; n > linkBudget {
			return filepath.SkipAll
		}
		if !d.Type().IsRegular() {
			return nil
		}
		var st syscall.Stat_t
		if syscall.Lstat(p, &st) == nil {
			fn(p, &st)
		}
		return nil
	})
}
