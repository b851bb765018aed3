package dynamodb

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awsddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/veltrixdb/veltrix/pkg/auth"
	"github.com/veltrixdb/veltrix/pkg/topology"
	migrationv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/migration/v1"
	"github.com/veltrixdb/veltrix/services/router/internal/dynamodb/migrationtest"
)

// TestPermissions: every operation needs its level on every table it
// names; a refused request writes nothing and is audited.
func TestPermissions(t *testing.T) {
	a := newAuthEndpoint(t)
	ctx := t.Context()
	for _, n := range []string{"alpha", "bravo", "charlie"} {
		if _, err := a.c.CreateTable(ctx, hashOnly(n)); err != nil {
			t.Fatal(err)
		}
	}
	if !a.hasAudit(t, map[string]string{"outcome": "ok", "subject": "root", "op": "CreateTable", "table": "bravo", "via": "sigv4"}) {
		t.Errorf("CreateTable not audited: %v", a.auditLines(t))
	}
	reader := a.client("AKREAD", "read-secret")
	writer := a.client("AKWRITE", "write-secret")
	key := func(pk string) map[string]types.AttributeValue { return strItem("pk", pk) }
	denied := func(op, table string) string {
		return "User: arn:aws:iam::000000000000:user/" + "%s" + " is not authorized to perform: dynamodb:" + op +
			" on resource: arn:aws:dynamodb:veltrix:000000000000:table/" + table
	}

	t.Run("read on alpha", func(t *testing.T) {
		if _, err := reader.GetItem(ctx, &awsddb.GetItemInput{TableName: aws.String("alpha"), Key: key("x")}); err != nil {
			t.Fatal(err)
		}
		if _, err := reader.DescribeTable(ctx, &awsddb.DescribeTableInput{TableName: aws.String("alpha")}); err != nil {
			t.Fatal(err)
		}
		_, err := reader.PutItem(ctx, &awsddb.PutItemInput{TableName: aws.String("alpha"), Item: key("r1")})
		wantAPIError(t, err, "AccessDeniedException", strings.Replace(denied("PutItem", "alpha"), "%s", "reader", 1))
		if a.stored(t, "alpha", map[string]string{"pk": "r1"}) != nil {
			t.Fatal("a refused PutItem wrote its item")
		}
		if !a.hasAudit(t, map[string]string{"outcome": "denied", "subject": "reader", "op": "PutItem", "table": "alpha", "need": "write"}) {
			t.Errorf("denial not audited: %v", a.auditLines(t))
		}
		_, err = reader.GetItem(ctx, &awsddb.GetItemInput{TableName: aws.String("bravo"), Key: key("x")})
		wantAPIError(t, err, "AccessDeniedException", strings.Replace(denied("GetItem", "bravo"), "%s", "reader", 1))
		_, err = reader.BatchGetItem(ctx, &awsddb.BatchGetItemInput{RequestItems: map[string]types.KeysAndAttributes{
			"alpha": {Keys: []map[string]types.AttributeValue{key("x")}},
			"bravo": {Keys: []map[string]types.AttributeValue{key("x")}},
		}})
		wantAPIError(t, err, "AccessDeniedException", "dynamodb:BatchGetItem on resource: arn:aws:dynamodb:veltrix:000000000000:table/bravo")
	})

	t.Run("ListTables filtered", func(t *testing.T) {
		out, err := reader.ListTables(ctx, &awsddb.ListTablesInput{})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(out.TableNames, []string{"alpha"}) {
			t.Fatalf("reader lists %v, want [alpha]", out.TableNames)
		}
		out, err = a.c.ListTables(ctx, &awsddb.ListTablesInput{Limit: aws.Int32(2)})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(out.TableNames, []string{"alpha", "bravo"}) || aws.ToString(out.LastEvaluatedTableName) != "bravo" {
			t.Fatalf("admin lists %v (last %v)", out.TableNames, aws.ToString(out.LastEvaluatedTableName))
		}
	})

	t.Run("write on alpha", func(t *testing.T) {
		if _, err := writer.PutItem(ctx, &awsddb.PutItemInput{TableName: aws.String("alpha"), Item: key("w1")}); err != nil {
			t.Fatal(err)
		}
		if a.stored(t, "alpha", map[string]string{"pk": "w1"}) == nil {
			t.Fatal("an allowed PutItem wrote nothing")
		}
		_, err := writer.BatchWriteItem(ctx, &awsddb.BatchWriteItemInput{RequestItems: map[string][]types.WriteRequest{
			"alpha": {{PutRequest: &types.PutRequest{Item: key("w2")}}},
			"bravo": {{PutRequest: &types.PutRequest{Item: key("w2")}}},
		}})
		wantAPIError(t, err, "AccessDeniedException", "dynamodb:BatchWriteItem on resource: arn:aws:dynamodb:veltrix:000000000000:table/bravo")
		if a.stored(t, "alpha", map[string]string{"pk": "w2"}) != nil || a.stored(t, "bravo", map[string]string{"pk": "w2"}) != nil {
			t.Fatal("a refused BatchWriteItem wrote an item")
		}
		_, err = writer.CreateTable(ctx, hashOnly("delta"))
		wantAPIError(t, err, "AccessDeniedException", strings.Replace(denied("CreateTable", "delta"), "%s", "writer", 1))
		_, err = writer.UpdateTimeToLive(ctx, &awsddb.UpdateTimeToLiveInput{TableName: aws.String("alpha"),
			TimeToLiveSpecification: &types.TimeToLiveSpecification{AttributeName: aws.String("ttl"), Enabled: aws.Bool(true)}})
		wantAPIError(t, err, "AccessDeniedException", "dynamodb:UpdateTimeToLive on resource")
		_, err = writer.DeleteTable(ctx, &awsddb.DeleteTableInput{TableName: aws.String("alpha")})
		wantAPIError(t, err, "AccessDeniedException", "dynamodb:DeleteTable on resource")
		_, err = writer.DescribeLimits(ctx, &awsddb.DescribeLimitsInput{})
		wantAPIError(t, err, "AccessDeniedException", "dynamodb:DescribeLimits on resource: arn:aws:dynamodb:veltrix:000000000000:table/*")
		_, err = writer.ExecuteStatement(ctx, &awsddb.ExecuteStatementInput{Statement: aws.String(`INSERT INTO "alpha" VALUE {'pk':'p'}`)})
		wantAPIError(t, err, "AccessDeniedException", "dynamodb:ExecuteStatement on resource: arn:aws:dynamodb:veltrix:000000000000:table/*")
		_, err = writer.ListTagsOfResource(ctx, &awsddb.ListTagsOfResourceInput{ResourceArn: aws.String("arn:aws:dynamodb:veltrix:000000000000:table/bravo")})
		wantAPIError(t, err, "AccessDeniedException", "dynamodb:ListTagsOfResource on resource: arn:aws:dynamodb:veltrix:000000000000:table/bravo")
		if _, err := a.c.DescribeTable(ctx, &awsddb.DescribeTableInput{TableName: aws.String("delta")}); err == nil {
			t.Fatal("a refused CreateTable created the table")
		}
	})
}

// TestRequestTables: the tables a request names, and the bodies that
// could name one table to the check and another to the operation.
func TestRequestTables(t *testing.T) {
	for _, tc := range []struct {
		body string
		want []string
		err  string
	}{
		{body: ``},
		{body: `null`},
		{body: `{}`},
		{body: `{"TableName":"a"}`, want: []string{"a"}},
		{body: `{"tablename":"a"}`, want: []string{"a"}}, // encoding/json matches it to TableName
		{body: `{"RequestItems":{"b":[],"a":{}}}`, want: []string{"a", "b"}},
		{body: `{"TransactItems":[{"Put":{"TableName":"a"}},{"ConditionCheck":{"TableName":"c"}},{"Get":{"TableName":"a"}}]}`, want: []string{"a", "c"}},
		{body: `{"TableArn":"arn:aws:dynamodb:r:1:table/t1/index/i"}`, want: []string{"t1"}},
		{body: `{"ResourceArn":"arn:aws:dynamodb:r:1:table/t2"}`, want: []string{"t2"}},
		{body: `{"ResourceArn":"arn:aws:dynamodb:r:1:backup/x"}`, want: []string{auth.AllTables}},
		{body: `{"ResourceArn":"not an arn"}`, want: []string{auth.AllTables}},
		{body: `{"TableName":"a","TableName":"b"}`, err: "twice"},
		{body: `{"TableName":"a","tableName":"b"}`, err: "twice"},
		{body: `{"TableName":"a","TABLENAME":"b"}`, err: "twice"},
		{body: `{"TransactItems":[{"Put":{"TableName":"a","tablename":"b"}}]}`, err: "twice"},
		{body: `{"TransactItems":[{"Put":{"TableName":"a"},"put":{"TableName":"b"}}]}`, err: "twice"},
		{body: `{"TableName":5}`, err: "TableName"},
		{body: `{"TableName":"a"} {}`, err: "after the object"},
		{body: `[]`, err: "object"},
		{body: `{"TableName":`, err: "malformed"},
	} {
		rt, err := parseRequestTables([]byte(tc.body))
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: %v, want an error containing %q", tc.body, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.body, err)
			continue
		}
		if got := rt.all(); !slices.Equal(got, tc.want) {
			t.Errorf("%s: tables %v, want %v", tc.body, got, tc.want)
		}
	}
	// ſ (U+017F) folds to s: encoding/json would match "Reſourcearn" to ResourceArn.
	if _, err := parseRequestTables([]byte(`{"ResourceArn":"arn:aws:dynamodb:r:1:table/a","Reſourcearn":"x"}`)); err == nil {
		t.Error("a key equal under Unicode case folding was not refused")
	}
}

// TestPermissionsBeforeMigrationRouting: in migration mode a refused
// request never reaches DynamoDB; an allowed one is forwarded.
func TestPermissionsBeforeMigrationRouting(t *testing.T) {
	f := &fakeUpstream{status: http.StatusOK, body: `{}`}
	up := httptest.NewServer(f)
	defer up.Close()
	creds := newMemCreds()
	creds.add("AKREAD", "read-secret", &auth.Principal{Name: "reader", Grants: []auth.Grant{{Table: "app", Level: auth.Read}}})
	b := newTestBackend(t)
	b.addTable(topology.Table{Name: "app", KeySchema: &topology.KeySchema{PartitionKey: topology.KeyAttribute{Name: "pk", Type: "S"}}})
	ctl := migrationtest.New()
	ctl.Set(&migrationv1.Migration{Table: "app", Phase: migrationv1.Phase_PHASE_PROXY,
		Upstream: &migrationv1.Upstream{Endpoint: up.URL, Table: "up", Region: "us-east-1"}})
	h := NewHandler(b, Options{Logger: slog.New(slog.NewTextHandler(t.Output(), nil)), Auth: NewSigV4Verifier(creds, nil),
		Migration: MigrationOptions{Control: ctl, Credentials: credentials.NewStaticCredentialsProvider("AKID", "secret", "")}})
	srv := httptest.NewServer(h)
	t.Cleanup(func() { srv.Close(); h.Close() })

	for _, tc := range []struct {
		op, body, typ string
	}{
		{"PutItem", `{"TableName":"app","Item":{"pk":{"S":"a"}}}`, "AccessDeniedException"},
		{"DeleteTable", `{"TableName":"app"}`, "AccessDeniedException"},
		{"TransactWriteItems", `{"TransactItems":[{"Put":{"TableName":"app","Item":{"pk":{"S":"a"}}}}]}`, "AccessDeniedException"},
		{"GetItem", `{"TableName":"app","Key":{"pk":{"S":"a"}},"tablename":"app"}`, "SerializationException"},
	} {
		st, typ, msg := send(t, signedRequest(t, srv.URL, "AKREAD", "read-secret", tc.op, []byte(tc.body), time.Now(), nil))
		if st != 400 || typ != tc.typ {
			t.Errorf("%s: %d %s %s, want %s", tc.op, st, typ, msg, tc.typ)
		}
	}
	f.mu.Lock()
	n := len(f.reqs)
	f.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d refused requests reached DynamoDB", n)
	}
	st, typ, msg := send(t, signedRequest(t, srv.URL, "AKREAD", "read-secret", "GetItem", []byte(`{"TableName":"app","Key":{"pk":{"S":"a"}}}`), time.Now(), nil))
	if st != 200 {
		t.Fatalf("GetItem: %d %s %s", st, typ, msg)
	}
	f.mu.Lock()
	n = len(f.reqs)
	f.mu.Unlock()
	if n != 1 {
		t.Fatalf("the allowed GetItem reached DynamoDB %d times", n)
	}
}

// FuzzRequestTables: the permission check's decoding never panics, and
// when it accepts a body, the tables the operations would use (decoded by
// encoding/json, as they decode) are among the tables it checks.
func FuzzRequestTables(f *testing.F) {
	for _, s := range []string{
		`{"TableName":"a"}`, `{"tablename":"a"}`, `{"TableName":"a","TABLENAME":"b"}`,
		`{"RequestItems":{"a":[],"b":{}}}`, `{"TransactItems":[{"Put":{"TableName":"a"}},{"Get":{"tableName":"b"}}]}`,
		`{"ResourceArn":"arn:aws:dynamodb:r:1:table/t/stream/x"}`, `null`, ``, `{"TableName":"\u0061"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		rt, err := parseRequestTables(body)
		if err != nil {
			return
		}
		checked := map[string]bool{}
		for _, n := range rt.all() {
			checked[n] = true
		}
		var ops struct {
			TableName     string
			RequestItems  map[string]json.RawMessage
			TransactItems []map[string]struct{ TableName string }
		}
		if json.Unmarshal(body, &ops) != nil {
			return
		}
		used := []string{ops.TableName}
		for n := range ops.RequestItems {
			used = append(used, n)
		}
		for _, ti := range ops.TransactItems {
			for _, a := range ti {
				used = append(used, a.TableName)
			}
		}
		for _, n := range used {
			if n != "" && !checked[n] {
				t.Fatalf("%q: an operation would use table %q, the check saw %v", body, n, rt.all())
			}
		}
	})
}
