package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/veltrixdb/veltrix/pkg/client"
	kvv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/kv/v1"
)

func init() {
	register(command{name: "table", usage: "create, list, describe and delete tables", run: subcommand("table", map[string]func([]string, io.Writer) error{
		"create":   tableCreate,
		"list":     tableList,
		"describe": tableDescribe,
		"delete":   tableDelete,
	})})
	register(command{name: "status", usage: "nodes, their state and membership, partitions per node, placement epoch, rebalance", run: clusterStatus})
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
	if c.output == "json" {
		return printJSON(w, &kvv1.ListTablesResponse{Tables: ts})
	}
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
		rows = append(rows, []string{t.Name, strconv.FormatUint(t.Id, 10), schema, ttl, fmtTime(t.CreateTime.AsTime())})
	}
	return table(w, []string{"NAME", "ID", "KEY SCHEMA", "DEFAULT TTL", "CREATED"}, rows)
}

func tableCreate(args []string, w io.Writer) error {
	var c conn
	fs := flag.NewFlagSet("veltrix table create NAME", flag.ContinueOnError)
	c.addFlags(fs)
	ttl := fs.Duration("ttl", 0, "default TTL for items written without one")
	pk := fs.String("pk", "", "DynamoDB partition key attribute, NAME:TYPE (optional)")
	sk := fs.String("sk", "", "DynamoDB sort key attribute, NAME:TYPE (optional)")
	pos, err := parse(fs, args, 1, 1, &c)
	if err != nil {
		return err
	}
	var opts []client.TableOption
	if *ttl > 0 {
		opts = append(opts, client.WithDefaultTTL(*ttl))
	}
	if *pk != "" {
		ks := &kvv1.KeySchema{}
		if ks.PartitionKey, err = keyAttr("pk", *pk); err != nil {
			return err
		}
		if *sk != "" {
			if ks.SortKey, err = keyAttr("sk", *sk); err != nil {
				return err
			}
		}
		opts = append(opts, client.WithKeySchema(ks))
	} else if *sk != "" {
		return usageErr("--sk needs --pk")
	}
	ctx := context.Background()
	cl, err := c.client(ctx)
	if err != nil {
		return err
	}
	defer cl.Close()
	t, err := cl.CreateTable(ctx, pos[0], opts...)
	if err != nil {
		return explain(err, "create table")
	}
	return printTables(w, &c, []*kvv1.Table{t})
}

func tableList(args []string, w io.Writer) error {
	var c conn
	fs := flag.NewFlagSet("veltrix table list", flag.ContinueOnError)
	c.addFlags(fs)
	if _, err := parse(fs, args, 0, 0, &c); err != nil {
		return err
	}
	ctx := context.Background()
	cl, err := c.client(ctx)
	if err != nil {
		return err
	}
	defer cl.Close()
	ts, err := cl.ListTables(ctx)
	if err != nil {
		return explain(err, "list tables")
	}
	return printTables(w, &c, ts)
}

func tableDescribe(args []string, w io.Writer) error {
	var c conn
	fs := flag.NewFlagSet("veltrix table describe NAME", flag.ContinueOnError)
	c.addFlags(fs)
	pos, err := parse(fs, args, 1, 1, &c)
	if err != nil {
		return err
	}
	ctx := context.Background()
	cl, err := c.client(ctx)
	if err != nil {
		return err
	}
	defer cl.Close()
	t, err := cl.DescribeTable(ctx, pos[0])
	if err != nil {
		return explain(err, "describe table")
	}
	if c.output == "json" {
		return printJSON(w, t)
	}
	return printTables(w, &c, []*kvv1.Table{t})
}

func tableDelete(args []string, w io.Writer) error {
	var c conn
	fs := flag.NewFlagSet("veltrix table delete NAME", flag.ContinueOnError)
	c.addFlags(fs)
	pos, err := parse(fs, args, 1, 1, &c)
	if err != nil {
		return err
	}
	ctx := context.Background()
	cl, err := c.client(ctx)
	if err != nil {
		return err
	}
	defer cl.Close()
	t, err := cl.DeleteTable(ctx, pos[0])
	if err != nil {
		return explain(err, "delete table")
	}
	if c.output == "json" {
		return printJSON(w, t)
	}
	_, err = fmt.Fprintf(w, "deleted table %s (id %d)\n", t.Name, t.Id)
	return err
}

func clusterStatus(args []string, w io.Writer) error {
	var c conn
	fs := flag.NewFlagSet("veltrix status", flag.ContinueOnError)
	c.addFlags(fs)
	if _, err := parse(fs, args, 0, 0, &c); err != nil {
		return err
	}
	ctx := context.Background()
	cl, err := c.client(ctx)
	if err != nil {
		return err
	}
	defer cl.Close()
	st, err := cl.ClusterStatus(ctx)
	if err != nil {
		return explain(err, "cluster status")
	}
	if c.output == "json" {
		return printJSON(w, st)
	}
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
