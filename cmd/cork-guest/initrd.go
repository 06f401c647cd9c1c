//go:build linux

package main

import (
	"bufio"
	"compress/gzip"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// guestModules are the kernel modules the guest loads, by name; their
// dependencies (modules.dep) come first. A module built into the kernel
// is not in modules.dep and is skipped.
var guestModules = []string{"virtio_mmio", "virtio_net", "9pnet_virtio", "9p", "virtio_blk", "crc32c_generic", "ext4", "overlay"}

// modulesDir is where the initramfs holds the modules, with an "order"
// file naming them in load order.
const modulesDir = "lib/modules/cork"

// runInitrd writes an initramfs (gzip'd newc cpio): this executable as
// /init, the guest modules and their dependencies from --modules.
func runInitrd(args []string) error {
	fs := flag.NewFlagSet("initrd", flag.ContinueOnError)
	mods := fs.String("modules", "", "the kernel's module directory, e.g. /lib/modules/6.1.0-57-amd64 (with modules.dep)")
	out := fs.String("o", "", "the initramfs to write")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *mods == "" || *out == "" || fs.NArg() > 0 {
		return errors.New("want --modules DIR -o FILE")
	}
	files, err := moduleFiles(*mods, guestModules)
	if err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	f, err := os.Create(*out)
	if err != nil {
		return err
	}
	zw := gzip.NewWriter(f)
	cw := &cpioWriter{w: zw}
	for _, d := range []string{"dev", "proc", "sys", "cork", "lib", "lib/modules", modulesDir} {
		cw.dir(d)
	}
	if err := cw.file("init", 0o755, self); err != nil {
		return err
	}
	var order []string
	for _, m := range files {
		name := path.Base(m)
		order = append(order, name)
		if err := cw.file(modulesDir+"/"+name, 0o644, filepath.Join(*mods, m)); err != nil {
			return err
		}
	}
	cw.bytes(modulesDir+"/order", 0o644, []byte(strings.Join(order, "\n")+"\n"))
	cw.trailer()
	if err := errors.Join(cw.err, zw.Close(), f.Close()); err != nil {
		os.Remove(*out)
		return err
	}
	return nil
}

// moduleFiles lists the files (relative to dir) of names and their
// dependencies, dependencies first, each once, from dir/modules.dep.
func moduleFiles(dir string, names []string) ([]string, error) {
	f, err := os.Open(filepath.Join(dir, "modules.dep"))
	if err != nil {
		return nil, fmt.Errorf("--modules: %w (run depmod for that kernel first)", err)
	}
	defer f.Close()
	deps := map[string][]string{} // module name → its file, then its dependencies' files
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		file, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		deps[moduleName(file)] = append([]string{file}, strings.Fields(rest)...)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	var out []string
	seen := map[string]bool{}
	for _, n := range names {
		d, ok := deps[strings.ReplaceAll(n, "-", "_")]
		if !ok {
			continue // built in
		}
		// modules.dep lists a module's dependencies nearest first: load
		// them from the far end.
		for i := len(d) - 1; i >= 1; i-- {
			if !seen[d[i]] {
				seen[d[i]] = true
				out = append(out, d[i])
			}
		}
		if !seen[d[0]] {
			seen[d[0]] = true
			out = append(out, d[0])
		}
	}
	return out, nil
}

// moduleName is the module name of a module file path:
// kernel/fs/9p/9p.ko.xz → 9p.
func moduleName(file string) string {
	n := path.Base(file)
	n, _, _ = strings.Cut(n, ".ko")
	return strings.ReplaceAll(n, "-", "_")
}

// cpioWriter writes a newc ("070701") cpio archive.
type cpioWriter struct {
	w   io.Writer
	ino int
	err error
}

func (c *cpioWriter) header(name string, mode uint32, size int) {
	if c.err != nil {
		return
	}
	c.ino++
	nlink := 1
	if mode&0o040000 != 0 {
		nlink = 2
	}
	hdr := fmt.Sprintf("070701%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x",
		c.ino, mode, 0, 0, nlink, 0, size, 0, 0, 0, 0, len(name)+1, 0)
	c.write([]byte(hdr + name + "\x00"))
	c.pad(len(hdr) + len(name) + 1)
}

func (c *cpioWriter) write(b []byte) {
	if c.err == nil {
		_, c.err = c.w.Write(b)
	}
}

func (c *cpioWriter) pad(n int) {
	if r := n % 4; r != 0 {
		c.write(make([]byte, 4-r))
	}
}

func (c *cpioWriter) dir(name string) { c.header(name, 0o040755, 0) }

func (c *cpioWriter) bytes(name string, perm uint32, data []byte) {
	c.header(name, 0o100000|perm, len(data))
	c.write(data)
	c.pad(len(data))
}

func (c *cpioWriter) file(name string, perm uint32, src string) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	c.bytes(name, perm, data)
	return nil
}

func (c *cpioWriter) trailer() { c.header("TRAILER!!!", 0, 0) }
