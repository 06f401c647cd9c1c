package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// canaryGreeting is what `cork canary` writes on every connection: a
// client that reads it has reached the canary.
const canaryGreeting = "cork-canary\n"

// canaryWriteTimeout bounds writing the greeting to one connection.
const canaryWriteTimeout = 5 * time.Second

// runCanary is the hidden `cork canary --listen ADDR`: a TCP server that
// writes canaryGreeting on each connection it accepts and closes it. It
// prints one line, `listening ADDR` (the address it got: port 0 picks
// one), once it listens, and exits 0 when ctx ends (SIGTERM, SIGINT). The
// kubernetes backend's preflight runs it in the session's namespace as
// an address the probe, in the sandbox's place, must not reach.
func runCanary(ctx context.Context, args []string, _ map[string]string, _ io.Reader, stdout, stderr io.Writer) error {
	fs := newFlagSet("canary", "--listen HOST:PORT", stderr)
	listen := fs.String("listen", "", "where to listen: HOST:PORT (port 0 picks one); required")
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	switch {
	case fs.NArg() > 0:
		return usageErrorf("canary: unexpected argument %q", fs.Arg(0))
	case *listen == "":
		return usageErrorf("canary: --listen: required: HOST:PORT")
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return usageErrorf("canary: --listen %s: %v", *listen, errors.Unwrap(err))
	}
	defer ln.Close()
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	fmt.Fprintf(stdout, "listening %s\n", ln.Addr())

	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil // asked to stop: that is success
			}
			return fmt.Errorf("canary: --listen %s: accept: %w", ln.Addr(), err)
		}
		wg.Go(func() {
			defer c.Close()
			_ = c.SetWriteDeadline(time.Now().Add(canaryWriteTimeout))
			_, _ = io.WriteString(c, canaryGreeting)
		})
	}
}
