package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/cork-sh/cork/policy"
	"github.com/cork-sh/cork/proxy"
	"github.com/cork-sh/cork/resolve"
	"github.com/cork-sh/cork/settings"
)

// DefaultShutdownTimeout bounds how long in-flight requests may take to
// finish after SIGTERM or SIGINT.
const DefaultShutdownTimeout = 10 * time.Second

func runProxy(ctx context.Context, args []string, environ map[string]string, stdin io.Reader, stdout, stderr io.Writer) error {
	in, err := loadSettings(environ)
	if err != nil {
		return err
	}
	fs := newFlagSet("proxy", "[flags]", stderr)
	in.RegisterFlags(fs, settings.ForProxy)
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageErrorf("proxy: unexpected argument %q", fs.Arg(0))
	}
	in.FlagsParsed(fs)
	if strings.TrimSpace(in.UpstreamCAFile) != "" {
		upstreamRoots() // settings adds the file to x509.SystemCertPool: the roots come first
	}
	logw := newBufferedLog(stderr)
	defer logw.Close()
	opts, err := parseSettings(in, settings.ForProxy)
	if err != nil {
		return err
	}
	ready, closeReady, err := readyWriter(opts.ReadyFD, stdout, stderr)
	if err != nil {
		return &usageError{fmt.Errorf("%s: %w", in.Name("ready-fd"), err)}
	}
	defer closeReady()
	pol, err := policy.Load(opts.PolicyFile)
	if err != nil {
		return &usageError{fmt.Errorf("%s: %w", in.Name("policy-file"), err)}
	}
	var tokens resolve.Tokens
	if opts.TokensFile != "-" {
		data, err := os.ReadFile(opts.TokensFile)
		if err != nil {
			return &usageError{fmt.Errorf("%s: %v", in.Name("tokens-file"), pathError(err))}
		}
		if tokens, err = resolve.ParseTokens(data); err != nil {
			return &usageError{prefixLines(fmt.Sprintf("%s: %s", in.Name("tokens-file"), opts.TokensFile), err)}
		}
	}
	log := opts.Logger(logw)
	cfg := opts.Config()
	cfg.Policy, cfg.Tokens, cfg.Logger = pol, tokens, &log
	p, err := proxy.New(cfg)
	if err != nil {
		return &usageError{fmt.Errorf("proxy: %w", err)}
	}
	defer p.Close()
	if opts.CAOut != "" {
		if err := writeFileAtomic(opts.CAOut, p.CACertPEM(), 0o644); err != nil {
			return &usageError{fmt.Errorf("%s: %v", in.Name("ca-out"), err)}
		}
	}
	return serveProxy(ctx, p, opts, stdin, ready, log, func() error {
		np, err := policy.Load(opts.PolicyFile)
		if err != nil {
			return err
		}
		return p.SetPolicy(np)
	})
}

// readyWriter is where the readiness line goes: nowhere for fd 0, stdout
// and stderr for 1 and 2 (never closed: the log goes on there), else the
// descriptor fd, which must be open for writing and which closeReady
// closes.
func readyWriter(fd int, stdout, stderr io.Writer) (w io.Writer, closeReady func(), err error) {
	nop := func() {}
	switch fd {
	case 0:
		return nil, nop, nil
	case 1:
		return stdout, nop, nil
	case 2:
		return stderr, nop, nil
	}
	// An inherited descriptor, not one of the runtime's own (Go holds
	// some read-only files open): it must be open for writing.
	fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
	if err != nil {
		return nil, nop, fmt.Errorf("descriptor %d: not open", fd)
	}
	if fl&unix.O_ACCMODE == unix.O_RDONLY {
		return nil, nop, fmt.Errorf("descriptor %d: not open for writing", fd)
	}
	f := os.NewFile(uintptr(fd), "ready-fd")
	return f, func() { f.Close() }, nil
}

// serveProxy listens (listenProxy: an address, or a Unix socket removed
// on return), serves until ctx is done, and shuts down cleanly: stop
// accepting, let in-flight requests finish (bounded), close tunnels.
// SIGHUP asks for a reload, run off this goroutine (see reloader), so that
// a reload stuck on its file never delays shutdown. With tokens file "-",
// token maps are read from stdin. With exitOnStdinEOF, the end of stdin
// (of the token stream, or of stdin read for nothing else) shuts the
// proxy down as ctx's end does: the docker backend's sidecar thus ends
// when cork, which holds its stdin, is gone, even if it was SIGKILLed.
// With ExitOnStdinIdle, so does a token stream silent for that long: a
// kubernetes pod's stdin does not end when cork dies, so cork writes a
// heartbeat (watchStdin).
// Once it listens and has a token map (from the file, or the stream's
// first), it writes one settings.Ready line to ready, if not nil: its
// addresses and the CA's certificate, and soon after loads the upstream
// roots (afterReady); its first client waits for them at Accept.
func serveProxy(ctx context.Context, p *proxy.Proxy, opts *settings.Proxy, stdin io.Reader, ready io.Writer, log zerolog.Logger, reload func() error) error {
	// Before "proxy listening": a SIGHUP sent on that line must not meet
	// the default action, which ends the process.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	ln, addr, err := listenProxy(opts)
	if err != nil {
		return &usageError{err}
	}
	// Closing a Unix listener removes its socket. srv closes ln too, but
	// only once Serve has started.
	defer ln.Close()
	srv := p.NewServer()
	errc := make(chan error, 2)
	go func() { errc <- srv.Serve(p.LimitListener(rootsListener{ln, upstreamRoots})) }()

	var admin *http.Server
	// The CA's certificate (never its key) rides on the line: a launcher
	// that cannot copy CORK_CA_OUT out of the proxy's container (the
	// kubernetes backend) reads it there.
	rd := settings.Ready{Ready: true, Listen: addr, CA: string(p.CACertPEM())}
	if opts.AdminListen != "" {
		aln, err := net.Listen("tcp", opts.AdminListen)
		if err != nil {
			srv.Close()
			return &usageError{fmt.Errorf("listen %s: %v", opts.AdminListen, errors.Unwrap(err))}
		}
		rd.Admin = aln.Addr().String()
		admin = &http.Server{Handler: p.AdminHandler(), ReadHeaderTimeout: 10 * time.Second}
		go func() { errc <- admin.Serve(aln) }()
		log.Info().Str("addr", aln.Addr().String()).Msg("admin listening")
	}
	log.Info().Str("addr", addr).Str("policy", opts.PolicyFile).Msg("proxy listening")
	var readyOnce sync.Once
	signalReady := func() {
		readyOnce.Do(func() {
			defer func() { go afterReady() }()
			if ready == nil {
				return
			}
			if err := settings.WriteReady(ready, rd); err != nil {
				log.Error().Str("error", err.Error()).Msg("readiness line not written")
			}
		})
	}

	ctx, stopServing := context.WithCancel(ctx)
	defer stopServing()
	stopIdle := watchStdin(p, opts, stdin, log, signalReady, stopServing)
	defer stopIdle()

	rctx, stopReloads := context.WithCancel(ctx)
	defer stopReloads()
	reloads := startReloader(rctx, func() {
		if err := reload(); err != nil {
			log.Error().Str("policy", opts.PolicyFile).Str("error", err.Error()).Msg("policy reload rejected; keeping the current policy")
			return
		}
		log.Info().Str("policy", opts.PolicyFile).Msg("policy reloaded")
	})
	for {
		select {
		case <-hup:
			reloads.request()
			continue
		case err := <-errc:
			if !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("serve: %w", err)
			}
		case <-ctx.Done():
		}
		break
	}
	shutdownProxy(p, srv, admin, log)
	return nil
}

// afterReady runs once, as soon as the proxy is ready, off the path to
// it: it loads the upstream roots (upstreamRoots; a client that
// comes earlier waits at Accept while its own call loads them) and then
// hands the start-up's garbage back to the kernel. Loading the system's
// roots parses every certificate of /etc/ssl/certs (on Debian ~290: ~4 MB
// allocated, 0.25 MB kept, 30–60 ms on the benchmark machine): done
// here, the first intercepted request does not wait for it, and the heap
// it grew does not stay in the idle proxy's RSS (docs/PERFORMANCE.md,
// "cork proxy start-up and idle memory").
func afterReady() {
	upstreamRoots()
	debug.FreeOSMemory()
}

// listenProxy listens where opts say and returns the listener and its
// address as announced: host:port, or unix:PATH. A Unix socket is made
// mode 0600 (its directory, checked by settings, is private already) and
// is removed when the listener closes; a socket file left behind by a
// killed run is replaced, but only if nothing answers on it.
func listenProxy(opts *settings.Proxy) (net.Listener, string, error) {
	network, path := opts.ListenAddr()
	if network == "unix" {
		if err := removeStaleSocket(path); err != nil {
			return nil, "", fmt.Errorf("listen %s: %w", opts.Listen, err)
		}
	}
	ln, err := net.Listen(network, path)
	if err != nil {
		return nil, "", fmt.Errorf("listen %s: %v", opts.Listen, errors.Unwrap(err))
	}
	if network != "unix" {
		return ln, ln.Addr().String(), nil
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, "", fmt.Errorf("listen %s: %v", opts.Listen, pathError(err))
	}
	return ln, settings.UnixPrefix + path, nil
}

// removeStaleSocket removes the socket file at path if nothing answers on
// it (connection refused). Nothing there is fine; a live socket or any
// other file is an error, and is left alone.
func removeStaleSocket(path string) error {
	st, err := os.Lstat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil
	case err != nil:
		return pathError(err)
	case st.Mode().Type() != os.ModeSocket:
		return errors.New("exists and is not a socket")
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	switch {
	case err == nil:
		c.Close()
		return errors.New("in use: something answers on this socket")
	case !errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("in use, or not usable: %v", errors.Unwrap(err))
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove the stale socket: %v", pathError(err))
	}
	return nil
}

// watchStdin reads the token stream from stdin when the tokens come from
// there (the proxy is ready once the first map is applied), and with
// exit-on-stdin-eof stops serving when stdin ends; with
// exit-on-stdin-idle, when no byte has come on it for that long (a
// heartbeat is a blank line, which the decoder skips as white space).
// Otherwise the proxy is ready at once. stop ends the idle clock.
func watchStdin(p *proxy.Proxy, opts *settings.Proxy, stdin io.Reader, log zerolog.Logger, signalReady, stopServing func()) (stop func()) {
	stop = func() {}
	switch {
	case opts.TokensFile == "-":
		if opts.ExitOnStdinIdle > 0 {
			idle := opts.ExitOnStdinIdle
			w := newIdleWatch(stdin, idle, func() {
				log.Info().Str("reason", fmt.Sprintf("no byte on stdin for %v (exit-on-stdin-idle)", idle)).
					Msgf("token stream silent for %v; shutting down", idle)
				stopServing()
			})
			stdin, stop = w, w.stop
		}
		go func() {
			readTokenStream(stdin, p, log, signalReady)
			if opts.ExitOnStdinEOF {
				log.Info().Str("reason", "stdin closed (exit-on-stdin-eof)").Msg("token stream ended; shutting down")
				stopServing()
			}
		}()
	case opts.ExitOnStdinEOF:
		signalReady()
		go func() {
			if stdin != nil {
				io.Copy(io.Discard, stdin)
			}
			log.Info().Str("reason", "stdin closed (exit-on-stdin-eof)").Msg("stdin ended; shutting down")
			stopServing()
		}()
	default:
		signalReady()
	}
	return stop
}

// idleWatch is a reader whose every read of at least one byte restarts
// a clock; when the clock runs out, silent is called, once. The clock
// starts with newIdleWatch. Read is for one goroutine; stop is safe to
// call from any, and more than once.
type idleWatch struct {
	r     io.Reader
	idle  time.Duration
	timer *time.Timer
}

func newIdleWatch(r io.Reader, idle time.Duration, silent func()) *idleWatch {
	var once sync.Once
	w := &idleWatch{r: r, idle: idle}
	w.timer = time.AfterFunc(idle, func() { once.Do(silent) })
	return w
}

func (w *idleWatch) Read(b []byte) (int, error) {
	if w.r == nil {
		return 0, io.EOF
	}
	n, err := w.r.Read(b)
	if n > 0 {
		w.timer.Reset(w.idle) // re-arms it if it ran out: silent is once-only
	}
	return n, err
}

// stop ends the clock: silent is not called after it returns, unless it
// had begun.
func (w *idleWatch) stop() { w.timer.Stop() }

// shutdownProxy stops serving within DefaultShutdownTimeout: requests in
// flight finish (and stream) completely unless the deadline comes first.
func shutdownProxy(p *proxy.Proxy, srv, admin *http.Server, log zerolog.Logger) {
	log.Info().Msg("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), DefaultShutdownTimeout)
	defer cancel()
	if admin != nil {
		admin.Shutdown(sctx)
	}
	// Stop accepting and drain plain connections (srv), and let requests in
	// flight inside intercepted connections finish (p), both bounded.
	srvDone := make(chan error, 1)
	go func() { srvDone <- srv.Shutdown(sctx) }()
	go func() {
		// At the deadline, cut plain requests still in flight at once, so
		// that the proxy's wait for their audit lines (p.Shutdown) is short.
		<-sctx.Done()
		_ = srv.Close()
	}()
	perr := p.Shutdown(sctx)
	if err := <-srvDone; err != nil || perr != nil {
		srv.Close()
		log.Warn().Msg("in-flight requests cut at the shutdown deadline")
	}
	log.Info().Msg("stopped")
}

// reloader runs reloads on its own goroutine, one at a time. A request
// made while a reload runs is kept, and any further ones are folded into
// it: one more reload follows, reading the file as it is by then. The
// caller never waits: a reload stuck on its file (a FIFO put in the
// policy's place, a hung network mount) holds only the reloader's
// goroutine, which is abandoned when the process exits.
type reloader struct {
	kick chan struct{} // room for one pending request
}

// startReloader starts the goroutine that calls reload for each request
// until ctx is done. request is safe for concurrent use.
func startReloader(ctx context.Context, reload func()) *reloader {
	r := &reloader{kick: make(chan struct{}, 1)}
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-r.kick:
				reload()
			}
		}
	}()
	return r
}

// request asks for a reload without waiting for it.
func (r *reloader) request() {
	select {
	case r.kick <- struct{}{}:
	default: // one is pending already: it will read the latest file
	}
}

// readTokenStream applies each token map read from r until r ends,
// calling applied after each. A malformed object is logged (never its
// content) and skipped; the last good map stays in force.
func readTokenStream(r io.Reader, p *proxy.Proxy, log zerolog.Logger, applied func()) {
	dec := resolve.NewTokenDecoder(r)
	for {
		t, err := dec.Next()
		var oe *resolve.ObjectError
		switch {
		case err == nil:
			p.SetTokens(t)
			log.Info().Strs("slots", t.Slots()).Msg("tokens updated")
			applied()
		case errors.As(err, &oe):
			log.Error().Str("error", err.Error()).Msg("token stream: token map skipped; keeping the current tokens")
		case errors.Is(err, io.EOF):
			log.Info().Msg("token stream closed; keeping the current tokens")
			return
		default:
			log.Error().Str("error", err.Error()).Msg("token stream: stopped reading; keeping the current tokens")
			return
		}
	}
}

// prefixLines puts prefix in front of each line of err, so that every
// printed line names its setting and file.
func prefixLines(prefix string, err error) error {
	var lines []error
	for _, l := range strings.Split(err.Error(), "\n") {
		lines = append(lines, fmt.Errorf("%s: %s", prefix, l))
	}
	return errors.Join(lines...)
}

// writeFileAtomic writes data to path through a temporary file and a
// rename, so readers never see a partial file.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".cork-*")
	if err != nil {
		return pathError(err)
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(data); err != nil {
		f.Close()
		return pathError(err)
	}
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return pathError(err)
	}
	if err := f.Close(); err != nil {
		return pathError(err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return pathError(err)
	}
	return nil
}
