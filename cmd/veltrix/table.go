package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/veltrixdb/veltrix/pkg/client"
	kvv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/kv/v1"
)

func init() {
	register(command{name: "table", build: tableCmd})
	register(command{name: "status", build: statusCmd})
}

func tableCmd(c *conn) *cobra.Command {
	return group("table", "create, list, describe, update and delete tables",
		tableCreateCmd(c), tableListCmd(c), tableDescribeCmd(c), tableUpdateCmd(c), tableDeleteCmd(c))
}

// keyAttr parses NAME:TYPE (TYPE one of S, N, B).
func keyAttr(flagName, s string) (*kvv1.KeyAttribute, error) {
	name, typ, ok := strings.Cut(s, ":")
	if !ok || name == "" {
		return nil, usageErr("--%s %q: want NAME:TYPE with TYPE S, N or B", flagName, s)
	}
	t, ok := kvv1.AttributeType_value["ATTRIBUTE_TYPE_"+strings.ToUpper(typ)]
	if !ok || t == 0 {
		return nil, usageErr("--%s %q: type %q is not S, N or B", flagName, s, typ)
	}
	return &kvv1.KeyAttribute{Name: name, Type: kvv1.AttributeType(t)}, nil
}

func printTables(w io.Writer, c *conn, ts []*kvv1.Table) error {
	return c.print(w, &kvv1.ListTablesResponse{Tables: ts}, func() error { return tableRows(w, ts) })
}

func tableRows(w io.Writer, ts []*kvv1.Table) error {
	rows := make([][]string, 0, len(ts))
	for _, t := range ts {
		ttl := "-"
		if t.DefaultTtl != nil {
			ttl = t.DefaultTtl.AsDuration().String()
		}
		schema := "-"
		if ks := t.KeySchema; ks != nil && ks.PartitionKey != nil {
			schema = ks.PartitionKey.Name + ":" + strings.TrimPrefix(ks.PartitionKey.Type.String(), "ATTRIBUTE_TYPE_")
			if ks.SortKey != nil {
				schema += ", " + ks.SortKey.Name + ":" + strings.TrimPrefix(ks.SortKey.Type.String(), "ATTRIBUTE_TYPE_")
			}
		}
		limit := "400 KB"
		if n := t.GetMaxItemBytes(); n != 0 {
			limit = strconv.FormatUint(n, 10) + " B"
		}
		rows = append(rows, []string{t.Name, strconv.FormatUint(t.Id, 10), schema, ttl, orDash(t.GetTtlAttribute()),
			limit, isolationName(t.GetWriteIsolation()), fmtTime(t.CreateTime.AsTime())})
	}
	return table(w, []string{"NAME", "ID", "KEY SCHEMA", "DEFAULT TTL", "TTL ATTRIBUTE", "ITEM LIMIT", "WRITE ISOLATION", "CREATED"}, rows)
}

// isolationName is a write isolation's name as the flags take it.
func isolationName(w kvv1.WriteIsolation) string {
	if w == kvv1.WriteIsolation_WRITE_ISOLATION_UNSPECIFIED {
		w = kvv1.WriteIsolation_WRITE_ISOLATION_ALWAYS_USE_LWT
	}
	return strings.ToLower(strings.TrimPrefix(w.String(), "WRITE_ISOLATION_"))
}

// parseIsolation parses --write-isolation.
func parseIsolation(s string) (kvv1.WriteIsolation, error) {
	v, ok := kvv1.WriteIsolation_value["WRITE_ISOLATION_"+strings.ToUpper(s)]
	if !ok || v == 0 {
		return 0, usageErr("--write-isolation %q: want always_use_lwt, only_rmw_uses_lwt, forbid_rmw or unsafe_rmw", s)
	}
	return kvv1.WriteIsolation(v), nil
}

// tableSettingFlags are the settings table create and table update share.
type tableSettingFlags struct {
	maxItemBytes uint64
	isolation    string
}

func (f *tableSettingFlags) add(fs *pflag.FlagSet) {
	fs.Uint64Var(&f.maxItemBytes, "max-item-bytes", 0, "the DynamoDB endpoint's item size limit in bytes, as DynamoDB counts item size (0: DynamoDB's 409600; at most 67108864)")
	fs.StringVar(&f.isolation, "write-isolation", "", "how the DynamoDB endpoint serialises writes of one item: always_use_lwt (default), only_rmw_uses_lwt, forbid_rmw or unsafe_rmw (docs/design.md, \"Write isolation\")")
}

func tableCreateCmd(c *conn) *cobra.Command {
	var (
		ttl      time.Duration
		pk, sk   string
		settings tableSettingFlags
	)
	cmd := leaf("create NAME", "create a table", 1, 1, func(cmd *cobra.Command, pos []string) error {
		var opts []client.TableOption
		if ttl > 0 {
			opts = append(opts, client.WithDefaultTTL(ttl))
		}
		if settings.maxItemBytes != 0 || settings.isolation != "" {
			iso := kvv1.WriteIsolation_WRITE_ISOLATION_UNSPECIFIED
			if settings.isolation != "" {
				var err error
				if iso, err = parseIsolation(settings.isolation); err != nil {
					return err
				}
			}
			opts = append(opts, func(r *kvv1.CreateTableRequest) { r.MaxItemBytes, r.WriteIsolation = settings.maxItemBytes, iso })
		}
		if pk != "" {
			ks := &kvv1.KeySchema{}
			var err error
			if ks.PartitionKey, err = keyAttr("pk", pk); err != nil {
				return err
			}
			if sk != "" {
				if ks.SortKey, err = keyAttr("sk", sk); err != nil {
					return err
				}
			}
			opts = append(opts, client.WithKeySchema(ks))
		} else if sk != "" {
			return usageErr("--sk needs --pk")
		}
		return c.withRouter(cmd, func(ctx context.Context, cl *client.Client) error {
			t, err := cl.CreateTable(ctx, pos[0], opts...)
			if err != nil {
				return explain(err, "create table")
			}
			return printTables(cmd.OutOrStdout(), c, []*kvv1.Table{t})
		})
	})
	fs := cmd.Flags()
	fs.DurationVar(&ttl, "ttl", 0, "default TTL for items written without one")
	fs.StringVar(&pk, "pk", "", "DynamoDB partition key attribute, NAME:TYPE (optional)")
	fs.StringVar(&sk, "sk", "", "DynamoDB sort key attribute, NAME:TYPE (optional)")
	settings.add(fs)
	return cmd
}

func tableUpdateCmd(c *conn) *cobra.Command {
	var (
		ttlAttr  string
		settings tableSettingFlags
	)
	cmd := leaf("update NAME", "change a table's TTL attribute, item size limit or write isolation", 1, 1, func(cmd *cobra.Command, pos []string) error {
		var opts []client.UpdateOption
		fs := cmd.Flags()
		if fs.Changed("ttl-attribute") {
			opts = append(opts, client.WithTTLAttribute(ttlAttr))
		}
		if fs.Changed("max-item-bytes") {
			opts = append(opts, client.WithMaxItemBytes(settings.maxItemBytes))
		}
		if settings.isolation != "" {
			iso, err := parseIsolation(settings.isolation)
			if err != nil {
				return err
			}
			opts = append(opts, client.WithWriteIsolation(iso))
		}
		if len(opts) == 0 {
			return usageErr("nothing to change: give --ttl-attribute, --max-item-bytes or --write-isolation")
		}
		return c.withRouter(cmd, func(ctx context.Context, cl *client.Client) error {
			t, err := cl.UpdateTable(ctx, pos[0], opts...)
			if err != nil {
				return explain(err, "update table")
			}
			return printTables(cmd.OutOrStdout(), c, []*kvv1.Table{t})
		})
	})
	fs := cmd.Flags()
	fs.StringVar(&ttlAttr, "ttl-attribute", "", "the attribute holding each item's expiry in Unix epoch seconds (DynamoDB TTL); \"\" turns TTL off")
	settings.add(fs)
	return cmd
}

func tableListCmd(c *conn) *cobra.Command {
	return leaf("list", "list tables", 0, 0, func(cmd *cobra.Command, _ []string) error {
		return c.withRouter(cmd, func(ctx context.Context, cl *client.Client) error {
			ts, err := cl.ListTables(ctx)
			if err != nil {
				return explain(err, "list tables")
			}
			return printTables(cmd.OutOrStdout(), c, ts)
		})
	})
}

func tableDescribeCmd(c *conn) *cobra.Command {
	return leaf("describe NAME", "show one table", 1, 1, func(cmd *cobra.Command, pos []string) error {
		return c.withRouter(cmd, func(ctx context.Context, cl *client.Client) error {
			t, err := cl.DescribeTable(ctx, pos[0])
			if err != nil {
				return explain(err, "describe table")
			}
			w := cmd.OutOrStdout()
			return c.print(w, t, func() error { return tableRows(w, []*kvv1.Table{t}) })
		})
	})
}

func tableDeleteCmd(c *conn) *cobra.Command {
	return leaf("delete NAME", "delete a table", 1, 1, func(cmd *cobra.Command, pos []string) error {
		return c.withRouter(cmd, func(ctx context.Context, cl *client.Client) error {
			t, err := cl.DeleteTable(ctx, pos[0])
			if err != nil {
				return explain(err, "delete table")
			}
			w := cmd.OutOrStdout()
			return c.print(w, t, func() error {
				_, err := fmt.Fprintf(w, "deleted table %s (id %d)\n", t.Name, t.Id)
				return err
			})
		})
	})
}

func statusCmd(c *conn) *cobra.Command {
	return leaf("status", "nodes, their state and membership, partitions per node, placement epoch, rebalance", 0, 0, func(cmd *cobra.Command, _ []string) error {
		return c.withRouter(cmd, func(ctx context.Context, cl *client.Client) error {
			st, err := cl.ClusterStatus(ctx)
			if err != nil {
				return explain(err, "cluster status")
			}
			w := cmd.OutOrStdout()
			return c.print(w, st, func() error {
				stale := ""
				if st.TopologyStale {
					stale = "  (STALE: the router cannot reach etcd and serves from its last snapshot)"
				}
				fmt.Fprintf(w, "cluster %s: %d partitions, RF %d, placement epoch %d, controller %s, answered by router %s%s\n\n",
					st.Cluster, st.Partitions, st.ReplicationFactor, st.PlacementEpoch, orDash(st.ControllerId), st.RouterId, stale)
				if r := st.GetRebalance(); r != nil && (!r.GetBalanced() || r.GetUnderReplicated() > 0) {
					fmt.Fprintf(w, "%s\n  (veltrix cluster rebalance status --watch)\n\n", rebalanceLine(r))
				}
				return table(w, []string{"NODE", "STATE", "MEMBERSHIP", "ADDRESS", "ZONE", "REPLICAS", "PRIMARIES", "PENDING"}, statusRows(st.Nodes))
			})
		})
	})
}

func statusRows(nodes []*kvv1.NodeStatus) [][]string {
	rows := make([][]string, 0, len(nodes))
	for _, n := range nodes {
		pending := "-"
		if n.Pending > 0 {
			pending = strconv.FormatUint(uint64(n.Pending), 10)
		}
		rows = append(rows, []string{n.Id, nodeState(n.State), membership(n.Membership), orDash(n.Address), orDash(n.Zone),
			strconv.FormatUint(uint64(n.Replicas), 10), strconv.FormatUint(uint64(n.Primaries), 10), pending})
	}
	return rows
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
