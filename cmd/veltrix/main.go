// Command veltrix is the Veltrix command-line tool: a local development
// stack, key-value and table commands, migration jobs (import, verify,
// stream) and cluster status. It is built on cobra and pflag, as etcdctl and
// kubectl are: the root's persistent flags (--endpoints, --migrator,
// -o/--output table|json|yaml, --timeout) apply to every command, and every
// flag can also be set with its VELTRIX_* environment variable.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// command is one top-level command: build makes its cobra command (flags,
// subcommands) for one run; run is a command that parses its own arguments
// (tests register those).
type command struct {
	name  string
	usage string
	build func(c *conn) *cobra.Command
	run   func(args []string, stdout io.Writer) error
}

var commands []command

func register(c command) { commands = append(commands, c) }

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run executes the command line args and returns the exit code. Ctrl-C
// (SIGINT) and SIGTERM cancel the context every command runs under; a
// second one kills the process as usual.
func run(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		stop()
	}()
	return execute(ctx, args, stdout, stderr)
}

func execute(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := newRoot(args)
	root.SetArgs(normalizeArgs(args, flagTable(root)))
	root.SetOut(stdout)
	root.SetErr(stderr)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return exitOK
	}
	// Errors are prefixed with the top-level command, as before cobra:
	// "veltrix kv: ...".
	name := "veltrix"
	for c := cmd; c != nil && c.HasParent(); c = c.Parent() {
		name = "veltrix " + c.Name()
	}
	var ee *exitError
	switch {
	case errors.As(err, &ee):
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return ee.code
	case errors.Is(err, errUsage):
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		if cmd != nil {
			fmt.Fprintf(stderr, "Run '%s --help' for usage.\n", cmd.CommandPath())
		}
		return exitUsage
	case ctx.Err() != nil:
		fmt.Fprintf(stderr, "%s: interrupted: %v\n", name, err)
		return exitInterrupted
	}
	fmt.Fprintf(stderr, "%s: %v\n", name, err)
	return exitFailure
}

const rootLong = `veltrix runs a local development stack, reads and writes items and tables,
migrates DynamoDB data (import, verify, stream) and operates a cluster.

Every flag can also be set through its environment variable:
--endpoints ↔ VELTRIX_ENDPOINTS, --output ↔ VELTRIX_OUTPUT. A flag given on
the command line wins. Long flags also work with one dash (-endpoints), as
they did before; after '--' every argument is positional (veltrix kv get t -- -k).`

// newRoot builds the command tree for one run (flags hold their values, so
// each run gets its own). args are the raw arguments, for commands that
// record how they were called.
func newRoot(args []string) *cobra.Command {
	c := &conn{args: args}
	root := &cobra.Command{
		Use:           "veltrix",
		Short:         "the Veltrix command-line tool",
		Long:          rootLong,
		SilenceErrors: true,
		SilenceUsage:  true,
		Args:          cobra.ArbitraryArgs,
		// Not a no-op: a root without Run answers an unknown command with
		// its help and exit 0.
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return cmd.Help()
			}
			msg := fmt.Sprintf("unknown command %q", args[0])
			if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
				msg += fmt.Sprintf(" (did you mean %q?)", s[0])
			}
			return usageErr("%s", msg)
		},
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			if err := applyEnv(cmd.Flags(), lookupEnv); err != nil {
				return usageErr("%v", err)
			}
			if cmd.Annotations[annoConn] != "" {
				return c.validate()
			}
			return nil
		},
	}
	c.addFlags(root.PersistentFlags())
	_ = root.RegisterFlagCompletionFunc("output", cobra.FixedCompletions([]string{"table", "json", "yaml"}, cobra.ShellCompDirectiveNoFileComp))
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageErr("%v", err) })
	root.SetUsageTemplate(root.UsageTemplate() + "\n" + exitCodes + "\n")
	for _, reg := range commands {
		switch {
		case reg.build != nil:
			root.AddCommand(reg.build(c))
		case reg.run != nil:
			run := reg.run
			root.AddCommand(&cobra.Command{
				Use: reg.name, Short: reg.usage, DisableFlagParsing: true,
				RunE: func(cmd *cobra.Command, args []string) error { return run(args, cmd.OutOrStdout()) },
			})
		}
	}
	return root
}

// annoConn marks the commands that use the persistent flags (validated
// before they run); dev, bench and completion do not.
const annoConn = "veltrix/conn"

// leaf makes a command that uses the persistent flags and takes between
// minArgs and maxArgs (-1: any) positional arguments.
func leaf(use, short string, minArgs, maxArgs int, run func(cmd *cobra.Command, args []string) error) *cobra.Command {
	return &cobra.Command{
		Use: use, Short: short, RunE: run, Args: nargs(minArgs, maxArgs),
		Annotations: map[string]string{annoConn: "1"},
	}
}

// nargs accepts between minArgs and maxArgs (-1: any) positional arguments.
func nargs(minArgs, maxArgs int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) < minArgs || (maxArgs >= 0 && len(args) > maxArgs) {
			return usageErr("wrong number of arguments (%d); usage: %s", len(args), cmd.UseLine())
		}
		return nil
	}
}

// group makes a command whose subcommands do the work; called alone or with
// an unknown subcommand it is a usage error naming the subcommands.
func group(use, short string, subs ...*cobra.Command) *cobra.Command {
	g := &cobra.Command{Use: use, Short: short, Args: cobra.ArbitraryArgs}
	g.AddCommand(subs...)
	g.RunE = func(cmd *cobra.Command, args []string) error {
		names := make([]string, 0, len(subs))
		for _, s := range cmd.Commands() {
			if s.IsAvailableCommand() {
				names = append(names, s.Name())
			}
		}
		if len(args) == 0 {
			return usageErr("want one of: %s (%s <subcommand> -h for help)", strings.Join(names, ", "), cmd.CommandPath())
		}
		return usageErr("unknown subcommand %q; want one of: %s", args[0], strings.Join(names, ", "))
	}
	return g
}

// flagTable maps every flag name and shorthand in the tree to whether it
// takes a value (a bool flag does not), for normalizeArgs.
func flagTable(root *cobra.Command) map[string]bool {
	t := map[string]bool{"help": false, "h": false}
	add := func(f *pflag.Flag) {
		t[f.Name] = t[f.Name] || f.NoOptDefVal == ""
		if f.Shorthand != "" {
			t[f.Shorthand] = t[f.Shorthand] || f.NoOptDefVal == ""
		}
	}
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		c.Flags().VisitAll(add)
		c.PersistentFlags().VisitAll(add)
		for _, s := range c.Commands() {
			walk(s)
		}
	}
	walk(root)
	return t
}

// normalizeArgs rewrites the single-dash long flags Go's flag package
// accepted (-endpoints x, -output=json) to pflag's --endpoints: a flag of
// the tree named by more than one letter. Values of flags that take one are
// left alone (--filter -x), and so is everything after "--".
func normalizeArgs(args []string, flags map[string]bool) []string {
	out := make([]string, 0, len(args))
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			return append(out, args[i:]...)
		}
		if len(a) < 2 || a[0] != '-' {
			out = append(out, a)
			continue
		}
		name, _, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		takes, known := flags[name]
		if !known {
			out = append(out, a)
			continue
		}
		if !strings.HasPrefix(a, "--") && len(name) > 1 {
			a = "-" + a
		}
		out = append(out, a)
		if takes && !hasValue && i+1 < len(args) {
			i++
			out = append(out, args[i])
		}
	}
	return out
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
	// exitInterrupted: Ctrl-C (or SIGTERM) stopped a command before it was
	// done; 'cluster rebalance status --watch' before the cluster was
	// balanced: 128+SIGINT, as a shell reports it. Not 0: a script that
	// waits for the rebalance before it stops a node must not go on.
	exitInterrupted = 130
)

const exitCodes = `Exit codes:
  0  success: the job SUCCEEDED (a verify passed: nothing missing, different, extra or unread);
     also Ctrl-C while watching a job (import, verify, stream, jobs watch/retry): the job keeps running
  1  failure: a server unreachable or refusing the request, a job FAILED or CANCELLED
  2  usage error: wrong flags or arguments
  3  completed with errors: an import that lost source data, a verify whose verdict failed,
     a write superseded by a newer stored version (nothing changed)
  130 interrupted: Ctrl-C (SIGINT) or SIGTERM stopped the command; 'cluster rebalance status
     --watch' stopped before the cluster was balanced (the rebalance goes on)`

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
