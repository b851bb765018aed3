package main

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/veltrixdb/veltrix/pkg/client"
	"github.com/veltrixdb/veltrix/pkg/flagenv"
	"github.com/veltrixdb/veltrix/pkg/grpcx"
	"github.com/veltrixdb/veltrix/pkg/tlsx"
	kvv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/kv/v1"
	migratorv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/migrator/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"sigs.k8s.io/yaml"
)

// conn holds the root's persistent flags, which every networked command
// shares, and dials what they name.
type conn struct {
	endpoints []string
	migrator  string
	output    string
	timeout   time.Duration
	// cacert, cert and key are the PEM files of TLS to the routers and
	// the migrator (--cacert, --cert, --key); useTLS (--tls) turns TLS on
	// with the system roots when no --cacert is given.
	cacert, cert, key string
	useTLS            bool
	// token is sent as "authorization: Bearer <token>" (--token).
	token string
	// args is the command line as given (bench records it).
	args []string
}

func (c *conn) addFlags(fs *pflag.FlagSet) {
	c.endpoints = []string{defaultRouterAddr}
	fs.Var((*listValue)(&c.endpoints), "endpoints", "comma-separated router addresses")
	fs.StringVar(&c.migrator, "migrator", defaultMigratorAddr, "migrator address (import, verify, stream, jobs)")
	fs.StringVarP(&c.output, "output", "o", "table", "output format: table, json or yaml")
	fs.DurationVar(&c.timeout, "timeout", 30*time.Second, "deadline for each request")
	fs.StringVar(&c.cacert, "cacert", "", "PEM CA certificates that verify the routers and the migrator; turns TLS on")
	fs.StringVar(&c.cert, "cert", "", "PEM client certificate (mutual TLS; needs --cacert or --tls)")
	fs.StringVar(&c.key, "key", "", "PEM private key of --cert")
	fs.BoolVar(&c.useTLS, "tls", false, "use TLS verifying the servers with the system roots (implied by --cacert)")
	fs.StringVar(&c.token, "token", "", "API key sent as a bearer token (needs TLS)")
}

func (c *conn) validate() error {
	switch c.output {
	case "table", "json", "yaml":
	default:
		return usageErr("--output %q: want table, json or yaml", c.output)
	}
	if len(c.endpoints) == 0 {
		return usageErr("--endpoints is empty")
	}
	tlsOn := c.useTLS || c.cacert != ""
	switch {
	case c.cert != "" && c.key == "":
		return usageErr("--cert %s: --key is required with it", c.cert)
	case c.key != "" && c.cert == "":
		return usageErr("--key %s: --cert is required with it", c.key)
	case c.cert != "" && !tlsOn:
		return usageErr("--cert %s: TLS is off; pass --cacert (or --tls for the system roots)", c.cert)
	case c.token != "" && !tlsOn:
		return usageErr("--token: a token is never sent in plaintext; pass --cacert (or --tls for the system roots)")
	}
	return nil
}

// tlsConfig is the TLS config of --cacert, --cert, --key and --tls; nil
// when TLS is off. A file that does not load is an error naming its flag
// and path.
func (c *conn) tlsConfig() (*tls.Config, error) {
	f := tlsx.Files{CertFile: c.cert, KeyFile: c.key, CAFile: c.cacert}
	switch {
	case !f.Any() && !c.useTLS:
		return nil, nil
	case !f.Any():
		return &tls.Config{MinVersion: tls.VersionTLS12}, nil
	}
	// A command is short-lived: no reloading. The config keeps what was
	// loaded.
	src, err := tlsx.Load(f, "", slog.New(slog.DiscardHandler))
	if err != nil {
		return nil, err
	}
	src.Close()
	return src.ClientTLSConfig(), nil
}

// clientOptions are the TLS and token options of a client of the routers.
func (c *conn) clientOptions() ([]client.Option, error) {
	cfg, err := c.tlsConfig()
	if err != nil {
		return nil, err
	}
	var opts []client.Option
	if cfg != nil {
		opts = append(opts, client.WithTLS(cfg))
	}
	if c.token != "" {
		opts = append(opts, client.WithBearerToken(c.token))
	}
	return opts, nil
}

// dialOptions are the TLS and token options of a connection to the
// migrator.
func (c *conn) dialOptions() ([]grpc.DialOption, error) {
	cfg, err := c.tlsConfig()
	if err != nil {
		return nil, err
	}
	var opts []grpc.DialOption
	if cfg != nil {
		opts = append(opts, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	}
	if c.token != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(client.BearerToken(c.token)))
	}
	return opts, nil
}

// listValue is flagenv.StringList as a pflag.Value: a comma-separated list
// that replaces the default (not pflag's appending string slice).
type listValue flagenv.StringList

func (l *listValue) String() string     { return (*flagenv.StringList)(l).String() }
func (l *listValue) Set(v string) error { return (*flagenv.StringList)(l).Set(v) }
func (l *listValue) Type() string       { return "list" }

// applyEnv sets every flag of fs not given on the command line from its
// VELTRIX_* variable (flagenv.Name), as flagenv.Apply does for Go's flag
// package.
func applyEnv(fs *pflag.FlagSet, lookup func(string) (string, bool)) error {
	var err error
	fs.VisitAll(func(f *pflag.Flag) {
		if err != nil || f.Changed || f.Name == "help" {
			return
		}
		env := flagenv.Name(f.Name)
		if v, ok := lookup(env); ok {
			if e := fs.Set(f.Name, v); e != nil {
				err = fmt.Errorf("environment variable %s=%q: %w", env, v, e)
			}
		}
	})
	return err
}

func (c *conn) client(ctx context.Context) (*client.Client, error) {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	opts, err := c.clientOptions()
	if err != nil {
		return nil, err
	}
	cl, err := client.New(cctx, c.endpoints, append(opts, client.WithDefaultTimeout(c.timeout))...)
	if err != nil {
		return nil, fmt.Errorf("cannot reach a router at %s: %w\n(is a stack running? start one with 'make run', or pass --endpoints / VELTRIX_ENDPOINTS)", strings.Join(c.endpoints, ","), err)
	}
	return cl, nil
}

func (c *conn) migratorClient() (migratorv1.MigratorServiceClient, func(), error) {
	opts, err := c.dialOptions()
	if err != nil {
		return nil, nil, err
	}
	cc, err := grpcx.Dial(c.migrator, opts...)
	if err != nil {
		return nil, nil, err
	}
	return migratorv1.NewMigratorServiceClient(cc), func() { cc.Close() }, nil
}

// withRouter runs fn with a client of the routers named by --endpoints,
// under the command's (signal-aware) context.
func (c *conn) withRouter(cmd *cobra.Command, fn func(ctx context.Context, cl *client.Client) error) error {
	ctx := cmd.Context()
	cl, err := c.client(ctx)
	if err != nil {
		return err
	}
	defer cl.Close()
	return fn(ctx, cl)
}

// withMigrator runs fn with a client of the migrator named by --migrator.
func (c *conn) withMigrator(cmd *cobra.Command, fn func(ctx context.Context, mc migratorv1.MigratorServiceClient) error) error {
	mc, closeFn, err := c.migratorClient()
	if err != nil {
		return err
	}
	defer closeFn()
	return fn(cmd.Context(), mc)
}

// call runs one request under --timeout.
func (c *conn) call(ctx context.Context, fn func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	return fn(ctx)
}

// print writes v as --output asks: JSON or YAML (a proto message in
// protojson's field names), or table() for people.
func (c *conn) print(w io.Writer, v any, table func() error) error {
	switch c.output {
	case "json":
		return printJSON(w, v)
	case "yaml":
		return printYAML(w, v)
	}
	return table()
}

// explain adds what to do to common gRPC errors.
func explain(err error, what string) error {
	if err == nil {
		return nil
	}
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	switch st.Code() {
	case codes.Unavailable:
		// A write short of its replicas also names replicas that refused
		// connections; that is not the CLI failing to connect.
		if !strings.Contains(st.Message(), "required replicas") && (strings.Contains(st.Message(), "connection refused") || strings.Contains(st.Message(), "connect")) {
			return fmt.Errorf("%s: cannot connect (%s); is the service running? start a local stack with 'make run', or pass --endpoints/--migrator", what, st.Message())
		}
		return fmt.Errorf("%s: unavailable: %s (retry; check 'veltrix status' for nodes that are down)", what, st.Message())
	case codes.NotFound:
		return fmt.Errorf("%s: not found: %s (list tables with 'veltrix table list', jobs with 'veltrix jobs list')", what, st.Message())
	case codes.InvalidArgument:
		return fmt.Errorf("%s: invalid argument: %s", what, st.Message())
	case codes.DeadlineExceeded:
		return fmt.Errorf("%s: timed out (raise --timeout): %s", what, st.Message())
	case codes.Unauthenticated:
		return fmt.Errorf("%s: not authenticated: %s (set VELTRIX_TOKEN to an API key's token, from 'veltrix auth key create')", what, st.Message())
	case codes.PermissionDenied:
		return fmt.Errorf("%s: permission denied: %s (an admin grants it with 'veltrix auth principal set')", what, st.Message())
	}
	return fmt.Errorf("%s: %s: %s", what, st.Code(), st.Message())
}

// printJSON writes a proto message (or any value) as indented JSON.
func printJSON(w io.Writer, v any) error {
	if m, ok := v.(proto.Message); ok {
		b, err := protojson.MarshalOptions{Multiline: true, Indent: "  ", EmitUnpopulated: false}.Marshal(m)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(w, string(b))
		return err
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// printYAML writes v as YAML: its JSON (as printJSON writes it) converted,
// so field names are the same in both.
func printYAML(w io.Writer, v any) error {
	var b []byte
	var err error
	if m, ok := v.(proto.Message); ok {
		b, err = protojson.Marshal(m)
	} else {
		b, err = json.Marshal(v)
	}
	if err != nil {
		return err
	}
	y, err := yaml.JSONToYAML(b)
	if err != nil {
		return err
	}
	_, err = w.Write(y)
	return err
}

// table writes rows aligned in columns.
func table(w io.Writer, header []string, rows [][]string) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	return tw.Flush()
}

// show renders bytes for people: as text when it is printable UTF-8, else
// base64 with a "b64:" prefix.
func show(b []byte) string {
	if utf8.Valid(b) {
		printable := true
		for _, r := range string(b) {
			if r < 0x20 && r != '\t' || r == 0x7f {
				printable = false
				break
			}
		}
		if printable {
			return string(b)
		}
	}
	return "b64:" + base64.StdEncoding.EncodeToString(b)
}

// arg decodes a key or value given on the command line: "b64:..." is
// base64, anything else is taken as text.
func arg(s string) ([]byte, error) {
	if rest, ok := strings.CutPrefix(s, "b64:"); ok {
		b, err := base64.StdEncoding.DecodeString(rest)
		if err != nil {
			return nil, usageErr("%q: bad base64 after b64: (%v)", s, err)
		}
		return b, nil
	}
	return []byte(s), nil
}

func consistency(s string) (kvv1.Consistency, error) {
	switch strings.ToLower(s) {
	case "":
		return kvv1.Consistency_CONSISTENCY_UNSPECIFIED, nil
	case "one":
		return kvv1.Consistency_CONSISTENCY_ONE, nil
	case "quorum":
		return kvv1.Consistency_CONSISTENCY_QUORUM, nil
	case "all":
		return kvv1.Consistency_CONSISTENCY_ALL, nil
	}
	return 0, usageErr("--consistency %q: want one, quorum or all", s)
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}
