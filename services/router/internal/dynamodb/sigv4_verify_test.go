package dynamodb

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awsddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/veltrixdb/veltrix/pkg/auth"
)

// memCreds is an in-memory auth.Credentials: access key id → secret and
// principal.
type memCreds struct {
	mu   sync.Mutex
	keys map[string]credKey
}

type credKey struct {
	secret string
	p      *auth.Principal
}

func newMemCreds() *memCreds { return &memCreds{keys: map[string]credKey{}} }

func (c *memCreds) add(id, secret string, p *auth.Principal) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.keys[id] = credKey{secret: secret, p: p}
}

func (c *memCreds) revoke(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.keys, id)
}

func (c *memCreds) VerifyToken(token string) (auth.Subject, error) {
	id, secret, ok := strings.Cut(token, ".")
	if !ok {
		return auth.Subject{}, errors.New("malformed token")
	}
	s, k, err := c.lookup(id)
	if err != nil {
		return auth.Subject{}, err
	}
	if secret != k.secret {
		return auth.Subject{}, auth.ErrBadSecret
	}
	s.Via = auth.ViaToken
	return s, nil
}

func (c *memCreds) SigningSecret(id string) (string, auth.Subject, error) {
	s, k, err := c.lookup(id)
	if err != nil {
		return "", auth.Subject{}, err
	}
	return k.secret, s, nil
}

func (c *memCreds) lookup(id string) (auth.Subject, credKey, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	k, ok := c.keys[id]
	if !ok {
		return auth.Subject{}, credKey{}, auth.ErrUnknownKey
	}
	return auth.Subject{Name: k.p.Name, KeyID: id, Principal: k.p}, k, nil
}

// authEndpoint is an endpoint that verifies signatures with creds, on a
// clock offset from the real one by skew, and writes its audit log to
// audit.
type authEndpoint struct {
	*endpoint
	creds *memCreds
	skew  atomic.Int64 // time.Duration added to the verifier's clock
	mu    sync.Mutex
	audit bytes.Buffer
}

func newAuthEndpoint(t *testing.T) *authEndpoint {
	t.Helper()
	a := &authEndpoint{endpoint: &endpoint{b: newTestBackend(t), reg: prometheus.NewRegistry()}, creds: newMemCreds()}
	a.creds.add("AKADMIN", "admin-secret", &auth.Principal{Name: "root", Grants: []auth.Grant{{Table: auth.AllTables, Level: auth.Admin}}})
	a.creds.add("AKREAD", "read-secret", &auth.Principal{Name: "reader", Grants: []auth.Grant{{Table: "alpha", Level: auth.Read}}})
	a.creds.add("AKWRITE", "write-secret", &auth.Principal{Name: "writer", Grants: []auth.Grant{{Table: "alpha", Level: auth.Write}}})
	now := func() time.Time { return time.Now().Add(time.Duration(a.skew.Load())) }
	a.h = NewHandler(a.b, Options{
		Metrics: NewMetrics(a.reg), Logger: slog.New(slog.NewTextHandler(t.Output(), nil)),
		Auth:  NewSigV4Verifier(a.creds, now),
		Audit: auth.Audit{Logger: slog.New(slog.NewJSONHandler(lockedWriter{&a.mu, &a.audit}, nil))},
	})
	a.srv = httptest.NewServer(a.h)
	t.Cleanup(a.srv.Close)
	a.c = a.client("AKADMIN", "admin-secret")
	return a
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// auditLines are the audit log's lines so far.
func (a *authEndpoint) auditLines(t *testing.T) []map[string]string {
	t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []map[string]string
	for _, l := range strings.Split(strings.TrimSpace(a.audit.String()), "\n") {
		if l == "" {
			continue
		}
		m := map[string]string{}
		var raw map[string]any
		if err := json.Unmarshal([]byte(l), &raw); err != nil {
			t.Fatalf("audit line %q: %v", l, err)
		}
		for k, v := range raw {
			if s, ok := v.(string); ok {
				m[k] = s
			}
		}
		out = append(out, m)
	}
	return out
}

// hasAudit reports whether an audit line has every given attribute.
func (a *authEndpoint) hasAudit(t *testing.T, want map[string]string) bool {
	t.Helper()
next:
	for _, l := range a.auditLines(t) {
		for k, v := range want {
			if l[k] != v {
				continue next
			}
		}
		return true
	}
	return false
}

func (a *authEndpoint) client(id, secret string) *awsddb.Client {
	return awsddb.New(awsddb.Options{
		Region:           "eu-west-3", // any region is accepted
		BaseEndpoint:     aws.String(a.srv.URL),
		Credentials:      credentials.NewStaticCredentialsProvider(id, secret, ""),
		RetryMaxAttempts: 1,
	})
}

func hashOnly(name string) *awsddb.CreateTableInput {
	return &awsddb.CreateTableInput{
		TableName:            aws.String(name),
		KeySchema:            []types.KeySchemaElement{{AttributeName: aws.String("pk"), KeyType: types.KeyTypeHash}},
		AttributeDefinitions: []types.AttributeDefinition{{AttributeName: aws.String("pk"), AttributeType: types.ScalarAttributeTypeS}},
		BillingMode:          types.BillingModePayPerRequest,
	}
}

func strItem(kv ...string) map[string]types.AttributeValue {
	it := map[string]types.AttributeValue{}
	for i := 0; i+1 < len(kv); i += 2 {
		it[kv[i]] = &types.AttributeValueMemberS{Value: kv[i+1]}
	}
	return it
}

// TestSigV4SDK: requests signed by the AWS SDK for Go v2 are verified for
// real: the right secret passes, a wrong one, an unknown or revoked key,
// and a signature outside the 15 minute window are refused.
func TestSigV4SDK(t *testing.T) {
	a := newAuthEndpoint(t)
	ctx := t.Context()
	if _, err := a.c.CreateTable(ctx, hashOnly("alpha")); err != nil {
		t.Fatal(err)
	}
	reader := a.client("AKREAD", "read-secret")
	if _, err := reader.GetItem(ctx, &awsddb.GetItemInput{TableName: aws.String("alpha"), Key: strItem("pk", "x")}); err != nil {
		t.Fatalf("right secret: %v", err)
	}
	_, err := a.client("AKREAD", "wrong-secret").GetItem(ctx, &awsddb.GetItemInput{TableName: aws.String("alpha"), Key: strItem("pk", "x")})
	wantAPIError(t, err, "InvalidSignatureException", msgSignatureMismatch)
	_, err = a.client("AKNOBODY", "read-secret").GetItem(ctx, &awsddb.GetItemInput{TableName: aws.String("alpha"), Key: strItem("pk", "x")})
	wantAPIError(t, err, "UnrecognizedClientException", msgUnrecognizedClient)
	if !a.hasAudit(t, map[string]string{"outcome": "denied", "key_id": "AKNOBODY", "op": "GetItem", "via": "sigv4"}) {
		t.Errorf("failed authentication not audited: %v", a.auditLines(t))
	}

	for _, tc := range []struct {
		skew time.Duration
		code string
		msg  string
	}{
		{14 * time.Minute, "", ""},  // signed 14 minutes ago
		{-14 * time.Minute, "", ""}, // signed 14 minutes ahead
		{16 * time.Minute, "InvalidSignatureException", "Signature expired: "},
		{-16 * time.Minute, "InvalidSignatureException", "Signature not yet current: "},
	} {
		a.skew.Store(int64(tc.skew))
		_, err := reader.GetItem(ctx, &awsddb.GetItemInput{TableName: aws.String("alpha"), Key: strItem("pk", "x")})
		if tc.code == "" {
			if err != nil {
				t.Errorf("clock %v: %v", tc.skew, err)
			}
			continue
		}
		wantAPIError(t, err, tc.code, tc.msg)
	}
	a.skew.Store(0)

	a.creds.revoke("AKREAD")
	_, err = reader.GetItem(ctx, &awsddb.GetItemInput{TableName: aws.String("alpha"), Key: strItem("pk", "x")})
	wantAPIError(t, err, "UnrecognizedClientException", msgUnrecognizedClient)
}

// signedRequest is a POST of body to the endpoint with the given target,
// signed by the SDK's v4 signer at signedAt.
func signedRequest(t *testing.T, url, id, secret, target string, body []byte, signedAt time.Time, hdr map[string]string) *http.Request {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, url+"/", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-amz-json-1.0")
	req.Header.Set("X-Amz-Target", targetPrefix+target)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	sum := sha256.Sum256(body)
	err = v4.NewSigner().SignHTTP(t.Context(), aws.Credentials{AccessKeyID: id, SecretAccessKey: secret}, req,
		hex.EncodeToString(sum[:]), "dynamodb", "us-east-1", signedAt)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// send sends req and returns the status and the error type ("" on success).
func send(t *testing.T, req *http.Request) (int, string, string) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var eb struct {
		Type    string `json:"__type"`
		Message string `json:"message"`
	}
	_ = json.Unmarshal(out, &eb)
	return resp.StatusCode, strings.TrimPrefix(eb.Type, "com.amazonaws.dynamodb.v20120810#"), eb.Message
}

func gzipped(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	if _, err := w.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestSigV4Tampering: what was signed cannot be changed: the body, a
// signed header, the time; a gzip body is verified as sent.
func TestSigV4Tampering(t *testing.T) {
	a := newAuthEndpoint(t)
	if _, err := a.c.CreateTable(t.Context(), hashOnly("alpha")); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	put := []byte(`{"TableName":"alpha","Item":{"pk":{"S":"k1"},"v":{"S":"one"}}}`)
	sign := func(body []byte, at time.Time, hdr map[string]string) *http.Request {
		return signedRequest(t, a.srv.URL, "AKWRITE", "write-secret", "PutItem", body, at, hdr)
	}
	t.Run("signed", func(t *testing.T) {
		if st, typ, msg := send(t, sign(put, now, nil)); st != 200 {
			t.Fatalf("%d %s %s", st, typ, msg)
		}
	})
	t.Run("body tampered", func(t *testing.T) {
		req := sign(put, now, nil)
		evil := bytes.Replace(put, []byte(`"one"`), []byte(`"two"`), 1) // same length
		req.Body = io.NopCloser(bytes.NewReader(evil))
		if st, typ, _ := send(t, req); st != 400 || typ != "InvalidSignatureException" {
			t.Fatalf("%d %s", st, typ)
		}
	})
	t.Run("header tampered", func(t *testing.T) {
		req := sign([]byte(`{"TableName":"alpha","Key":{"pk":{"S":"k1"}}}`), now, nil)
		req.Header.Set("X-Amz-Target", targetPrefix+"DeleteItem")
		if st, typ, _ := send(t, req); st != 400 || typ != "InvalidSignatureException" {
			t.Fatalf("%d %s", st, typ)
		}
	})
	t.Run("date tampered", func(t *testing.T) {
		req := sign(put, now, nil)
		req.Header.Set("X-Amz-Date", now.Add(time.Second).UTC().Format(amzDateFormat))
		if st, typ, _ := send(t, req); st != 400 || typ != "InvalidSignatureException" {
			t.Fatalf("%d %s", st, typ)
		}
	})
	t.Run("signed header removed", func(t *testing.T) {
		req := sign(put, now, nil)
		req.Header.Del("Content-Type")
		if st, typ, _ := send(t, req); st != 400 || typ != "InvalidSignatureException" {
			t.Fatalf("%d %s", st, typ)
		}
	})
	t.Run("content sha256 header", func(t *testing.T) {
		sum := sha256.Sum256(put)
		if st, typ, msg := send(t, sign(put, now, map[string]string{"X-Amz-Content-Sha256": hex.EncodeToString(sum[:])})); st != 200 {
			t.Fatalf("right hash: %d %s %s", st, typ, msg)
		}
		if st, typ, msg := send(t, sign(put, now, map[string]string{"X-Amz-Content-Sha256": "UNSIGNED-PAYLOAD"})); st != 400 ||
			typ != "InvalidSignatureException" || !strings.Contains(msg, "x-amz-content-sha256") {
			t.Fatalf("unsigned payload: %d %s %s", st, typ, msg)
		}
	})
	t.Run("window", func(t *testing.T) {
		for _, tc := range []struct {
			at  time.Duration
			typ string
		}{
			{-14 * time.Minute, ""},
			{14 * time.Minute, ""},
			{-16 * time.Minute, "InvalidSignatureException"},
			{16 * time.Minute, "InvalidSignatureException"},
		} {
			st, typ, msg := send(t, sign(put, now.Add(tc.at), nil))
			if typ != tc.typ || (tc.typ == "" && st != 200) {
				t.Errorf("signed %v from now: %d %s %s", tc.at, st, typ, msg)
			}
		}
	})
	t.Run("gzip", func(t *testing.T) {
		gz := gzipped(t, []byte(`{"TableName":"alpha","Item":{"pk":{"S":"k2"}}}`))
		if st, typ, msg := send(t, sign(gz, now, map[string]string{"Content-Encoding": "gzip"})); st != 200 {
			t.Fatalf("gzip: %d %s %s", st, typ, msg)
		}
		if a.stored(t, "alpha", map[string]string{"pk": "k2"}) == nil {
			t.Fatal("the gzip request's item was not written")
		}
		// The hash is of the bytes sent, not of the decoded JSON.
		req := sign(gz, now, map[string]string{"Content-Encoding": "gzip"})
		plain := []byte(`{"TableName":"alpha","Item":{"pk":{"S":"k3"}}}`)
		sum := sha256.Sum256(plain)
		if err := v4.NewSigner().SignHTTP(t.Context(), aws.Credentials{AccessKeyID: "AKWRITE", SecretAccessKey: "write-secret"}, req,
			hex.EncodeToString(sum[:]), "dynamodb", "us-east-1", now); err != nil {
			t.Fatal(err)
		}
		if st, typ, _ := send(t, req); st != 400 || typ != "InvalidSignatureException" {
			t.Fatalf("hash of the decoded body: %d %s", st, typ)
		}
	})
}

// sigAt builds a request signed at the given time, for the verifier
// alone.
func sigAt(t *testing.T, at time.Time, mutate func(*http.Request)) (*http.Request, []byte, *SigV4) {
	t.Helper()
	body := []byte(`{"TableName":"alpha"}`)
	req := httptest.NewRequest(http.MethodPost, "http://veltrix.example:8000/", bytes.NewReader(body))
	req.Header.Set("X-Amz-Target", targetPrefix+"DescribeTable")
	sum := sha256.Sum256(body)
	if err := v4.NewSigner().SignHTTP(t.Context(), aws.Credentials{AccessKeyID: "AKREAD", SecretAccessKey: "read-secret"}, req,
		hex.EncodeToString(sum[:]), "dynamodb", "somewhere-1", at); err != nil {
		t.Fatal(err)
	}
	if mutate != nil {
		mutate(req)
	}
	sig, err := parseSigV4(req.Header.Get("Authorization"))
	if err != nil {
		t.Fatal(err)
	}
	return req, body, sig
}

// TestSigV4Verifier: the verifier's answers, word for word where
// DynamoDB's wording is known.
func TestSigV4Verifier(t *testing.T) {
	creds := newMemCreds()
	creds.add("AKREAD", "read-secret", &auth.Principal{Name: "reader"})
	t0 := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	verifier := func(now time.Time) Authenticator { return NewSigV4Verifier(creds, func() time.Time { return now }) }

	req, body, sig := sigAt(t, t0, nil)
	s, err := verifier(t0).Authenticate(req, body, sig)
	if err != nil {
		t.Fatal(err)
	}
	if s.Name != "reader" || s.Via != auth.ViaSigV4 || s.KeyID != "AKREAD" || s.Principal == nil || s.Superuser {
		t.Fatalf("subject %+v", s)
	}

	for _, tc := range []struct {
		name   string
		now    time.Time
		mutate func(*http.Request)
		typ    string
		msg    string
	}{
		{name: "expired", now: t0.Add(16 * time.Minute), typ: "InvalidSignatureException",
			msg: "Signature expired: 20261207T120000Z is now earlier than 20261207T120100Z (20261207T121600Z - 15 min.)"},
		{name: "not yet current", now: t0.Add(-16 * time.Minute), typ: "InvalidSignatureException",
			msg: "Signature not yet current: 20261207T120000Z is still later than 20261207T115900Z (20261207T114400Z + 15 min.)"},
		{name: "15 minutes is in", now: t0.Add(15 * time.Minute)},
		{name: "no date", now: t0, mutate: func(r *http.Request) { r.Header.Del("X-Amz-Date") },
			typ: "IncompleteSignatureException", msg: "'X-Amz-Date' or a 'Date' header"},
		{name: "malformed date", now: t0, mutate: func(r *http.Request) { r.Header.Set("X-Amz-Date", "2026-12-07T12:00:00Z") },
			typ: "IncompleteSignatureException", msg: "ISO-8601 'basic format'"},
		{name: "scope date", now: t0.Add(24 * time.Hour), mutate: func(r *http.Request) {
			r.Header.Set("X-Amz-Date", "20261208T120000Z")
		}, typ: "InvalidSignatureException", msg: "Date in Credential scope does not match"},
		{name: "wrong service", now: t0, mutate: func(r *http.Request) {
			r.Header.Set("Authorization", strings.Replace(r.Header.Get("Authorization"), "/dynamodb/", "/s3/", 1))
		}, typ: "InvalidSignatureException", msg: "'dynamodb'"},
		{name: "host not signed", now: t0, mutate: func(r *http.Request) {
			r.Header.Set("Authorization", strings.Replace(r.Header.Get("Authorization"), ";host;", ";", 1))
		}, typ: "IncompleteSignatureException", msg: "'Host'"},
		{name: "other host", now: t0, mutate: func(r *http.Request) { r.Host = "elsewhere.example:8000" },
			typ: "InvalidSignatureException", msg: msgSignatureMismatch},
		{name: "other region in scope", now: t0, mutate: func(r *http.Request) {
			r.Header.Set("Authorization", strings.Replace(r.Header.Get("Authorization"), "/somewhere-1/", "/us-east-1/", 1))
		}, typ: "InvalidSignatureException", msg: msgSignatureMismatch},
		{name: "query added", now: t0, mutate: func(r *http.Request) { r.URL.RawQuery = "a=b" },
			typ: "InvalidSignatureException", msg: msgSignatureMismatch},
		{name: "unknown key", now: t0, mutate: func(r *http.Request) {
			r.Header.Set("Authorization", strings.Replace(r.Header.Get("Authorization"), "AKREAD/", "AKOTHER/", 1))
		}, typ: "UnrecognizedClientException", msg: msgUnrecognizedClient},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, body, sig := sigAt(t, t0, tc.mutate)
			_, err := verifier(tc.now).Authenticate(req, body, sig)
			if tc.typ == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var e *Error
			if !errors.As(err, &e) || e.Type != tc.typ || e.Status != 400 || !strings.Contains(e.Message, tc.msg) {
				t.Fatalf("got %v, want %s containing %q", err, tc.typ, tc.msg)
			}
		})
	}

	t.Run("store down", func(t *testing.T) {
		req, body, sig := sigAt(t, t0, nil)
		_, err := NewSigV4Verifier(failingCreds{}, func() time.Time { return t0 }).Authenticate(req, body, sig)
		var e *Error
		if !errors.As(err, &e) || e.Status != 503 {
			t.Fatalf("got %v, want 503", err)
		}
	})
}

type failingCreds struct{}

func (failingCreds) VerifyToken(string) (auth.Subject, error) {
	return auth.Subject{}, errors.New("down")
}
func (failingCreds) SigningSecret(string) (string, auth.Subject, error) {
	return "", auth.Subject{}, errors.New("store not loaded")
}
