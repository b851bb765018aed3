package dynamodb

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/veltrixdb/veltrix/pkg/hlc"
	"github.com/veltrixdb/veltrix/pkg/topology"
	"github.com/veltrixdb/veltrix/services/router/internal/cluster"
	"github.com/veltrixdb/veltrix/services/router/internal/coord"
)

// targetPrefix is the X-Amz-Target prefix of DynamoDB's API version.
const targetPrefix = "DynamoDB_20120810."

// maxRequestBytes bounds a request body after decompression: DynamoDB's
// own limit is 16 MB for BatchWriteItem; larger per-table item limits
// raise it (see Handler.maxBody).
const maxRequestBytes = 16 << 20

// maxBody is the request body limit: maxRequestBytes, or room for one item
// of the largest per-table item limit in DynamoDB JSON (base64 makes binary
// 4/3 larger; the rest is slack for names and parameters).
func (h *Handler) maxBody() int {
	limit := maxRequestBytes
	if v, err := h.b.View(); err == nil {
		for _, t := range v.Snapshot.Tables {
			if n := t.ItemLimit()/2*3 + 1<<20; n > limit {
				limit = n
			}
		}
	}
	return limit
}

// Backend is what the endpoint needs from the router. The router's Server
// implements it with the same code its AdminService and KVService use, so a
// table created here is the table the admin API and the migrator see.
type Backend interface {
	// View is the cluster view requests are routed by now (its Snapshot
	// holds the tables).
	View() (*cluster.View, error)
	// Coordinator reads and writes replicas.
	Coordinator() *coord.Coordinator
	// Clock versions writes.
	Clock() *hlc.Clock
	// CreateTable, DeleteTable and UpdateTable change tables in etcd and
	// return once this router routes by the change.
	CreateTable(ctx context.Context, t topology.Table) (topology.Table, error)
	DeleteTable(ctx context.Context, name string) (topology.Table, error)
	UpdateTable(ctx context.Context, name string, change func(*topology.Table) error) (topology.Table, error)
}

// Authenticator checks a request's credentials. The endpoint checks the
// shape of the SigV4 Authorization header itself (parseSigV4) and hands
// the parsed header to the Authenticator, which verifies the signature
// against issued credentials (the security work) or accepts any
// well-formed signature (AcceptAnySignature, the default until then).
type Authenticator interface {
	Authenticate(r *http.Request, body []byte, sig *SigV4) error
}

// AcceptAnySignature accepts every request whose Authorization header is a
// well-formed SigV4 header.
type AcceptAnySignature struct{}

// Authenticate implements Authenticator.
func (AcceptAnySignature) Authenticate(*http.Request, []byte, *SigV4) error { return nil }

// Options configure a Handler.
type Options struct {
	// Region is reported in ARNs; default "veltrix".
	Region string
	// Account is the account id in ARNs; default "000000000000".
	Account string
	// RequestTimeout bounds one operation; default 10 s.
	RequestTimeout time.Duration
	// Auth verifies signatures; default AcceptAnySignature.
	Auth    Authenticator
	Logger  *slog.Logger
	Metrics *Metrics
	// Migration mode (migration.go). Control is nil when the router runs
	// no migrations: every table is served by Veltrix alone.
	Migration MigrationOptions
}

// Handler serves the DynamoDB API over HTTP.
type Handler struct {
	b   Backend
	o   Options
	ops map[string]opFunc
	est estimates
	mig *migrator // nil without Options.Migration.Control
}

// opFunc runs one operation: it decodes body (the request JSON) and returns
// the response, which is encoded with encoding/json (ddb.Item fields encode
// as DynamoDB JSON).
type opFunc func(ctx context.Context, h *Handler, body []byte) (any, error)

// NewHandler returns the endpoint's HTTP handler.
func NewHandler(b Backend, o Options) *Handler {
	if o.Region == "" {
		o.Region = "veltrix"
	}
	if o.Account == "" {
		o.Account = "000000000000"
	}
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = 10 * time.Second
	}
	if o.Auth == nil {
		o.Auth = AcceptAnySignature{}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	h := &Handler{b: b, o: o, ops: map[string]opFunc{}}
	for _, set := range []map[string]opFunc{tableOps, readOps, writeOps} {
		for name, fn := range set {
			h.ops[name] = fn
		}
	}
	if o.Migration.Control != nil {
		h.mig = newMigrator(h)
	}
	return h
}

// Close stops the handler's background work (migration mode's replay
// loop and shadow comparisons). Requests in flight are not waited for.
func (h *Handler) Close() {
	if h.mig != nil {
		h.mig.close()
	}
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodGet && r.URL.Path == "/" {
		// Health, as DynamoDB answers a GET /.
		w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(w, "healthy: veltrix dynamodb endpoint\n")
		return
	}
	start := time.Now()
	op := strings.TrimPrefix(r.Header.Get("X-Amz-Target"), targetPrefix)
	resp, err := h.serve(r, op)
	h.o.Metrics.observe(op, start, err)
	if err != nil {
		h.writeError(w, op, err)
		return
	}
	if up, ok := resp.(*upstreamResponse); ok {
		writeUpstream(w, up)
		return
	}
	h.write(w, http.StatusOK, resp)
}

func (h *Handler) serve(r *http.Request, op string) (any, error) {
	if r.Method != http.MethodPost || r.URL.Path != "/" {
		return nil, &Error{Type: "UnknownOperationException", Status: http.StatusBadRequest,
			Message: fmt.Sprintf("%s %s is not part of the DynamoDB API; requests are POST /", r.Method, r.URL.Path)}
	}
	target := r.Header.Get("X-Amz-Target")
	if !strings.HasPrefix(target, targetPrefix) {
		return nil, &Error{Type: "UnknownOperationException", Status: http.StatusBadRequest,
			Message: fmt.Sprintf("X-Amz-Target %q is not a DynamoDB_20120810 operation", target)}
	}
	fn, ok := h.ops[op]
	if !ok && h.mig == nil {
		return nil, unknownOp(op)
	}
	// The signature's shape is checked before the body is read; the
	// Authenticator needs both.
	sig, err := parseSigV4(r.Header.Get("Authorization"))
	if err != nil {
		return nil, err
	}
	body, err := readBody(r, h.maxBody())
	if err != nil {
		return nil, err
	}
	if err := h.o.Auth.Authenticate(r, body, sig); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.o.RequestTimeout)
	defer cancel()
	if h.mig != nil {
		// A migrating table's requests are routed by its phase; an
		// operation Veltrix lacks may still be forwarded to DynamoDB.
		if resp, handled, err := h.mig.route(ctx, op, body); handled {
			return resp, err
		}
		if !ok {
			return nil, unknownOp(op)
		}
	}
	return fn(ctx, h, body)
}

// unknownOp refuses an operation the endpoint does not serve.
func unknownOp(op string) error {
	if why, ok := unsupported[op]; ok {
		return validationf("%s is not supported by Veltrix yet: %s", op, why)
	}
	return &Error{Type: "UnknownOperationException", Status: http.StatusBadRequest,
		Message: fmt.Sprintf("unknown operation %q", op)}
}

// readBody reads the request body, gunzipping it when Content-Encoding
// says gzip, up to limit bytes.
func readBody(r *http.Request, limit int) ([]byte, error) {
	var src io.Reader = r.Body
	switch enc := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding"))); enc {
	case "", "identity":
	case "gzip":
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			return nil, serializationf("Content-Encoding is gzip but the body is not gzip data: %v", err)
		}
		defer zr.Close()
		src = zr
	default:
		return nil, serializationf("unsupported Content-Encoding %q (gzip or none)", enc)
	}
	body, err := io.ReadAll(io.LimitReader(src, int64(limit)+1))
	if err != nil {
		return nil, serializationf("cannot read the request body: %v", err)
	}
	if len(body) > limit {
		return nil, &Error{Type: "RequestEntityTooLarge", Status: http.StatusRequestEntityTooLarge,
			Message: fmt.Sprintf("request body over %d bytes", limit)}
	}
	return body, nil
}

// decode unmarshals a request body into req. Malformed JSON and values of
// the wrong JSON type are SerializationException; invalid attribute values
// (bad numbers, empty sets, unknown type descriptors) are
// ValidationException naming the problem, as DynamoDB answers them.
func decode(body []byte, req any) error {
	if len(bytes.TrimSpace(body)) == 0 {
		body = []byte("{}")
	}
	if err := json.Unmarshal(body, req); err != nil {
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &se):
			return serializationf("malformed JSON at byte %d: %v", se.Offset, err)
		case errors.As(err, &te):
			return serializationf("%s: expected %s, got JSON %s", te.Field, te.Type, te.Value)
		}
		return validationf("%v", err)
	}
	return nil
}

func (h *Handler) write(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		h.o.Logger.Error("dynamodb: encode response", "err", err)
		status = http.StatusInternalServerError
		body = []byte(`{"__type":"com.amazonaws.dynamodb.v20120810#InternalServerError","message":"cannot encode the response"}`)
	}
	hd := w.Header()
	hd.Set("Content-Type", "application/x-amz-json-1.0")
	hd.Set("x-amz-crc32", strconv.FormatUint(uint64(crc32.ChecksumIEEE(body)), 10))
	hd.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

func (h *Handler) writeError(w http.ResponseWriter, op string, err error) {
	e := toError(err)
	if e.Status >= 500 {
		h.o.Logger.Warn("dynamodb: operation failed", "op", op, "type", e.Type, "err", e.Message)
	}
	h.write(w, e.Status, e.body())
}
