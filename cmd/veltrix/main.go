// Command veltrix is the Veltrix command-line tool: a local development
// stack, key-value and table commands, migration jobs (import, verify,
// stream) and cluster status. Every command takes --endpoints (the routers)
// and --output table|json; every flag can also be set with its VELTRIX_*
// environment variable.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

type command struct {
	name  string
	usage string
	run   func(args []string, stdout io.Writer) error
}

var commands []command

func register(c command) { commands = append(commands, c) }

func usage(w io.Writer) {
	fmt.Fprintln(w, "Usage: veltrix <command> [arguments] [flags]")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Commands:")
	sort.Slice(commands, func(i, j int) bool { return commands[i].name < commands[j].name })
	for _, c := range commands {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.usage)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Run 'veltrix <command> -h' for a command's flags. Every flag can also be set")
	fmt.Fprintln(w, "through its environment variable: --endpoints ↔ VELTRIX_ENDPOINTS.")
	fmt.Fprintln(w)
	fmt.Fprintln(w, exitCodes)
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stdout)
		return 0
	}
	for _, c := range commands {
		if c.name != args[0] {
			continue
		}
		err := c.run(args[1:], stdout)
		var ee *exitError
		switch {
		case err == nil:
			return exitOK
		case errors.Is(err, flag.ErrHelp):
			return exitOK
		case errors.Is(err, errUsage):
			fmt.Fprintf(stderr, "veltrix %s: %v\n", c.name, err)
			return exitUsage
		case errors.As(err, &ee):
			fmt.Fprintf(stderr, "veltrix %s: %v\n", c.name, err)
			return ee.code
		}
		fmt.Fprintf(stderr, "veltrix %s: %v\n", c.name, err)
		return exitFailure
	}
	fmt.Fprintf(stderr, "veltrix: unknown command %q\n\n", args[0])
	usage(stderr)
	return 2
}

// Exit codes, documented in usage and the README; scripts rely on them.
const (
	// exitOK: the command did what was asked; a job SUCCEEDED (a verify
	// passed its verdict).
	exitOK = 0
	// exitFailure: the command failed: a server unreachable or refusing the
	// request, a job FAILED or CANCELLED.
	exitFailure = 1
	// exitUsage: the command was called wrongly (flags, arguments).
	exitUsage = 2
	// exitIncomplete: a job ran to its end but is COMPLETED_WITH_ERRORS: an
	// import that did not write every source item, a verify whose verdict
	// failed. Never decommission a source on this code.
	exitIncomplete = 3
	// exitSuperseded: a write reached its replicas but changed nothing
	// because a newer version is stored (the same code: not done as asked).
	exitSuperseded = exitIncomplete
	// exitInterrupted: 'cluster rebalance status --watch' stopped by Ctrl-C
	// before the cluster was balanced: 128+SIGINT, as a shell reports it.
	// Not 0: a script that waits for the rebalance before it stops a node
	// must not go on.
	exitInterrupted = 130
)

const exitCodes = `Exit codes:
  0  success: the job SUCCEEDED (a verify passed: nothing missing, different, extra or unread)
  1  failure: a server unreachable or refusing the request, a job FAILED or CANCELLED
  2  usage error: wrong flags or arguments
  3  completed with errors: an import that lost source data, a verify whose verdict failed,
     a write superseded by a newer stored version (nothing changed)
  130 interrupted: 'cluster rebalance status --watch' stopped (Ctrl-C) before the cluster
     was balanced; the rebalance goes on`

// exitError carries a specific exit code.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func withExit(code int, err error) error { return &exitError{code: code, err: err} }

// errUsage marks errors in how a command was called.
var errUsage = errors.New("usage")

func usageErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errUsage, fmt.Sprintf(format, args...))
}

// subcommand dispatches "veltrix <group> <sub> ..." commands.
func subcommand(group string, subs map[string]func([]string, io.Writer) error) func([]string, io.Writer) error {
	return func(args []string, w io.Writer) error {
		names := make([]string, 0, len(subs))
		for n := range subs {
			names = append(names, n)
		}
		sort.Strings(names)
		if len(args) == 0 {
			return usageErr("want one of: %s (veltrix %s <subcommand> -h for help)", strings.Join(names, ", "), group)
		}
		f, ok := subs[args[0]]
		if !ok {
			return usageErr("unknown subcommand %q; want one of: %s", args[0], strings.Join(names, ", "))
		}
		return f(args[1:], w)
	}
}
