package dynamodb

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"hash/crc32"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/veltrixdb/veltrix/pkg/auth"
	"github.com/veltrixdb/veltrix/services/router/internal/coord"
)

const testAuth = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261207/us-east-1/dynamodb/aws4_request, SignedHeaders=host;x-amz-date;x-amz-target, Signature=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

// rawCall posts body to op with the given extra headers (nil: a signed
// JSON request) and returns the status, the headers and the body.
func rawCall(t *testing.T, e *endpoint, method, target string, body []byte, hdr map[string]string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, e.srv.URL+"/", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-amz-json-1.0")
	req.Header.Set("Authorization", testAuth)
	if target != "" {
		req.Header.Set("X-Amz-Target", target)
	}
	for k, v := range hdr {
		if v == "" {
			req.Header.Del(k)
		} else {
			req.Header.Set(k, v)
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, out
}

// TestProtocol: the wire protocol's framing and error shapes.
func TestProtocol(t *testing.T) {
	e := newEndpoint(t)
	gz := func(s string) []byte {
		var b bytes.Buffer
		w := gzip.NewWriter(&b)
		_, _ = w.Write([]byte(s))
		_ = w.Close()
		return b.Bytes()
	}
	for _, tc := range []struct {
		name, method, target, body string
		raw                        []byte
		hdr                        map[string]string
		status                     int
		typ, msg                   string
	}{
		{name: "list tables", method: "POST", target: "DynamoDB_20120810.ListTables", body: `{}`, status: 200},
		{name: "empty body is {}", method: "POST", target: "DynamoDB_20120810.ListTables", status: 200},
		{name: "gzip body", method: "POST", target: "DynamoDB_20120810.ListTables", raw: gz(`{"Limit":5}`),
			hdr: map[string]string{"Content-Encoding": "gzip"}, status: 200},
		{name: "not gzip", method: "POST", target: "DynamoDB_20120810.ListTables", body: `{}`,
			hdr: map[string]string{"Content-Encoding": "gzip"}, status: 400, typ: "SerializationException", msg: "not gzip"},
		{name: "other encoding", method: "POST", target: "DynamoDB_20120810.ListTables", body: `{}`,
			hdr: map[string]string{"Content-Encoding": "br"}, status: 400, typ: "SerializationException", msg: `"br"`},
		{name: "unknown operation", method: "POST", target: "DynamoDB_20120810.Frobnicate", body: `{}`, status: 400,
			typ: "UnknownOperationException", msg: `"Frobnicate"`},
		{name: "wrong target prefix", method: "POST", target: "DynamoDBStreams_20120810.ListStreams", body: `{}`, status: 400,
			typ: "UnknownOperationException", msg: "not a DynamoDB_20120810 operation"},
		{name: "no target", method: "POST", body: `{}`, status: 400, typ: "UnknownOperationException"},
		{name: "wrong method", method: "PUT", target: "DynamoDB_20120810.ListTables", body: `{}`, status: 400,
			typ: "UnknownOperationException", msg: "requests are POST /"},
		{name: "unsupported operation", method: "POST", target: "DynamoDB_20120810.TransactWriteItems", body: `{}`, status: 400,
			typ: "ValidationException", msg: "TransactWriteItems is not supported by Veltrix yet: transactions"},
		{name: "malformed JSON", method: "POST", target: "DynamoDB_20120810.ListTables", body: `{"Limit":`, status: 400,
			typ: "SerializationException", msg: "malformed JSON"},
		{name: "wrong JSON type", method: "POST", target: "DynamoDB_20120810.ListTables", body: `{"Limit":"5"}`, status: 400,
			typ: "SerializationException", msg: "Limit"},
		{name: "no signature", method: "POST", target: "DynamoDB_20120810.ListTables", body: `{}`,
			hdr: map[string]string{"Authorization": ""}, status: 400, typ: "MissingAuthenticationTokenException"},
		{name: "bad signature", method: "POST", target: "DynamoDB_20120810.ListTables", body: `{}`,
			hdr: map[string]string{"Authorization": "AWS4-HMAC-SHA256 Credential=x"}, status: 400, typ: "IncompleteSignatureException"},
		{name: "bad item value", method: "POST", target: "DynamoDB_20120810.PutItem",
			body: `{"TableName":"nope","Item":{"a":{"N":"not a number"}}}`, status: 400, typ: "ValidationException"},
		{name: "table not found", method: "POST", target: "DynamoDB_20120810.DescribeTable", body: `{"TableName":"nope"}`, status: 400,
			typ: "ResourceNotFoundException", msg: "Table: nope not found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := tc.raw
			if body == nil {
				body = []byte(tc.body)
			}
			status, hdr, out := rawCall(t, e, tc.method, tc.target, body, tc.hdr)
			if status != tc.status {
				t.Fatalf("status %d, want %d: %s", status, tc.status, out)
			}
			if got := hdr.Get("x-amz-crc32"); got != strconv.FormatUint(uint64(crc32.ChecksumIEEE(out)), 10) {
				t.Errorf("x-amz-crc32 %q does not match the body", got)
			}
			if ct := hdr.Get("Content-Type"); ct != "application/x-amz-json-1.0" {
				t.Errorf("Content-Type %q", ct)
			}
			var eb struct {
				Type    string `json:"__type"`
				Message string `json:"message"`
			}
			if err := json.Unmarshal(out, &eb); err != nil {
				t.Fatalf("response is not JSON: %s", out)
			}
			if tc.typ == "" {
				if eb.Type != "" {
					t.Fatalf("unexpected error %s", out)
				}
				return
			}
			if eb.Type != "com.amazonaws.dynamodb.v20120810#"+tc.typ || !strings.Contains(eb.Message, tc.msg) {
				t.Fatalf("got %s, want %s containing %q", out, tc.typ, tc.msg)
			}
		})
	}

	t.Run("health", func(t *testing.T) {
		resp, err := http.Get(e.srv.URL + "/")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || !strings.HasPrefix(string(b), "healthy") {
			t.Fatalf("GET /: %d %q", resp.StatusCode, b)
		}
	})

	t.Run("oversize body", func(t *testing.T) {
		big := bytes.Repeat([]byte(" "), maxRequestBytes+10)
		status, _, out := rawCall(t, e, "POST", "DynamoDB_20120810.ListTables", big, nil)
		if status != http.StatusRequestEntityTooLarge || !strings.Contains(string(out), "RequestEntityTooLarge") {
			t.Fatalf("status %d: %s", status, out)
		}
	})
}

// TestMetrics: every request is counted by operation, errors by type, and
// the latency histogram has a sample per request; unknown operations share
// one label value.
func TestMetrics(t *testing.T) {
	e := newEndpoint(t)
	for range 3 {
		rawCall(t, e, "POST", "DynamoDB_20120810.ListTables", []byte(`{}`), nil)
	}
	rawCall(t, e, "POST", "DynamoDB_20120810.DescribeTable", []byte(`{"TableName":"missing"}`), nil)
	rawCall(t, e, "POST", "DynamoDB_20120810.NoSuchOp1", []byte(`{}`), nil)
	rawCall(t, e, "POST", "DynamoDB_20120810.NoSuchOp2", []byte(`{}`), nil)

	m := e.h.o.Metrics
	for _, c := range []struct {
		got  float64
		want float64
		what string
	}{
		{testutil.ToFloat64(m.requests.WithLabelValues("ListTables")), 3, "ListTables requests"},
		{testutil.ToFloat64(m.requests.WithLabelValues("DescribeTable")), 1, "DescribeTable requests"},
		{testutil.ToFloat64(m.errors.WithLabelValues("DescribeTable", "ResourceNotFoundException")), 1, "DescribeTable errors"},
		{testutil.ToFloat64(m.requests.WithLabelValues("unknown")), 2, "unknown requests"},
		{testutil.ToFloat64(m.errors.WithLabelValues("unknown", "UnknownOperationException")), 2, "unknown errors"},
		{float64(testutil.CollectAndCount(m.errors)), 2, "error series"},
	} {
		if c.got != c.want {
			t.Errorf("%s: %v, want %v", c.what, c.got, c.want)
		}
	}
	if n := testutil.CollectAndCount(m.latency, "veltrix_dynamodb_request_duration_seconds"); n != 3 {
		t.Errorf("latency series: %d, want 3 (ListTables, DescribeTable, unknown)", n)
	}
	if err := testutil.GatherAndCompare(e.reg, strings.NewReader(`
# HELP veltrix_dynamodb_requests_total DynamoDB endpoint requests by operation.
# TYPE veltrix_dynamodb_requests_total counter
veltrix_dynamodb_requests_total{operation="DescribeTable"} 1
veltrix_dynamodb_requests_total{operation="ListTables"} 3
veltrix_dynamodb_requests_total{operation="unknown"} 2
`), "veltrix_dynamodb_requests_total"); err != nil {
		t.Error(err)
	}
}

// TestErrorMapping: errors from the router's layers become DynamoDB's.
func TestErrorMapping(t *testing.T) {
	for _, tc := range []struct {
		err    error
		typ    string
		status int
	}{
		{coord.ErrUnavailable, "ServiceUnavailable", 503},
		{coord.ErrNotReady, "ServiceUnavailable", 503},
		{errors.New("boom"), "InternalServerError", 500},
		{coord.ErrLockContended, "ThrottlingException", 400},
		{validationf("x"), "ValidationException", 400},
	} {
		e := toError(tc.err)
		if e.Type != tc.typ || e.Status != tc.status {
			t.Errorf("%v: %s %d, want %s %d", tc.err, e.Type, e.Status, tc.typ, tc.status)
		}
	}
}

// refuseKey is an Authenticator that knows one access key.
type refuseKey struct{ allowed string }

func (a refuseKey) Authenticate(r *http.Request, body []byte, sig *SigV4) (auth.Subject, error) {
	if sig.AccessKeyID != a.allowed {
		return auth.Subject{}, &Error{Type: "UnrecognizedClientException", Status: http.StatusBadRequest, Message: "The security token included in the request is invalid."}
	}
	if len(body) == 0 {
		return auth.Subject{}, errors.New("no body")
	}
	return auth.Anonymous, nil
}

// TestAuthenticatorSeam: the Authenticator sees the parsed signature and
// the body, and its error is the answer.
func TestAuthenticatorSeam(t *testing.T) {
	e := newEndpoint(t)
	e.h.o.Auth = refuseKey{allowed: "AKIDEXAMPLE"}
	if status, _, out := rawCall(t, e, "POST", "DynamoDB_20120810.ListTables", []byte(`{}`), nil); status != 200 {
		t.Fatalf("allowed key: %d %s", status, out)
	}
	status, _, out := rawCall(t, e, "POST", "DynamoDB_20120810.ListTables", []byte(`{}`),
		map[string]string{"Authorization": strings.Replace(testAuth, "AKIDEXAMPLE", "OTHER", 1)})
	if status != 400 || !strings.Contains(string(out), "UnrecognizedClientException") {
		t.Fatalf("other key: %d %s", status, out)
	}
}
