package confine

import (
	"errors"
	"fmt"
	"os"
	"sync/atomic"
)

// Spec is one confined command.
type Spec struct {
	Argv []string // the command; Argv[0] is looked up in Env's PATH inside the sandbox
	Env  []string // the command's whole environment
	Dir  string   // its working directory, a path visible in the sandbox

	View View // what the sandbox sees of the host's filesystem

	// SocketDir is a private (0700) host directory holding the proxy's
	// Unix socket, named SocketName. Init reaches it through a descriptor,
	// so the directory need not be visible in the sandbox (it is hidden).
	SocketDir, SocketName string
	// Port is where the relay listens inside the namespace, on 127.0.0.1.
	Port int

	// RunAs, when set, is the user the command runs as when cork runs as
	// root (the invoking user under sudo). Nil: the caller's own uid
	// (root stays uid 0 inside, without any capability).
	RunAs *User
	// NoLandlock leaves Landlock out of the command's restrictions.
	NoLandlock bool
	// ForwardInterrupt makes init pass SIGINT and SIGQUIT on to the
	// command. Leave it false when the command shares cork's terminal:
	// the terminal already sends them to the whole foreground group.
	ForwardInterrupt bool
}

// User is a numeric uid and gid.
type User struct{ UID, GID int }

// initArg0 marks the re-executed program as the sandbox's init.
const initArg0 = "cork-sandbox-init"

var hooked atomic.Bool

// Main runs the sandbox's init when this process is one, and never
// returns then. Otherwise it returns at once. Every
// program that starts a sandbox (cork's main, and TestMain of packages
// whose tests do) calls it first.
func Main() {
	hooked.Store(true)
	if len(os.Args) == 0 {
		return
	}
	if os.Args[0] == initArg0 {
		os.Exit(initMain())
	}
}

// errNotHooked is returned by Start when the program's main did not call
// Main: re-executing it would run the program again instead of init.
var errNotHooked = errors.New("internal error: confine.Main was not called by this program's main (or TestMain)")

// Error is a sandbox that could not be set up; the command was not
// started.
type Error struct{ Msg string }

func (e *Error) Error() string { return e.Msg }

func errorf(format string, a ...any) error { return &Error{Msg: fmt.Sprintf(format, a...)} }
