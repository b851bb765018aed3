package e2e

// Helpers of the DynamoDB endpoint tests: SDK clients of an endpoint
// (dynalite or a Veltrix router's --dynamodb-addr), a canonical text of
// attribute values to compare answers, and error classification.

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"math/big"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	dtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go"
	"github.com/veltrixdb/veltrix/e2e/framework"
)

// ddbTarget is one implementation of the DynamoDB API the conformance
// suite runs against.
type ddbTarget struct {
	// name is "dynalite" or "veltrix".
	name     string
	endpoint string
	cli      *dynamodb.Client
}

func (tg *ddbTarget) dynalite() bool { return tg.name == "dynalite" }

// newDDBClient is an AWS SDK for Go v2 DynamoDB client of endpoint with
// static fake credentials. maxAttempts is the retryer's attempts per call
// (1: no retry).
func newDDBClient(endpoint string, maxAttempts int, optFns ...func(*dynamodb.Options)) *dynamodb.Client {
	return dynamodb.New(dynamodb.Options{
		Region:           "us-east-1",
		BaseEndpoint:     aws.String(endpoint),
		Credentials:      credentials.NewStaticCredentialsProvider("veltrix", "veltrix", ""),
		RetryMaxAttempts: maxAttempts,
	}, optFns...)
}

// startDynamoCluster starts a cluster of real binaries (3 storage nodes,
// RF 3) whose routers serve the DynamoDB endpoint, and returns it with the
// endpoints' URLs, one per router.
func startDynamoCluster(t *testing.T, o framework.Options) (*framework.Cluster, []string) {
	t.Helper()
	o.DynamoDB = true
	c := framework.Start(t, o)
	eps := c.DynamoDBEndpoints()
	if len(eps) != len(c.Routers) {
		t.Fatalf("dynamodb endpoints %v for %d routers", eps, len(c.Routers))
	}
	return c, eps
}

// ctxT is a context bounded by d, cancelled when the test ends.
func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// Attribute value constructors.
func avS(s string) dtypes.AttributeValue  { return &dtypes.AttributeValueMemberS{Value: s} }
func avN(n string) dtypes.AttributeValue  { return &dtypes.AttributeValueMemberN{Value: n} }
func avB(b []byte) dtypes.AttributeValue  { return &dtypes.AttributeValueMemberB{Value: b} }
func avBool(b bool) dtypes.AttributeValue { return &dtypes.AttributeValueMemberBOOL{Value: b} }
func avNull() dtypes.AttributeValue       { return &dtypes.AttributeValueMemberNULL{Value: true} }
func avSS(s ...string) dtypes.AttributeValue {
	return &dtypes.AttributeValueMemberSS{Value: s}
}
func avNS(s ...string) dtypes.AttributeValue {
	return &dtypes.AttributeValueMemberNS{Value: s}
}
func avBS(b ...[]byte) dtypes.AttributeValue {
	return &dtypes.AttributeValueMemberBS{Value: b}
}
func avL(v ...dtypes.AttributeValue) dtypes.AttributeValue {
	return &dtypes.AttributeValueMemberL{Value: v}
}
func avM(m map[string]dtypes.AttributeValue) dtypes.AttributeValue {
	return &dtypes.AttributeValueMemberM{Value: m}
}

// avText is a canonical text of an attribute value: map keys and set
// members sorted (DynamoDB does not order them), numbers as returned,
// binary in base64.
func avText(v dtypes.AttributeValue) string {
	switch v := v.(type) {
	case nil:
		return "<nil>"
	case *dtypes.AttributeValueMemberS:
		return "S:" + strconv.Quote(v.Value)
	case *dtypes.AttributeValueMemberN:
		return "N:" + v.Value
	case *dtypes.AttributeValueMemberB:
		return "B:" + base64.StdEncoding.EncodeToString(v.Value)
	case *dtypes.AttributeValueMemberBOOL:
		return "BOOL:" + strconv.FormatBool(v.Value)
	case *dtypes.AttributeValueMemberNULL:
		return "NULL:" + strconv.FormatBool(v.Value)
	case *dtypes.AttributeValueMemberSS:
		s := slices.Clone(v.Value)
		for i := range s {
			s[i] = strconv.Quote(s[i])
		}
		slices.Sort(s)
		return "SS:[" + strings.Join(s, ",") + "]"
	case *dtypes.AttributeValueMemberNS:
		s := slices.Clone(v.Value)
		slices.Sort(s)
		return "NS:[" + strings.Join(s, ",") + "]"
	case *dtypes.AttributeValueMemberBS:
		var s []string
		for _, b := range v.Value {
			s = append(s, base64.StdEncoding.EncodeToString(b))
		}
		slices.Sort(s)
		return "BS:[" + strings.Join(s, ",") + "]"
	case *dtypes.AttributeValueMemberL:
		var s []string
		for _, e := range v.Value {
			s = append(s, avText(e))
		}
		return "L:[" + strings.Join(s, ",") + "]"
	case *dtypes.AttributeValueMemberM:
		return "M:" + itemText(v.Value)
	default:
		return fmt.Sprintf("?%T", v)
	}
}

// itemText is avText of an item; "{}" for nil or empty.
func itemText(it map[string]dtypes.AttributeValue) string {
	keys := make([]string, 0, len(it))
	for k := range it {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	b.WriteString("{")
	for i, k := range keys {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString(strconv.Quote(k) + "=" + avText(it[k]))
	}
	b.WriteString("}")
	return b.String()
}

// itemsText is itemText of each item, in order, one per line.
func itemsText(items []map[string]dtypes.AttributeValue) string {
	var s []string
	for _, it := range items {
		s = append(s, itemText(it))
	}
	return strings.Join(s, "\n")
}

// errCode is the DynamoDB error type of err ("" for nil): the smithy
// APIError's code, e.g. "ValidationException".
func errCode(err error) string {
	if err == nil {
		return ""
	}
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return "non-API error: " + err.Error()
}

// errMessage is the message of an API error.
func errMessage(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorMessage()
	}
	if err == nil {
		return ""
	}
	return err.Error()
}

// wantErr fails the test unless err is an API error of type code whose
// message contains every one of parts (case-insensitive).
func wantErr(t *testing.T, what string, err error, code string, parts ...string) {
	t.Helper()
	if got := errCode(err); got != code {
		t.Errorf("%s: error %q (%v); want %s", what, got, err, code)
		return
	}
	msg := strings.ToLower(errMessage(err))
	for _, p := range parts {
		if !strings.Contains(msg, strings.ToLower(p)) {
			t.Errorf("%s: %s message %q does not contain %q", what, code, errMessage(err), p)
		}
	}
}

// numEqual reports whether two DynamoDB number texts are the same
// decimal.
func numEqual(a, b string) bool {
	x, ok1 := new(big.Rat).SetString(a)
	y, ok2 := new(big.Rat).SetString(b)
	return ok1 && ok2 && x.Cmp(y) == 0
}

var placeholderRE = regexp.MustCompile(`:[A-Za-z0-9_]+`)

// valuesFor picks from all the expression attribute values that exprs
// use: DynamoDB refuses unused ones.
func valuesFor(all map[string]dtypes.AttributeValue, exprs ...string) map[string]dtypes.AttributeValue {
	out := map[string]dtypes.AttributeValue{}
	for _, e := range exprs {
		for _, p := range placeholderRE.FindAllString(e, -1) {
			if v, ok := all[p]; ok {
				out[p] = v
			}
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// waitTableActive waits until DescribeTable says ACTIVE.
func waitTableActive(t *testing.T, cli *dynamodb.Client, table string) *dtypes.TableDescription {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, err := cli.DescribeTable(context.Background(), &dynamodb.DescribeTableInput{TableName: aws.String(table)})
		if err == nil && out.Table.TableStatus == dtypes.TableStatusActive {
			return out.Table
		}
		if time.Now().After(deadline) {
			t.Fatalf("table %s not ACTIVE after 30s (last: %v)", table, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// keyDef is one key attribute of a table: name, type, role.
type keyDef struct {
	name string
	typ  dtypes.ScalarAttributeType
	role dtypes.KeyType
}

// createTableInput is a PAY_PER_REQUEST CreateTable of keys (hash first).
func createTableInput(table string, keys ...keyDef) *dynamodb.CreateTableInput {
	in := &dynamodb.CreateTableInput{TableName: aws.String(table), BillingMode: dtypes.BillingModePayPerRequest}
	for _, k := range keys {
		in.KeySchema = append(in.KeySchema, dtypes.KeySchemaElement{AttributeName: aws.String(k.name), KeyType: k.role})
		in.AttributeDefinitions = append(in.AttributeDefinitions, dtypes.AttributeDefinition{AttributeName: aws.String(k.name), AttributeType: k.typ})
	}
	return in
}

// createDDBTable creates a table and waits until it is ACTIVE.
func createDDBTable(t *testing.T, cli *dynamodb.Client, table string, keys ...keyDef) *dtypes.TableDescription {
	t.Helper()
	if _, err := cli.CreateTable(context.Background(), createTableInput(table, keys...)); err != nil {
		t.Fatalf("CreateTable %s: %v", table, err)
	}
	return waitTableActive(t, cli, table)
}

func hashKey(name string, typ dtypes.ScalarAttributeType) keyDef {
	return keyDef{name, typ, dtypes.KeyTypeHash}
}

func rangeKey(name string, typ dtypes.ScalarAttributeType) keyDef {
	return keyDef{name, typ, dtypes.KeyTypeRange}
}
