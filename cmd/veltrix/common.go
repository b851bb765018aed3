package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/veltrixdb/veltrix/pkg/client"
	"github.com/veltrixdb/veltrix/pkg/flagenv"
	"github.com/veltrixdb/veltrix/pkg/grpcx"
	kvv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/kv/v1"
	migratorv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/migrator/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// conn holds the flags every networked command shares.
type conn struct {
	endpoints []string
	migrator  string
	output    string
	timeout   time.Duration
}

func (c *conn) addFlags(fs *flag.FlagSet) {
	c.endpoints = []string{"127.0.0.1:7400"}
	fs.Var((*flagenv.StringList)(&c.endpoints), "endpoints", "comma-separated router addresses")
	fs.StringVar(&c.migrator, "migrator", "127.0.0.1:7600", "migrator address (import, verify, stream, jobs)")
	fs.StringVar(&c.output, "output", "table", "output format: table or json")
	fs.DurationVar(&c.timeout, "timeout", 30*time.Second, "deadline for each request")
}

func (c *conn) validate() error {
	if c.output != "table" && c.output != "json" {
		return usageErr("--output %q: want table or json", c.output)
	}
	if len(c.endpoints) == 0 {
		return usageErr("--endpoints is empty")
	}
	return nil
}

// parse parses a command's flags (and VELTRIX_* variables) and checks the
// number of positional arguments.
func parse(fs *flag.FlagSet, args []string, minArgs, maxArgs int, c *conn) ([]string, error) {
	fs.SetOutput(io.Discard)
	// Accept flags after positional arguments too (veltrix kv get t k --output json).
	var pos []string
	rest := args
	for {
		if err := fs.Parse(rest); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				fs.SetOutput(nil)
				fs.Usage()
				fmt.Fprintf(fs.Output(), "\n%s\n", exitCodes)
				return nil, flag.ErrHelp
			}
			return nil, usageErr("%v", err)
		}
		rest = fs.Args()
		if len(rest) == 0 {
			break
		}
		pos = append(pos, rest[0])
		rest = rest[1:]
	}
	if err := flagenv.Apply(fs, lookupEnv); err != nil {
		return nil, usageErr("%v", err)
	}
	if c != nil {
		if err := c.validate(); err != nil {
			return nil, err
		}
	}
	if len(pos) < minArgs || (maxArgs >= 0 && len(pos) > maxArgs) {
		return nil, usageErr("wrong number of arguments (%d); usage: %s", len(pos), fs.Name())
	}
	return pos, nil
}

func (c *conn) client(ctx context.Context) (*client.Client, error) {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	cl, err := client.New(cctx, c.endpoints, client.WithDefaultTimeout(c.timeout))
	if err != nil {
		return nil, fmt.Errorf("cannot reach a router at %s: %w\n(is a stack running? start one with 'make run', or pass --endpoints / VELTRIX_ENDPOINTS)", strings.Join(c.endpoints, ","), err)
	}
	return cl, nil
}

func (c *conn) migratorClient() (migratorv1.MigratorServiceClient, func(), error) {
	cc, err := grpcx.Dial(c.migrator)
	if err != nil {
		return nil, nil, err
	}
	return migratorv1.NewMigratorServiceClient(cc), func() { cc.Close() }, nil
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
