package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/veltrixdb/veltrix/pkg/client"
)

func init() {
	register(command{name: "kv", build: kvCmd})
}

func kvCmd(c *conn) *cobra.Command {
	return group("kv", "get, put, del and query items (veltrix kv get TABLE PK [SK]); put/del exit 3 when superseded",
		kvGetCmd(c), kvPutCmd(c), kvDelCmd(c), kvQueryCmd(c))
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
	var v any = items
	if len(items) == 1 {
		v = items[0]
	}
	return c.print(w, v, func() error { return itemTable(w, items) })
}

func itemTable(w io.Writer, items []itemJSON) error {
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

func kvGetCmd(c *conn) *cobra.Command {
	var cons string
	cmd := leaf("get TABLE PARTITION_KEY [SORT_KEY]", "read one item", 2, 3, func(cmd *cobra.Command, pos []string) error {
		lvl, err := consistency(cons)
		if err != nil {
			return err
		}
		tbl, pk, sk, err := keyArgs(pos)
		if err != nil {
			return err
		}
		return c.withRouter(cmd, func(ctx context.Context, cl *client.Client) error {
			it, found, err := cl.Get(ctx, tbl, pk, sk, client.WithConsistency(lvl))
			if err != nil {
				return explain(err, "get")
			}
			it.Table, it.PartitionKey, it.SortKey = tbl, pk, sk
			return printItems(cmd.OutOrStdout(), c, []itemJSON{itemOut(it, found)})
		})
	})
	cmd.Flags().StringVar(&cons, "consistency", "", "one, quorum or all (default: the router's, ONE)")
	return cmd
}

func kvPutCmd(c *conn) *cobra.Command {
	var (
		ttl        time.Duration
		version    uint64
		file, cons string
	)
	cmd := leaf("put TABLE PARTITION_KEY [SORT_KEY] VALUE", "write one item", 2, 4, func(cmd *cobra.Command, pos []string) error {
		if ttl < 0 || (cmd.Flags().Changed("ttl") && ttl == 0) {
			return usageErr("--ttl %v: must be positive (omit it for no expiry)", ttl)
		}
		lvl, err := consistency(cons)
		if err != nil {
			return err
		}
		var value []byte
		switch {
		case file == "-":
			value, err = io.ReadAll(cmd.InOrStdin())
		case file != "":
			value, err = os.ReadFile(file)
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
		if ttl > 0 {
			opts = append(opts, client.WithTTL(ttl))
		}
		if version > 0 {
			opts = append(opts, client.WithVersion(version))
		}
		return c.withRouter(cmd, func(ctx context.Context, cl *client.Client) error {
			res, err := cl.Put(ctx, tbl, pk, sk, value, opts...)
			if err != nil {
				return explain(err, "put")
			}
			return printWrite(cmd.OutOrStdout(), c, res, "")
		})
	})
	cmd.Long = writeUsage("put", "Writes one item. A write whose --version is not newer than the stored one\nchanges nothing and is reported as superseded.")
	fs := cmd.Flags()
	fs.DurationVar(&ttl, "ttl", 0, "expire the item after this long")
	fs.Uint64Var(&version, "version", 0, "write with this version instead of a router-assigned one")
	fs.StringVar(&file, "value-file", "", "read the value from this file (- for stdin) instead of the last argument")
	fs.StringVar(&cons, "consistency", "", "one, quorum or all (default: the router's, QUORUM)")
	return cmd
}

// writeUsage is the -h text of put and del: what they do and their exit
// codes.
func writeUsage(verb, what string) string {
	return fmt.Sprintf("%s\n\nPrints \"OK\" only when the %s was applied. Exit codes:\n"+
		"  0  applied\n  1  failed (the message says whether it may still take effect)\n  2  usage error\n"+
		"  3  superseded: a newer version is stored; nothing changed", what, verb)
}

type writeJSON struct {
	Version        uint64 `json:"version"`
	Applied        bool   `json:"applied"`
	CurrentVersion uint64 `json:"current_version"`
}

// printWrite prints a write's outcome: "OK" only when it was applied; a
// superseded write prints why and exits with exitSuperseded.
func printWrite(w io.Writer, c *conn, res client.WriteResult, what string) error {
	if c.output != "table" {
		if err := c.print(w, writeJSON{Version: res.Version, Applied: res.Applied, CurrentVersion: res.CurrentVersion}, nil); err != nil {
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

func kvDelCmd(c *conn) *cobra.Command {
	var (
		cons    string
		version uint64
	)
	cmd := leaf("del TABLE PARTITION_KEY [SORT_KEY]", "delete one item", 2, 3, func(cmd *cobra.Command, pos []string) error {
		lvl, err := consistency(cons)
		if err != nil {
			return err
		}
		tbl, pk, sk, err := keyArgs(pos)
		if err != nil {
			return err
		}
		opts := []client.CallOption{client.WithConsistency(lvl)}
		if version > 0 {
			opts = append(opts, client.WithVersion(version))
		}
		return c.withRouter(cmd, func(ctx context.Context, cl *client.Client) error {
			res, err := cl.Delete(ctx, tbl, pk, sk, opts...)
			if err != nil {
				return explain(err, "delete")
			}
			return printWrite(cmd.OutOrStdout(), c, res, "deleted, ")
		})
	})
	cmd.Long = writeUsage("delete", "Deletes one item by writing a versioned tombstone. A delete whose --version is\nnot newer than the stored one changes nothing and is reported as superseded.")
	cmd.Flags().StringVar(&cons, "consistency", "", "one, quorum or all (default: the router's, QUORUM)")
	cmd.Flags().Uint64Var(&version, "version", 0, "delete with this version instead of a router-assigned one")
	return cmd
}

func kvQueryCmd(c *conn) *cobra.Command {
	var (
		prefix, start, end, cons string
		limit                    int
		reverse                  bool
	)
	cmd := leaf("query TABLE PARTITION_KEY", "list a partition's items in sort-key order", 2, 2, func(cmd *cobra.Command, pos []string) error {
		lvl, err := consistency(cons)
		if err != nil {
			return err
		}
		pk, err := arg(pos[1])
		if err != nil {
			return err
		}
		q := client.QueryOptions{Limit: limit, Reverse: reverse, Consistency: lvl}
		if prefix != "" {
			if start != "" || end != "" {
				return usageErr("--prefix cannot be combined with --start/--end")
			}
			if q.Prefix, err = arg(prefix); err != nil {
				return err
			}
		}
		if start != "" {
			if q.Start, err = arg(start); err != nil {
				return err
			}
		}
		if end != "" {
			if q.End, err = arg(end); err != nil {
				return err
			}
		}
		return c.withRouter(cmd, func(ctx context.Context, cl *client.Client) error {
			ctx, cancel := context.WithTimeout(ctx, c.timeout)
			defer cancel()
			items := []itemJSON{}
			for it, err := range cl.Query(ctx, pos[0], pk, q) {
				if err != nil {
					return explain(err, "query")
				}
				items = append(items, itemOut(it, true))
			}
			w := cmd.OutOrStdout()
			return c.print(w, items, func() error {
				if err := itemTable(w, items); err != nil {
					return err
				}
				_, err := fmt.Fprintf(w, "(%d items)\n", len(items))
				return err
			})
		})
	})
	fs := cmd.Flags()
	fs.StringVar(&prefix, "prefix", "", "only sort keys starting with this")
	fs.StringVar(&start, "start", "", "first sort key (inclusive)")
	fs.StringVar(&end, "end", "", "last sort key (exclusive)")
	fs.IntVar(&limit, "limit", 100, "most items to print (0: all)")
	fs.BoolVar(&reverse, "reverse", false, "descending sort-key order")
	fs.StringVar(&cons, "consistency", "", "one, quorum or all")
	return cmd
}
