package e2e

// Export → import → endpoint, byte for byte: a DynamoDB export with every
// attribute type, imported by the real migrator, read back through the
// DynamoDB endpoint with the AWS SDK for Go v2 equal to the source items.

import (
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	dtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/veltrixdb/veltrix/e2e/framework"
	"github.com/veltrixdb/veltrix/pkg/ddb"
	"github.com/veltrixdb/veltrix/pkg/exportgen"
	migratorv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/migrator/v1"
)

// ddbToAV converts a pkg/ddb value to the SDK's, numbers in their
// canonical text (the text DynamoDB returns).
func ddbToAV(v ddb.Value) dtypes.AttributeValue {
	switch v := v.(type) {
	case ddb.S:
		return avS(string(v))
	case ddb.N:
		return avN(v.String())
	case ddb.B:
		return avB([]byte(v))
	case ddb.Bool:
		return avBool(bool(v))
	case ddb.Null:
		return avNull()
	case ddb.M:
		return avM(ddbItemToAV(ddb.Item(v)))
	case ddb.L:
		out := make([]dtypes.AttributeValue, len(v))
		for i, e := range v {
			out[i] = ddbToAV(e)
		}
		return avL(out...)
	case ddb.SS:
		return avSS(v...)
	case ddb.NS:
		out := make([]string, len(v))
		for i, n := range v {
			out[i] = n.String()
		}
		return avNS(out...)
	case ddb.BS:
		return avBS(v...)
	}
	panic(fmt.Sprintf("ddbToAV: %T", v))
}

func ddbItemToAV(it ddb.Item) map[string]dtypes.AttributeValue {
	out := make(map[string]dtypes.AttributeValue, len(it))
	for k, v := range it {
		out[k] = ddbToAV(v)
	}
	return out
}

// numericSortKeys are the N sort keys of the second export: negative,
// fractional, exponents at DynamoDB's limits, 38 digits.
var numericSortKeys = []string{"-1E+125", "-12345678901234567890123456789012345678", "-100", "-2.5", "-1", "-1E-130", "0",
	"1E-130", "0.001", "0.5", "1", "2", "10", "11", "99.99", "100", "1E+3", "12345678901234567890123456789012345678", "9.9999999999999999999999999999999999999E+125"}

// numericItem is item i of the N-sort-key export: exportgen's item i (every
// type) under the key pk = "part#<i%3>", sk = numericSortKeys[i/3], with v
// a version marker.
func numericItem(o exportgen.Options, i int, version string) ddb.Item {
	it := o.Item(i)
	delete(it, exportgen.PartitionKey)
	delete(it, exportgen.SortKey)
	it["pk"] = ddb.S("part#" + strconv.Itoa(i%3))
	it["sk"] = ddb.MustN(numericSortKeys[i/3])
	it["v"] = ddb.S(version)
	return it
}

// TestBinDynamoDBImportedTable imports generated DynamoDB exports with the
// real migrator (DYNAMODB_JSON and Amazon Ion, S sort keys with
// exportgen's items holding every type; N sort keys at the limits of
// DynamoDB's numbers), reads every item
// back through the endpoint with GetItem and Query and compares it with
// the source attribute by attribute, then imports a later export over the
// second table and reads the updated items through the endpoint.
func TestBinDynamoDBImportedTable(t *testing.T) {
	binTest(t)
	awsTestEnv(t)
	bins := framework.Build(t)
	bins.Require(t, framework.Migrator, framework.CLI)
	veltrix := bins.Path(t, framework.CLI)
	c, eps := startDynamoCluster(t, framework.Options{Nodes: 3, RF: 3, Migrator: true})
	cli := newDDBClient(eps[0], 3)
	ctx := ctxT(t, 5*time.Minute)

	importExport := func(t *testing.T, dir, table, pk, sk string, create bool) {
		t.Helper()
		args := []string{"import", "--source", dir, "--table", table, "--pk", pk, "--sk", sk,
			"--endpoints", strings.Join(c.RouterAddrs(), ","), "--migrator", c.MigratorAddr(), "--output", "json"}
		if create {
			args = append(args, "--create-table")
		}
		res := runBin(t, 2*time.Minute, "", veltrix, args...)
		if res.code != 0 {
			t.Fatalf("veltrix import %s: exit %d\nstdout:\n%s\nstderr:\n%s", table, res.code, res.stdout, res.stderr)
		}
		job := cliJob(t, "veltrix import", res)
		if job.GetState() != migratorv1.JobState_JOB_STATE_SUCCEEDED || job.GetProgress().GetRejects() != 0 {
			t.Fatalf("import of %s: state %s, progress %v, error %q", table, job.GetState(), job.GetProgress(), job.GetError())
		}
	}
	// compare reads every source item with GetItem (consistent and not)
	// and every partition with Query, and compares them with the source.
	compare := func(t *testing.T, table, pkName, skName string, src []ddb.Item, skLess func(a, b ddb.Value) int) {
		t.Helper()
		mismatches := 0
		for _, it := range src {
			key := map[string]dtypes.AttributeValue{pkName: ddbToAV(it[pkName]), skName: ddbToAV(it[skName])}
			want := itemText(ddbItemToAV(it))
			for _, consistent := range []bool{true, false} {
				out, err := cli.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(table), Key: key, ConsistentRead: aws.Bool(consistent)})
				if err != nil {
					t.Fatalf("GetItem %s %s: %v", table, itemText(key), err)
				}
				if got := itemText(out.Item); got != want {
					mismatches++
					if mismatches <= 3 {
						t.Errorf("GetItem %s %s (consistent %v):\n got %s\nwant %s", table, itemText(key), consistent, got, want)
					}
				}
			}
		}
		byPK := map[string][]ddb.Item{}
		var pks []string
		for _, it := range src {
			p := string(it[pkName].(ddb.S))
			if byPK[p] == nil {
				pks = append(pks, p)
			}
			byPK[p] = append(byPK[p], it)
		}
		for _, p := range pks {
			want := byPK[p]
			slices.SortFunc(want, func(a, b ddb.Item) int { return skLess(a[skName], b[skName]) })
			var got []map[string]dtypes.AttributeValue
			pg := dynamodb.NewQueryPaginator(cli, &dynamodb.QueryInput{TableName: aws.String(table), KeyConditionExpression: aws.String("#p = :p"),
				ExpressionAttributeNames: map[string]string{"#p": pkName}, ExpressionAttributeValues: map[string]dtypes.AttributeValue{":p": avS(p)},
				Limit: aws.Int32(4), ConsistentRead: aws.Bool(true)})
			for pg.HasMorePages() {
				out, err := pg.NextPage(ctx)
				if err != nil {
					t.Fatalf("Query %s %s: %v", table, p, err)
				}
				got = append(got, out.Items...)
			}
			var wantAV []map[string]dtypes.AttributeValue
			for _, it := range want {
				wantAV = append(wantAV, ddbItemToAV(it))
			}
			if g, w := itemsText(got), itemsText(wantAV); g != w {
				mismatches++
				t.Errorf("Query %s %s: %d items, want %d in sort-key order; first difference:\n%s", table, p, len(got), len(want), firstDiff(g, w))
			}
		}
		t.Logf("%s: %d items compared by GetItem (twice) and %d partitions by Query, %d mismatches", table, len(src), len(pks), mismatches)
	}

	t.Run("Amazon Ion export", func(t *testing.T) {
		exp, err := exportgen.Generate(filepath.Join(t.TempDir(), "export"), exportgen.Options{Items: 40, Files: 1, Seed: 21, PadBytes: 20, Format: exportgen.Ion})
		if err != nil {
			t.Fatal(err)
		}
		const table = "imported_ion"
		importExport(t, exp.Dir, table, exportgen.PartitionKey+":S", exportgen.SortKey+":S", true)
		var src []ddb.Item
		for _, f := range exp.Files {
			for _, i := range f.Items {
				src = append(src, exp.Options.Item(i))
			}
		}
		compare(t, table, exportgen.PartitionKey, exportgen.SortKey, src, func(a, b ddb.Value) int {
			return strings.Compare(string(a.(ddb.S)), string(b.(ddb.S)))
		})
	})

	t.Run("S sort keys, every type", func(t *testing.T) {
		exp, err := exportgen.Generate(filepath.Join(t.TempDir(), "export"), exportgen.Options{Items: 68, Files: 2, Seed: 16, PadBytes: 20})
		if err != nil {
			t.Fatal(err)
		}
		const table = "imported_s"
		importExport(t, exp.Dir, table, exportgen.PartitionKey+":S", exportgen.SortKey+":S", true)
		var src []ddb.Item
		for _, f := range exp.Files {
			for _, i := range f.Items {
				src = append(src, exp.Options.Item(i))
			}
		}
		if len(src) != exp.Live {
			t.Fatalf("%d source items, export says %d live", len(src), exp.Live)
		}
		compare(t, table, exportgen.PartitionKey, exportgen.SortKey, src, func(a, b ddb.Value) int {
			return strings.Compare(string(a.(ddb.S)), string(b.(ddb.S)))
		})
		d, err := cli.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(table)})
		if err != nil {
			t.Fatal(err)
		}
		var ks []string
		for _, k := range d.Table.KeySchema {
			ks = append(ks, aws.ToString(k.AttributeName)+":"+string(k.KeyType))
		}
		if strings.Join(ks, ",") != exportgen.PartitionKey+":HASH,"+exportgen.SortKey+":RANGE" {
			t.Errorf("DescribeTable of the imported table: key schema %v", ks)
		}
	})

	t.Run("N sort keys, then a later import", func(t *testing.T) {
		const table = "imported_n"
		n := 3 * len(numericSortKeys)
		gen := func(dir, version string, exportTime time.Time, only func(i int) bool) (*exportgen.Export, []ddb.Item) {
			o := exportgen.Options{Items: n, Files: 2, Seed: 7, PadBytes: 10, ExportTime: exportTime}
			// Lines runs on the files' goroutines: it only reads o.
			o.Lines = func(_, _, i int, _ []byte) [][]byte {
				if !only(i) {
					return nil
				}
				return [][]byte{exportgen.FullJSONLine(numericItem(o, i, version))}
			}
			var src []ddb.Item
			for i := range n {
				if only(i) {
					src = append(src, numericItem(o, i, version))
				}
			}
			exp, err := exportgen.Generate(filepath.Join(t.TempDir(), dir), o)
			if err != nil {
				t.Fatal(err)
			}
			return exp, src
		}
		first := time.Date(2024, 6, 1, 12, 0, 0, 0, time.UTC)
		exp, src := gen("export1", "v1", first, func(int) bool { return true })
		importExport(t, exp.Dir, table, "pk:S", "sk:N", true)
		byN := func(a, b ddb.Value) int { return a.(ddb.N).Cmp(b.(ddb.N)) }
		compare(t, table, "pk", "sk", src, byN)

		// A later export changes every other item: the import writes them with
		// newer versions, and the endpoint serves the new values.
		exp2, changed := gen("export2", "v2", first.Add(time.Hour), func(i int) bool { return i%2 == 0 })
		importExport(t, exp2.Dir, table, "pk:S", "sk:N", false)
		var now []ddb.Item
		for _, it := range src {
			if i := slices.IndexFunc(changed, func(c ddb.Item) bool {
				return ddb.Equal(c["pk"], it["pk"]) && ddb.Equal(c["sk"], it["sk"])
			}); i >= 0 {
				now = append(now, changed[i])
			} else {
				now = append(now, it)
			}
		}
		compare(t, table, "pk", "sk", now, byN)
	})
}

// firstDiff shows the first line where two texts differ.
func firstDiff(got, want string) string {
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	for i := range max(len(g), len(w)) {
		var a, b string
		if i < len(g) {
			a = g[i]
		}
		if i < len(w) {
			b = w[i]
		}
		if a != b {
			return fmt.Sprintf("line %d:\n got %s\nwant %s", i, a, b)
		}
	}
	return "(none)"
}
