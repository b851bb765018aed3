package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"

	"github.com/veltrixdb/veltrix/pkg/client"
)

func init() {
	register(command{name: "kv", usage: "get, put, del and query items (veltrix kv get TABLE PK [SK]); put/del exit 3 when superseded", run: subcommand("kv", map[string]func([]string, io.Writer) error{
		"get":   kvGet,
		"put":   kvPut,
		"del":   kvDel,
		"query": kvQuery,
	})})
}

type itemJSON struct {
	Table        string `json:"table"`
	PartitionKey string `json:"partition_key"`
	SortKey      string `json:"sort_key,omitempty"`
	Found        bool   `json:"found"`
	Value        string `json:"value,omitempty"`
	Version      uint64 `json:"version,omitempty"`
	ExpireTime   string `json:"expire_time,omitempty"`
}

func itemOut(it client.Item, found bool) itemJSON {
	out := itemJSON{Table: it.Table, PartitionKey: show(it.PartitionKey), SortKey: show(it.SortKey), Found: found}
	if found {
		out.Value, out.Version = show(it.Value), it.Version
		if !it.ExpireTime.IsZero() {
			out.ExpireTime = fmtTime(it.ExpireTime)
		}
	}
	return out
}

func printItems(w io.Writer, c *conn, items []itemJSON) error {
	if c.output == "json" {
		if len(items) == 1 {
			return printJSON(w, items[0])
		}
		return printJSON(w, items)
	}
	rows := make([][]string, 0, len(items))
	for _, it := range items {
		exp := it.ExpireTime
		if exp == "" {
			exp = "-"
		}
		if !it.Found {
			rows = append(rows, []string{it.PartitionKey, it.SortKey, "(not found)", "-", "-"})
			continue
		}
		rows = append(rows, []string{it.PartitionKey, it.SortKey, it.Value, strconv.FormatUint(it.Version, 10), exp})
	}
	return table(w, []string{"PARTITION KEY", "SORT KEY", "VALUE", "VERSION", "EXPIRES"}, rows)
}

// keyArgs splits TABLE PK [SK]; keys may be given as b64:... for binary.
func keyArgs(pos []string) (string, []byte, []byte, error) {
	pk, err := arg(pos[1])
	if err != nil {
		return "", nil, nil, err
	}
	var sk []byte
	if len(pos) > 2 {
		if sk, err = arg(pos[2]); err != nil {
			return "", nil, nil, err
		}
	}
	return pos[0], pk, sk, nil
}

func kvGet(args []string, w io.Writer) error {
	var c conn
	fs := flag.NewFlagSet("veltrix kv get TABLE PARTITION_KEY [SORT_KEY]", flag.ContinueOnError)
	c.addFlags(fs)
	cons := fs.String("consistency", "", "one, quorum or all (default: the router's, ONE)")
	pos, err := parse(fs, args, 2, 3, &c)
	if err != nil {
		return err
	}
	lvl, err := consistency(*cons)
	if err != nil {
		return err
	}
	tbl, pk, sk, err := keyArgs(pos)
	if err != nil {
		return err
	}
	ctx := context.Background()
	cl, err := c.client(ctx)
	if err != nil {
		return err
	}
	defer cl.Close()
	it, found, err := cl.Get(ctx, tbl, pk, sk, client.WithConsistency(lvl))
	if err != nil {
		return explain(err, "get")
	}
	it.Table, it.PartitionKey, it.SortKey = tbl, pk, sk
	return printItems(w, &c, []itemJSON{itemOut(it, found)})
}

func kvPut(args []string, w io.Writer) error {
	var c conn
	fs := flag.NewFlagSet("veltrix kv put TABLE PARTITION_KEY [SORT_KEY] VALUE", flag.ContinueOnError)
	c.addFlags(fs)
	ttl := fs.Duration("ttl", 0, "expire the item after this long")
	version := fs.Uint64("version", 0, "write with this version instead of a router-assigned one")
	file := fs.String("value-file", "", "read the value from this file (- for stdin) instead of the last argument")
	cons := fs.String("consistency", "", "one, quorum or all (default: the router's, QUORUM)")
	fs.Usage = writeUsage(fs, "put", "Writes one item. A write whose --version is not newer than the stored one\nchanges nothing and is reported as superseded.")
	pos, err := parse(fs, args, 2, 4, &c)
	if err != nil {
		return err
	}
	ttlSet := false
	fs.Visit(func(f *flag.Flag) { ttlSet = ttlSet || f.Name == "ttl" })
	if *ttl < 0 || (ttlSet && *ttl == 0) {
		return usageErr("--ttl %v: must be positive (omit it for no expiry)", *ttl)
	}
	lvl, err := consistency(*cons)
	if err != nil {
		return err
	}
	var value []byte
	switch {
	case *file == "-":
		value, err = io.ReadAll(os.Stdin)
	case *file != "":
		value, err = os.ReadFile(*file)
	default:
		if len(pos) < 3 {
			return usageErr("missing VALUE (or --value-file)")
		}
		value, err = arg(pos[len(pos)-1])
		pos = pos[:len(pos)-1]
	}
	if err != nil {
		return err
	}
	tbl, pk, sk, err := keyArgs(pos)
	if err != nil {
		return err
	}
	opts := []client.CallOption{client.WithConsistency(lvl)}
	if *ttl > 0 {
		opts = append(opts, client.WithTTL(*ttl))
	}
	if *version > 0 {
		opts = append(opts, client.WithVersion(*version))
	}
	ctx := context.Background()
	cl, err := c.client(ctx)
	if err != nil {
		return err
	}
	defer cl.Close()
	res, err := cl.Put(ctx, tbl, pk, sk, value, opts...)
	if err != nil {
		return explain(err, "put")
	}
	return printWrite(w, &c, res, "")
}

// writeUsage is the -h text of put and del: what they do and their exit
// codes.
func writeUsage(fs *flag.FlagSet, verb, what string) func() {
	return func() {
		out := fs.Output()
		fmt.Fprintf(out, "Usage: %s\n\n%s\n\n", fs.Name(), what)
		fmt.Fprintf(out, "Prints \"OK\" only when the %s was applied. Exit codes:\n", verb)
		fmt.Fprintf(out, "  0  applied\n  1  failed (the message says whether it may still take effect)\n  2  usage error\n")
		fmt.Fprintf(out, "  3  superseded: a newer version is stored; nothing changed\n\nFlags:\n")
		fs.PrintDefaults()
	}
}

type writeJSON struct {
	Version        uint64 `json:"version"`
	Applied        bool   `json:"applied"`
	CurrentVersion uint64 `json:"current_version"`
}

// printWrite prints a write's outcome: "OK" only when it was applied; a
// superseded write prints why and exits with exitSuperseded.
func printWrite(w io.Writer, c *conn, res client.WriteResult, what string) error {
	if c.output == "json" {
		if err := printJSON(w, writeJSON{Version: res.Version, Applied: res.Applied, CurrentVersion: res.CurrentVersion}); err != nil {
			return err
		}
	} else if res.Applied {
		if _, err := fmt.Fprintf(w, "OK %sversion %d\n", what, res.Version); err != nil {
			return err
		}
	} else {
		stored := "a newer version"
		if res.CurrentVersion != 0 {
			stored = fmt.Sprintf("the stored version %d", res.CurrentVersion)
		}
		if _, err := fmt.Fprintf(w, "superseded: %s is newer than this write's version %d; nothing changed\n", stored, res.Version); err != nil {
			return err
		}
	}
	if !res.Applied {
		return withExit(exitSuperseded, fmt.Errorf("%swrite superseded: nothing changed", what))
	}
	return nil
}

func kvDel(args []string, w io.Writer) error {
	var c conn
	fs := flag.NewFlagSet("veltrix kv del TABLE PARTITION_KEY [SORT_KEY]", flag.ContinueOnError)
	c.addFlags(fs)
	cons := fs.String("consistency", "", "one, quorum or all (default: the router's, QUORUM)")
	version := fs.Uint64("version", 0, "delete with this version instead of a router-assigned one")
	fs.Usage = writeUsage(fs, "delete", "Deletes one item by writing a versioned tombstone. A delete whose --version is\nnot newer than the stored one changes nothing and is reported as superseded.")
	pos, err := parse(fs, args, 2, 3, &c)
	if err != nil {
		return err
	}
	lvl, err := consistency(*cons)
	if err != nil {
		return err
	}
	tbl, pk, sk, err := keyArgs(pos)
	if err != nil {
		return err
	}
	ctx := context.Background()
	cl, err := c.client(ctx)
	if err != nil {
		return err
	}
	defer cl.Close()
	opts := []client.CallOption{client.WithConsistency(lvl)}
	if *version > 0 {
		opts = append(opts, client.WithVersion(*version))
	}
	res, err := cl.Delete(ctx, tbl, pk, sk, opts...)
	if err != nil {
		return explain(err, "delete")
	}
	return printWrite(w, &c, res, "deleted, ")
}

func kvQuery(args []string, w io.Writer) error {
	var c conn
	fs := flag.NewFlagSet("veltrix kv query TABLE PARTITION_KEY", flag.ContinueOnError)
	c.addFlags(fs)
	prefix := fs.String("prefix", "", "only sort keys starting with this")
	start := fs.String("start", "", "first sort key (inclusive)")
	end := fs.String("end", "", "last sort key (exclusive)")
	limit := fs.Int("limit", 100, "most items to print (0: all)")
	reverse := fs.Bool("reverse", false, "descending sort-key order")
	cons := fs.String("consistency", "", "one, quorum or all")
	pos, err := parse(fs, args, 2, 2, &c)
	if err != nil {
		return err
	}
	lvl, err := consistency(*cons)
	if err != nil {
		return err
	}
	pk, err := arg(pos[1])
	if err != nil {
		return err
	}
	q := client.QueryOptions{Limit: *limit, Reverse: *reverse, Consistency: lvl}
	if *prefix != "" {
		if *start != "" || *end != "" {
			return usageErr("--prefix cannot be combined with --start/--end")
		}
		if q.Prefix, err = arg(*prefix); err != nil {
			return err
		}
	}
	if *start != "" {
		if q.Start, err = arg(*start); err != nil {
			return err
		}
	}
	if *end != "" {
		if q.End, err = arg(*end); err != nil {
			return err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	cl, err := c.client(ctx)
	if err != nil {
		return err
	}
	defer cl.Close()
	var items []itemJSON
	for it, err := range cl.Query(ctx, pos[0], pk, q) {
		if err != nil {
			return explain(err, "query")
		}
		items = append(items, itemOut(it, true))
	}
	if c.output == "json" {
		if items == nil {
			items = []itemJSON{}
		}
		return printJSON(w, items)
	}
	if err := printItems(w, &c, items); err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "(%d items)\n", len(items))
	return err
}
