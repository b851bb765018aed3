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

	"github.com/veltrixdb/veltrix/pkg/auth"
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
// against issued API keys (NewSigV4Verifier) or accepts any well-formed
// signature (AcceptAnySignature, when authentication is off).
type Authenticator interface {
	// Authenticate returns who signed the request. rawBody is the body as
	// received on the wire (before gzip decoding): what the client hashed.
	// Its errors are the endpoint's answer (*Error).
	Authenticate(r *http.Request, rawBody []byte, sig *SigV4) (auth.Subject, error)
}

// AcceptAnySignature accepts every request whose Authorization header is a
// well-formed SigV4 header, as auth.Anonymous (who may do everything).
type AcceptAnySignature struct{}

// Authenticate implements Authenticator.
func (AcceptAnySignature) Authenticate(*http.Request, []byte, *SigV4) (auth.Subject, error) {
	return auth.Anonymous, nil
}

// Options configure a Handler.
type Options struct {
	// Region is reported in ARNs; default "veltrix".
	Region string
	// Account is the account id in ARNs; default "000000000000".
	Account string
	// RequestTimeout bounds one operation; default 10 s.
	RequestTimeout time.Duration
	// Auth verifies signatures; default AcceptAnySignature.
	Auth Authenticator
	// Audit records refused requests (failed authentication, missing
	// permission) and admin operations. Default: no audit log.
	Audit   auth.Audit
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
	// An operation Veltrix lacks is refused after authentication and the
	// permission check, as DynamoDB answers an unauthenticated request
	// the same whatever its operation.
	fn, ok := h.ops[op]
	// The signature's shape is checked before the body is read; the
	// Authenticator needs both.
	sig, err := parseSigV4(r.Header.Get("Authorization"))
	if err != nil {
		h.o.Audit.Denied(r.Context(), auth.Subject{}, op, "", auth.None, toError(err).Message)
		return nil, err
	}
	raw, body, err := readBody(r, h.maxBody())
	if err != nil {
		return nil, err
	}
	subj, err := h.o.Auth.Authenticate(r, raw, sig)
	if err != nil {
		h.o.Audit.Denied(r.Context(), auth.Subject{Via: auth.ViaSigV4, KeyID: sig.AccessKeyID}, op, "", auth.None,
			toError(err).Type+": "+toError(err).Message)
		return nil, err
	}
	ctx, cancel := context.WithTimeout(auth.WithSubject(r.Context(), subj), h.o.RequestTimeout)
	defer cancel()
	// Permissions are checked before anything is routed, migration mode's
	// forwarding to DynamoDB included.
	need, rt, err := h.authorize(ctx, subj, op, body)
	if err != nil {
		return nil, err
	}
	resp, err := h.run(ctx, op, fn, ok, body, rt)
	if need.level == auth.Admin && (ok || h.mig != nil) { // an operation that does not exist changed nothing
		h.o.Audit.Admin(ctx, subj, op, need.table, err)
	}
	return resp, err
}

// run serves an authorised request: by its table's migration phase in
// migration mode, else by the operation's function.
func (h *Handler) run(ctx context.Context, op string, fn opFunc, ok bool, body []byte, rt *requestTables) (any, error) {
	if h.mig != nil {
		// A migrating table's requests are routed by its phase; an
		// operation Veltrix lacks may still be forwarded to DynamoDB.
		if resp, handled, err := h.mig.route(ctx, op, body, rt); handled {
			return resp, err
		}
	}
	if !ok {
		return nil, unknownOp(op)
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

// readBody reads the request body up to limit bytes: raw as received (the
// bytes the signature covers) and body, raw gunzipped when
// Content-Encoding says gzip (else the same slice).
func readBody(r *http.Request, limit int) (raw, body []byte, err error) {
	tooLarge := &Error{Type: "RequestEntityTooLarge", Status: http.StatusRequestEntityTooLarge,
		Message: fmt.Sprintf("request body over %d bytes", limit)}
	enc := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding")))
	rawLimit := limit
	switch enc {
	case "", "identity":
	case "gzip":
		// Incompressible data grows a little in gzip.
		rawLimit = limit + limit/64 + 1<<10
	default:
		return nil, nil, serializationf("unsupported Content-Encoding %q (gzip or none)", enc)
	}
	raw, err = io.ReadAll(io.LimitReader(r.Body, int64(rawLimit)+1))
	if err != nil {
		return nil, nil, serializationf("cannot read the request body: %v", err)
	}
	if len(raw) > rawLimit {
		return nil, nil, tooLarge
	}
	if enc != "gzip" {
		return raw, raw, nil
	}
	zr, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		return nil, nil, serializationf("Content-Encoding is gzip but the body is not gzip data: %v", err)
	}
	defer zr.Close()
	body, err = io.ReadAll(io.LimitReader(zr, int64(limit)+1))
	if err != nil {
		return nil, nil, serializationf("cannot read the request body: %v", err)
	}
	if len(body) > limit {
		return nil, nil, tooLarge
	}
	return raw, body, nil
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
