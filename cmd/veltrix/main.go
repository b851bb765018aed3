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
			return 0
		case errors.Is(err, flag.ErrHelp):
			return 0
		case errors.As(err, &ee):
			if ee.msg != "" {
				fmt.Fprintf(stderr, "veltrix %s: %s\n", c.name, ee.msg)
			}
			return ee.code
		case errors.Is(err, errUsage):
			fmt.Fprintf(stderr, "veltrix %s: %v\n", c.name, err)
			return 2
		}
		fmt.Fprintf(stderr, "veltrix %s: %v\n", c.name, err)
		return 1
	}
	fmt.Fprintf(stderr, "veltrix: unknown command %q\n\n", args[0])
	usage(stderr)
	return 2
}

// Exit codes beyond 0 (success), 1 (error) and 2 (usage).
const (
	// exitSuperseded: a write reached its replicas but changed nothing
	// because a newer version is stored.
	exitSuperseded = 3
)

// exitError ends a command with a specific exit code, after the command has
// printed its result; msg, if any, goes to stderr.
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return fmt.Sprintf("exit %d: %s", e.code, e.msg) }

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
