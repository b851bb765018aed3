package dynamodb

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	migrationv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/migration/v1"
)

// ErrUpstream is returned when the upstream DynamoDB of a migration could
// not be reached or answered with something that is not DynamoDB JSON.
// Use errors.Is.
var ErrUpstream = errors.New("dynamodb: upstream DynamoDB")

// maxUpstreamBody bounds an upstream response body (DynamoDB's are at most
// 16 MB: a BatchGetItem).
const maxUpstreamBody = 32 << 20

// upstreamResponse is DynamoDB's answer to a forwarded request, returned to
// the client unchanged apart from table names.
type upstreamResponse struct {
	status int
	body   []byte
	// requestID is DynamoDB's x-amzn-RequestId.
	requestID string
}

// ok reports whether DynamoDB accepted the request.
func (r *upstreamResponse) ok() bool { return r.status == http.StatusOK }

// upstream forwards requests to the DynamoDB table of a migration: the
// request body with table names rewritten, re-signed with SigV4 by the AWS
// SDK's signer. One pooled HTTP client serves every upstream.
type upstream struct {
	hc     *http.Client
	creds  aws.CredentialsProvider
	signer *v4.Signer
	// region is the default region (Options.Region) for upstreams that
	// name none.
	region string
	now    func() time.Time
}

func newUpstream(creds aws.CredentialsProvider, hc *http.Client, region string, timeout time.Duration) *upstream {
	if hc == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConns = 256
		tr.MaxIdleConnsPerHost = 64
		tr.IdleConnTimeout = 90 * time.Second
		tr.DialContext = (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext
		tr.ResponseHeaderTimeout = timeout
		hc = &http.Client{Transport: tr}
	}
	if creds == nil {
		creds = aws.AnonymousCredentials{}
	}
	return &upstream{hc: hc, creds: creds, signer: v4.NewSigner(), region: region, now: time.Now}
}

// endpoint is the URL and region requests for u go to.
func (up *upstream) endpoint(u *migrationv1.Upstream) (url, region string) {
	region = u.GetRegion()
	if region == "" {
		region = up.region
	}
	url = u.GetEndpoint()
	if url == "" {
		url = "https://dynamodb." + region + ".amazonaws.com"
	}
	return url, region
}

// call sends one DynamoDB operation with body (already in the upstream's
// table names) to u.
func (up *upstream) call(ctx context.Context, u *migrationv1.Upstream, op string, body []byte) (*upstreamResponse, error) {
	url, region := up.endpoint(u)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+"/", bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("%w: endpoint %q: %v", ErrUpstream, url, err)
	}
	req.Header.Set("Content-Type", "application/x-amz-json-1.0")
	req.Header.Set("X-Amz-Target", targetPrefix+op)
	// The body comes back as sent, so x-amz-crc32 can be checked and
	// recomputed; the transport would otherwise ask for gzip.
	req.Header.Set("Accept-Encoding", "identity")
	sum := sha256.Sum256(body)
	if _, anon := up.creds.(aws.AnonymousCredentials); !anon {
		creds, err := up.creds.Retrieve(ctx)
		if err != nil {
			return nil, fmt.Errorf("%w: credentials for %s: %v", ErrUpstream, url, err)
		}
		if err := up.signer.SignHTTP(ctx, creds, req, hex.EncodeToString(sum[:]), "dynamodb", region, up.now()); err != nil {
			return nil, fmt.Errorf("%w: sign the request to %s: %v", ErrUpstream, url, err)
		}
	}
	resp, err := up.hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("%w: %s %s: %v", ErrUpstream, op, url, err)
	}
	defer resp.Body.Close()
	rb, err := io.ReadAll(io.LimitReader(resp.Body, maxUpstreamBody+1))
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("%w: %s %s: read the answer: %v", ErrUpstream, op, url, err)
	}
	if len(rb) > maxUpstreamBody {
		return nil, fmt.Errorf("%w: %s %s: answer over %d bytes", ErrUpstream, op, url, maxUpstreamBody)
	}
	if c := resp.Header.Get("x-amz-crc32"); c != "" {
		if want, err := strconv.ParseUint(c, 10, 32); err == nil && uint32(want) != crc32.ChecksumIEEE(rb) {
			return nil, fmt.Errorf("%w: %s %s: the answer's x-amz-crc32 does not match its body (corrupted in transit)", ErrUpstream, op, url)
		}
	}
	return &upstreamResponse{status: resp.StatusCode, body: rb, requestID: resp.Header.Get("x-amzn-RequestId")}, nil
}

// forward sends a client's request for a migrating table to its upstream:
// table names are rewritten to the upstream's on the way there and back.
// name is the Veltrix table; other tables in the request are left alone
// (a request mixing tables is refused before it gets here).
func (up *upstream) forward(ctx context.Context, m *migrationv1.Migration, op string, body []byte) (*upstreamResponse, error) {
	from, to := m.GetTable(), m.GetUpstream().GetTable()
	out, err := renameTables(body, from, to, requestTableFields)
	if err != nil {
		return nil, serializationf("%v", err)
	}
	resp, err := up.call(ctx, m.GetUpstream(), op, out)
	if err != nil {
		return nil, err
	}
	if resp.body, err = renameTables(resp.body, to, from, responseTableFields); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrUpstream, op, err)
	}
	return resp, nil
}

// Where table names appear in requests and responses: as the value of a
// TableName member (top level, in ConsumedCapacity entries, in
// TableDescription, in transaction members) or as the keys of a map
// (RequestItems, Responses, UnprocessedKeys, UnprocessedItems,
// ItemCollectionMetrics).
var (
	requestTableFields = tableFields{
		names: []string{"TableName"},
		maps:  []string{"RequestItems"},
		// TransactWriteItems' and TransactGetItems' members.
		lists: []string{"TransactItems"},
	}
	responseTableFields = tableFields{
		names:   []string{"TableName"},
		maps:    []string{"Responses", "UnprocessedKeys", "UnprocessedItems", "ItemCollectionMetrics"},
		objects: []string{"TableDescription", "ConsumedCapacity", "Table"},
		lists:   []string{"ConsumedCapacity"},
	}
)

// tableFields says where renameTables looks.
type tableFields struct {
	names   []string // string members holding a table name
	maps    []string // object members keyed by table name
	objects []string // object members to look into (with the same fields)
	lists   []string // array members whose elements to look into
}

// renameTables replaces table name from with to in body where f says
// table names are. A body that is unchanged is returned as is, so an
// answer with nothing to rename keeps DynamoDB's exact bytes.
func renameTables(body []byte, from, to string, f tableFields) ([]byte, error) {
	if from == to || len(bytes.TrimSpace(body)) == 0 {
		return body, nil
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(body, &obj); err != nil {
		return nil, fmt.Errorf("body is not a JSON object: %v", err)
	}
	changed, err := renameIn(obj, from, to, f, 0)
	if err != nil || !changed {
		return body, err
	}
	return json.Marshal(obj)
}

// renameIn renames in one object; depth bounds the recursion.
func renameIn(obj map[string]json.RawMessage, from, to string, f tableFields, depth int) (bool, error) {
	if depth > 4 {
		return false, nil
	}
	changed := false
	set := func(k string, v any) error {
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		obj[k] = b
		changed = true
		return nil
	}
	for _, k := range f.names {
		var s string
		if raw, ok := obj[k]; ok && json.Unmarshal(raw, &s) == nil && s == from {
			if err := set(k, to); err != nil {
				return false, err
			}
		}
	}
	for _, k := range f.maps {
		var m map[string]json.RawMessage
		if raw, ok := obj[k]; ok && json.Unmarshal(raw, &m) == nil {
			if v, ok := m[from]; ok {
				delete(m, from)
				m[to] = v
				if err := set(k, m); err != nil {
					return false, err
				}
			}
		}
	}
	for _, k := range f.objects {
		var o map[string]json.RawMessage
		if raw, ok := obj[k]; ok && json.Unmarshal(raw, &o) == nil {
			c, err := renameIn(o, from, to, f, depth+1)
			if err != nil {
				return false, err
			}
			if c {
				if err := set(k, o); err != nil {
					return false, err
				}
			}
		}
	}
	for _, k := range f.lists {
		var l []json.RawMessage
		raw, ok := obj[k]
		if !ok || json.Unmarshal(raw, &l) != nil {
			continue
		}
		lc := false
		for i, e := range l {
			var o map[string]json.RawMessage
			if json.Unmarshal(e, &o) != nil {
				continue
			}
			// A transaction member nests its operation one level down
			// ({"Put": {"TableName": ...}}).
			c, err := renameIn(o, from, to, tableFields{names: f.names, maps: f.maps, objects: append([]string{"Put", "Update", "Delete", "ConditionCheck", "Get"}, f.objects...)}, depth+1)
			if err != nil {
				return false, err
			}
			if c {
				if l[i], err = json.Marshal(o); err != nil {
					return false, err
				}
				lc = true
			}
		}
		if lc {
			if err := set(k, l); err != nil {
				return false, err
			}
		}
	}
	return changed, nil
}

// writeUpstream writes DynamoDB's answer to the client: its status and
// body, with Content-Type, x-amzn-RequestId and an x-amz-crc32 of the body
// as sent.
func writeUpstream(w http.ResponseWriter, r *upstreamResponse) {
	hd := w.Header()
	hd.Set("Content-Type", "application/x-amz-json-1.0")
	hd.Set("x-amz-crc32", strconv.FormatUint(uint64(crc32.ChecksumIEEE(r.body)), 10))
	hd.Set("Content-Length", strconv.Itoa(len(r.body)))
	if r.requestID != "" {
		hd.Set("x-amzn-RequestId", r.requestID)
	}
	w.WriteHeader(r.status)
	_, _ = w.Write(r.body)
}
