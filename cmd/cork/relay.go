package main

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// relayDialTimeout bounds connecting to the proxy's socket.
const relayDialTimeout = 10 * time.Second

// runRelay is `cork relay --socket PATH`: one connection to the proxy's
// Unix socket (`cork proxy` with CORK_LISTEN=unix:PATH), relayed to stdin
// and stdout. QEMU starts one per guest connection (guestfwd=…-cmd:cork
// relay --socket PATH), so the host opens no TCP port for the VM. The
// end of stdin half-closes the socket; the command exits 0 when the
// socket's side ends (or stdout is gone). It writes nothing on stdout but
// relayed bytes; when the socket cannot be reached it prints one line
// naming --socket and exits 2.
func runRelay(ctx context.Context, args []string, _ map[string]string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := newFlagSet("relay", "--socket PATH", stderr)
	socket := fs.String("socket", "", "the proxy's Unix socket: the PATH of `cork proxy`'s CORK_LISTEN=unix:PATH")
	quiet := fs.Bool("quiet", false, "no diagnostics at all: for QEMU's guestfwd, which gives the relay the guest's connection as stderr")
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	if *quiet && stderr == io.Writer(os.Stderr) {
		// Nothing of the host (a path, a panic) may reach the guest's
		// stream: fd 2 itself goes to /dev/null.
		if devNull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0); err == nil {
			_ = unix.Dup2(int(devNull.Fd()), 2)
			devNull.Close()
		}
	}
	switch {
	case fs.NArg() > 0:
		return usageErrorf("relay: unexpected argument %q", fs.Arg(0))
	case *socket == "":
		return usageErrorf("relay: --socket: required: the proxy's Unix socket")
	}
	// A write to a closed stdout then fails with EPIPE, ending the relay,
	// rather than killing cork with SIGPIPE.
	sigpipe := make(chan os.Signal, 1)
	signal.Notify(sigpipe, syscall.SIGPIPE)
	defer signal.Stop(sigpipe)

	d := net.Dialer{Timeout: relayDialTimeout}
	c, err := d.DialContext(ctx, "unix", *socket)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return usageErrorf("relay: --socket %s: %v", *socket, errors.Unwrap(err))
	}
	return relay(ctx, c.(*net.UnixConn), stdin, stdout)
}

// relay copies stdin to c and c to stdout. The end of stdin half-closes
// c, so the proxy sees the client's end of input as a TCP peer would;
// relay returns when c's side ends or stdout fails (the client is gone),
// or, with ctx.Err(), when ctx is done. It closes c.
func relay(ctx context.Context, c *net.UnixConn, stdin io.Reader, stdout io.Writer) error {
	defer c.Close()
	go func() {
		_, _ = io.Copy(c, stdin)
		_ = c.CloseWrite()
	}()
	down := make(chan struct{})
	go func() {
		defer close(down)
		_, _ = io.Copy(stdout, c)
	}()
	select {
	case <-down:
		// Whichever side ended it, the connection is over; there is
		// nothing to report but relayed bytes.
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
