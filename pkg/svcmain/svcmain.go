// Package svcmain is the skeleton the three services (storage, router,
// migrator) share, so each concern has one mechanism:
//
//   - Common: the config fields every service has (cluster, etcd
//     endpoints, listen/advertise/metrics addresses, shutdown timeout, TLS
//     and etcd TLS files), their flags, defaults and checks, written once;
//   - NewEtcdClient: the etcd client, its own logs bridged to slog
//     (ZapLogger) at warn and above;
//   - Skeleton: TLS certificates (pkg/tlsx, reloaded as they change),
//     listener, gRPC server (pkg/grpcx), metrics endpoint, a
//     readiness signal (health NOT_SERVING until SetReady, and Ready) and the
//     ordered shutdown (Close);
//   - ToStatus: the edge's error to gRPC code conversion, unknown errors
//     being Internal;
//   - Run and LogFlags: a binary's main (flags with environment variables,
//     a slog logger, running until SIGINT or SIGTERM).
package svcmain

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/veltrixdb/veltrix/pkg/flagenv"
)

// LogFlags holds the logging flags every binary has.
type LogFlags struct {
	Level  string
	Format string
}

// AddFlags registers --log-level and --log-format.
func (l *LogFlags) AddFlags(fs *flag.FlagSet) {
	fs.StringVar(&l.Level, "log-level", "info", "log level: debug, info, warn or error")
	fs.StringVar(&l.Format, "log-format", "text", "log format: text or json")
}

// Logger builds the logger the flags describe, writing to stderr.
func (l *LogFlags) Logger() (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(l.Level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", l.Level)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch l.Format {
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", l.Format)
}

// Closer is a started service.
type Closer interface {
	Close() error
	Err() <-chan error
}

// Run parses flags (and their VELTRIX_* variables), calls start, and waits
// for SIGINT/SIGTERM or the service failing, then closes it. It returns the
// process exit code.
func Run(name string, addFlags func(*flag.FlagSet), start func(ctx context.Context, logger *slog.Logger) (Closer, error)) int {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	var lf LogFlags
	lf.AddFlags(fs)
	addFlags(fs)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: %s [flags]\n\nEvery flag can also be set with its environment variable, e.g. --log-level ↔ %s.\n\n", name, flagenv.Name("log-level"))
		fs.PrintDefaults()
	}
	if err := flagenv.Parse(fs, os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		return 2
	}
	logger, err := lf.Logger()
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	svc, err := start(ctx, logger)
	if err != nil {
		logger.Error("start failed", "err", err)
		return 1
	}
	code := 0
	select {
	case <-ctx.Done():
		logger.Info("shutting down", "signal", context.Cause(ctx))
	case err := <-svc.Err():
		logger.Error("server stopped", "err", err)
		code = 1
	}
	stop()
	if err := svc.Close(); err != nil {
		logger.Error("shutdown", "err", err)
		code = 1
	}
	return code
}
