//go:build linux

// Command cork-guest is the init of a `cork run --backend qemu` guest, and
// the tool that builds the guest's initramfs around it. Built static
// (CGO_ENABLED=0), it needs nothing of the guest's userland:
//
//	cork-guest initrd --modules DIR -o FILE   write an initramfs: this
//	                                          binary as /init, and the
//	                                          kernel modules the guest needs
//
// As /init (PID 1) it loads the modules, brings up the network the VM's
// only way out is on, mounts cork's shares (the control directory, the
// sandbox home, the workspace) and the root image if there is one, runs
// the command of the control directory's spec.json with its environment
// on the serial console, writes its exit status back, and powers the VM
// off. See docs/QEMU.md.
package main

import (
	"fmt"
	"os"
)

func main() {
	if os.Getpid() == 1 {
		guestInit() // never returns
	}
	if len(os.Args) >= 2 && os.Args[1] == "initrd" {
		if err := runInitrd(os.Args[2:]); err != nil {
			fmt.Fprintf(os.Stderr, "cork-guest: initrd: %v\n", err)
			os.Exit(2)
		}
		return
	}
	fmt.Fprintln(os.Stderr, "usage: cork-guest initrd --modules /lib/modules/VERSION -o initrd.img\n"+
		"(as PID 1 in a cork qemu guest, it is the guest's init)")
	os.Exit(2)
}
