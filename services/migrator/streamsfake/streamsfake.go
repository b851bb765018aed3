// Package streamsfake is an in-process fake of the DynamoDB Streams API for
// tests: ListStreams, DescribeStream, GetShardIterator and GetRecords over
// HTTP in the AWS JSON 1.0 protocol (X-Amz-Target
// DynamoDBStreams_20120810.<Op>), so the real AWS SDK client talks to it
// through BaseEndpoint and its serialization and error handling are
// exercised too. No local server implements DynamoDB Streams (see
// shared/PEERS.md); this one honours the semantics a consumer depends on:
//
//   - shard lineage: a shard names its parent; DescribeStream lists shards
//     in creation order, 100 a page, and filters children (CHILD_SHARDS);
//   - a closed shard's last page has no NextShardIterator (null), an open
//     shard's pages always have one, even when empty;
//   - empty pages with a live iterator can be injected while records wait
//     further on, as the real service returns them;
//   - iterators expire (ExpiredIteratorException) after IteratorTTL, or all
//     at once with ExpireIterators;
//   - trimmed records (Trim) cannot be read: an iterator or sequence number
//     before the trim horizon gets TrimmedDataAccessException; a shard can
//     also vanish from the stream altogether (RemoveShard);
//   - a page holds at most 1000 records (Limit above 1000 is a
//     ValidationException) and at most 1 MB of them;
//   - any call can be made to fail (InjectError), e.g. with
//     LimitExceededException for throttling.
//
// Records are stored as the JSON objects of a GetRecords response's
// Records array, exactly as given (the real shapes in
// shared/testdata/dynamodb/streams-getrecords can be fed in), except that
// Put assigns dynamodb.SequenceNumber (increasing across the stream) and
// fills in a missing ApproximateCreationDateTime.
//
// It is test support in a module of its own, so the migrator's tests and
// e2e share it while the migrator's product packages never depend on it.
package streamsfake

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams"
	"github.com/veltrixdb/veltrix/pkg/ddb"
)

// Limits of the real service that the fake enforces.
const (
	// MaxRecordsPerPage is GetRecords' largest Limit.
	MaxRecordsPerPage = 1000
	// MaxPageBytes is the most record data one GetRecords returns.
	MaxPageBytes = 1 << 20
	// DefaultIteratorTTL is how long a shard iterator lives.
	DefaultIteratorTTL = 15 * time.Minute
	// maxShardsPerPage is DescribeStream's largest Limit.
	maxShardsPerPage = 100
	// targetPrefix starts every X-Amz-Target the fake serves.
	targetPrefix = "DynamoDBStreams_20120810."
)

// Options configures a Fake.
type Options struct {
	// IteratorTTL is how long a shard iterator lives. Default:
	// DefaultIteratorTTL (15 minutes, the real service's).
	IteratorTTL time.Duration
	// Now is the fake's clock. Default: time.Now.
	Now func() time.Time
	// Region and Account make up stream ARNs. Default: us-east-1 and
	// 123456789012.
	Region, Account string
}

// Fake is the DynamoDB Streams service. It is an http.Handler; its other
// methods set up streams and faults. Safe for concurrent use.
type Fake struct {
	opts Options

	mu      sync.Mutex
	streams []*stream
	byARN   map[string]*stream
	iters   map[string]*iterator
	seq     *big.Int
	faults  map[string][]string // op -> error codes to return, in order
	calls   map[string]int
}

type stream struct {
	arn, label, table, viewType string
	created                     time.Time
	shards                      []*shard
	byID                        map[string]*shard
}

type shard struct {
	id, parent string
	records    []stored
	// trimmed is the index of the oldest record still readable.
	trimmed    int
	closed     bool
	removed    bool
	emptyPages int
	startSeq   string
}

type stored struct {
	seq  *big.Int
	raw  []byte
	at   time.Time
	size int
}

type iterator struct {
	stream *stream
	shard  *shard
	pos    int
	issued time.Time
}

// New returns a fake with no streams.
func New(opts Options) *Fake {
	if opts.IteratorTTL == 0 {
		opts.IteratorTTL = DefaultIteratorTTL
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Region == "" {
		opts.Region = "us-east-1"
	}
	if opts.Account == "" {
		opts.Account = "123456789012"
	}
	// Real sequence numbers are 21 to 40 decimal digits.
	seq, _ := new(big.Int).SetString("100000000000000000000", 10)
	return &Fake{
		opts:   opts,
		byARN:  make(map[string]*stream),
		iters:  make(map[string]*iterator),
		seq:    seq,
		faults: make(map[string][]string),
		calls:  make(map[string]int),
	}
}

// Serve starts an HTTP server for f on 127.0.0.1, closed when the test
// ends, and returns its endpoint.
func Serve(t testing.TB, f *Fake) string {
	t.Helper()
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return srv.URL
}

// NewClient returns an SDK client for the fake at endpoint, with static
// credentials and the SDK's retries off, so that the consumer's own
// handling of throttling and failures is what a test sees.
func NewClient(endpoint string) *dynamodbstreams.Client {
	return dynamodbstreams.New(dynamodbstreams.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(endpoint),
		Credentials:  credentials.NewStaticCredentialsProvider("fake", "fake", ""),
		Retryer:      aws.NopRetryer{},
	})
}

// CreateStream adds a stream for table with the given view type
// (NEW_IMAGE, NEW_AND_OLD_IMAGES, KEYS_ONLY, OLD_IMAGE) and returns its
// ARN. It has no shards until CreateShard.
func (f *Fake) CreateStream(table, viewType string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.opts.Now().UTC()
	label := now.Format("2006-01-02T15:04:05.000")
	for f.byARN[f.arn(table, label)] != nil {
		now = now.Add(time.Millisecond)
		label = now.Format("2006-01-02T15:04:05.000")
	}
	s := &stream{arn: f.arn(table, label), label: label, table: table, viewType: viewType, created: now, byID: make(map[string]*shard)}
	f.streams = append(f.streams, s)
	f.byARN[s.arn] = s
	return s.arn
}

func (f *Fake) arn(table, label string) string {
	return fmt.Sprintf("arn:aws:dynamodb:%s:%s:table/%s/stream/%s", f.opts.Region, f.opts.Account, table, label)
}

// CreateShard adds an open shard to a stream; parent names its parent
// shard ("" for none), which must exist.
func (f *Fake) CreateShard(arn, id, parent string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.byARN[arn]
	if s == nil {
		return fmt.Errorf("streamsfake: no stream %s", arn)
	}
	if s.byID[id] != nil {
		return fmt.Errorf("streamsfake: shard %s exists", id)
	}
	if parent != "" && s.byID[parent] == nil {
		return fmt.Errorf("streamsfake: parent shard %s does not exist", parent)
	}
	sh := &shard{id: id, parent: parent, startSeq: f.nextSeq().String()}
	s.shards = append(s.shards, sh)
	s.byID[id] = sh
	return nil
}

// Split closes shard parent and opens children with it as their parent,
// as DynamoDB does when it rolls a shard over (one child) or splits it.
func (f *Fake) Split(arn, parent string, children ...string) error {
	if err := f.CloseShard(arn, parent); err != nil {
		return err
	}
	for _, c := range children {
		if err := f.CreateShard(arn, c, parent); err != nil {
			return err
		}
	}
	return nil
}

// CloseShard closes a shard: it takes no more records, and reading past
// its last record ends with a null NextShardIterator.
func (f *Fake) CloseShard(arn, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	sh, err := f.shard(arn, id)
	if err != nil {
		return err
	}
	sh.closed = true
	return nil
}

// RemoveShard makes a shard vanish from the stream, as the real service
// drops shards 24 hours after they close: DescribeStream no longer lists
// it and its iterators fail with ResourceNotFoundException.
func (f *Fake) RemoveShard(arn, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	sh, err := f.shard(arn, id)
	if err != nil {
		return err
	}
	sh.removed = true
	return nil
}

func (f *Fake) shard(arn, id string) (*shard, error) {
	s := f.byARN[arn]
	if s == nil {
		return nil, fmt.Errorf("streamsfake: no stream %s", arn)
	}
	sh := s.byID[id]
	if sh == nil {
		return nil, fmt.Errorf("streamsfake: no shard %s in %s", id, arn)
	}
	return sh, nil
}

func (f *Fake) nextSeq() *big.Int {
	// Real sequence numbers grow with gaps; so do these.
	f.seq.Add(f.seq, big.NewInt(100))
	return new(big.Int).Set(f.seq)
}

// Put appends records to an open shard and returns their sequence
// numbers. Each record is a JSON object shaped like an element of a
// GetRecords response's Records; its dynamodb.SequenceNumber is set, and
// a missing dynamodb.ApproximateCreationDateTime becomes the fake's
// current time truncated to the second, as DynamoDB reports it.
func (f *Fake) Put(arn, id string, records ...json.RawMessage) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	sh, err := f.shard(arn, id)
	if err != nil {
		return nil, err
	}
	if sh.closed {
		return nil, fmt.Errorf("streamsfake: shard %s is closed", id)
	}
	seqs := make([]string, 0, len(records))
	for i, raw := range records {
		var rec map[string]json.RawMessage
		if err := json.Unmarshal(raw, &rec); err != nil {
			return seqs, fmt.Errorf("streamsfake: record %d: %w", i, err)
		}
		var d map[string]json.RawMessage
		if err := json.Unmarshal(rec["dynamodb"], &d); err != nil || d == nil {
			return seqs, fmt.Errorf("streamsfake: record %d: no dynamodb object", i)
		}
		seq := f.nextSeq()
		d["SequenceNumber"], _ = json.Marshal(seq.String())
		at := f.opts.Now().UTC().Truncate(time.Second)
		if t, ok := d["ApproximateCreationDateTime"]; ok {
			var secs float64
			if err := json.Unmarshal(t, &secs); err != nil {
				return seqs, fmt.Errorf("streamsfake: record %d: ApproximateCreationDateTime: %w", i, err)
			}
			at = time.UnixMicro(int64(secs * 1e6)).UTC()
		} else {
			d["ApproximateCreationDateTime"] = json.RawMessage(fmt.Sprint(at.Unix()))
		}
		rec["dynamodb"], _ = json.Marshal(d)
		b, _ := json.Marshal(rec)
		sh.records = append(sh.records, stored{seq: seq, raw: b, at: at, size: len(b)})
		seqs = append(seqs, seq.String())
	}
	return seqs, nil
}

// Trim drops every record of a shard older than the n-th (0-based) from
// what can be read, as the real service trims records after 24 hours.
func (f *Fake) Trim(arn, id string, n int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	sh, err := f.shard(arn, id)
	if err != nil {
		return err
	}
	sh.trimmed = min(max(sh.trimmed, n), len(sh.records))
	return nil
}

// InjectEmptyPages makes the next n GetRecords of a shard return no
// records and a live iterator at the same position, however many records
// wait behind it.
func (f *Fake) InjectEmptyPages(arn, id string, n int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	sh, err := f.shard(arn, id)
	if err != nil {
		return err
	}
	sh.emptyPages += n
	return nil
}

// InjectError makes the next calls of op (e.g. "GetRecords") fail, one
// with each code, in order: LimitExceededException (throttling),
// InternalServerError (a 500), or any other code; "" lets a call through.
func (f *Fake) InjectError(op string, codes ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.faults[op] = append(f.faults[op], codes...)
}

// ExpireIterators makes every iterator handed out so far expired.
func (f *Fake) ExpireIterators() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, it := range f.iters {
		it.issued = time.Time{}
	}
}

// Calls returns how many times op was called (faults included).
func (f *Fake) Calls(op string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[op]
}

// NewRecord builds a record in the GetRecords shape: eventName INSERT,
// MODIFY or REMOVE, the item's keys and new image (nil for REMOVE), its
// time (which DynamoDB Streams reports in whole seconds), and, for ttl,
// the userIdentity of DynamoDB's TTL process.
func NewRecord(eventName string, keys, newImage ddb.Item, at time.Time, ttl bool) json.RawMessage {
	d := map[string]any{
		"ApproximateCreationDateTime": at.Unix(),
		"Keys":                        json.RawMessage(mustDDBJSON(keys)),
		"SizeBytes":                   64,
		"StreamViewType":              "NEW_AND_OLD_IMAGES",
	}
	if newImage != nil {
		d["NewImage"] = json.RawMessage(mustDDBJSON(newImage))
	}
	rec := map[string]any{
		"eventID":      randomHex(16),
		"eventName":    eventName,
		"eventVersion": "1.1",
		"eventSource":  "aws:dynamodb",
		"awsRegion":    "us-east-1",
		"dynamodb":     d,
	}
	if ttl {
		// The API's member names; Lambda events spell them type and
		// principalId.
		rec["userIdentity"] = map[string]string{"Type": "Service", "PrincipalId": "dynamodb.amazonaws.com"}
	}
	b, err := json.Marshal(rec)
	if err != nil {
		panic(err)
	}
	return b
}

func mustDDBJSON(it ddb.Item) []byte {
	b, err := ddb.MarshalDynamoDBJSON(it)
	if err != nil {
		panic(err)
	}
	return b
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// apiError is an error answer of the service.
type apiError struct {
	status int
	code   string
	msg    string
}

func (e *apiError) Error() string { return e.code + ": " + e.msg }

func clientErr(code, format string, args ...any) *apiError {
	return &apiError{status: http.StatusBadRequest, code: code, msg: fmt.Sprintf(format, args...)}
}

// ServeHTTP serves the four calls.
func (f *Fake) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	out, err := f.serve(r)
	w.Header().Set("Content-Type", "application/x-amz-json-1.0")
	w.Header().Set("X-Amzn-RequestId", randomHex(16))
	if err != nil {
		var ae *apiError
		if !errors.As(err, &ae) {
			ae = &apiError{status: http.StatusInternalServerError, code: "InternalServerError", msg: err.Error()}
		}
		w.WriteHeader(ae.status)
		_ = json.NewEncoder(w).Encode(map[string]string{
			"__type":  "com.amazonaws.dynamodb.v20120810#" + ae.code,
			"message": ae.msg,
		})
		return
	}
	_, _ = w.Write(out)
}

func (f *Fake) serve(r *http.Request) ([]byte, error) {
	if r.Method != http.MethodPost {
		return nil, clientErr("UnknownOperationException", "method %s", r.Method)
	}
	target := r.Header.Get("X-Amz-Target")
	op, ok := strings.CutPrefix(target, targetPrefix)
	if !ok {
		return nil, clientErr("UnknownOperationException", "X-Amz-Target %q", target)
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/x-amz-json-1.0") {
		return nil, clientErr("SerializationException", "Content-Type %q is not application/x-amz-json-1.0", ct)
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls[op]++
	if codes := f.faults[op]; len(codes) > 0 && codes[0] == "" {
		f.faults[op] = codes[1:] // "" lets one call through
	} else if len(codes) > 0 {
		f.faults[op] = codes[1:]
		if codes[0] == "InternalServerError" {
			return nil, &apiError{status: http.StatusInternalServerError, code: codes[0], msg: "injected fault"}
		}
		return nil, clientErr(codes[0], "injected fault")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	switch op {
	case "ListStreams":
		var in listStreamsInput
		if err := decode(dec, &in); err != nil {
			return nil, err
		}
		return f.listStreams(in)
	case "DescribeStream":
		var in describeStreamInput
		if err := decode(dec, &in); err != nil {
			return nil, err
		}
		return f.describeStream(in)
	case "GetShardIterator":
		var in getShardIteratorInput
		if err := decode(dec, &in); err != nil {
			return nil, err
		}
		return f.getShardIterator(in)
	case "GetRecords":
		var in getRecordsInput
		if err := decode(dec, &in); err != nil {
			return nil, err
		}
		return f.getRecords(in)
	}
	return nil, clientErr("UnknownOperationException", "operation %s", op)
}

func decode(dec *json.Decoder, v any) error {
	if err := dec.Decode(v); err != nil {
		return clientErr("SerializationException", "%v", err)
	}
	return nil
}

type listStreamsInput struct {
	TableName               *string
	Limit                   *int
	ExclusiveStartStreamArn *string
}

type streamSummary struct {
	StreamArn   string
	StreamLabel string
	TableName   string
}

func (f *Fake) listStreams(in listStreamsInput) ([]byte, error) {
	limit := 100
	if in.Limit != nil {
		if *in.Limit < 1 || *in.Limit > 100 {
			return nil, clientErr("ValidationException", "Limit %d is outside [1, 100]", *in.Limit)
		}
		limit = *in.Limit
	}
	var out struct {
		Streams                []streamSummary
		LastEvaluatedStreamArn *string `json:",omitempty"`
	}
	out.Streams = []streamSummary{}
	started := in.ExclusiveStartStreamArn == nil
	for _, s := range f.streams {
		if !started {
			started = s.arn == *in.ExclusiveStartStreamArn
			continue
		}
		if in.TableName != nil && s.table != *in.TableName {
			continue
		}
		if len(out.Streams) == limit {
			last := out.Streams[limit-1].StreamArn
			out.LastEvaluatedStreamArn = &last
			break
		}
		out.Streams = append(out.Streams, streamSummary{StreamArn: s.arn, StreamLabel: s.label, TableName: s.table})
	}
	return json.Marshal(out)
}

type describeStreamInput struct {
	StreamArn             string
	Limit                 *int
	ExclusiveStartShardId *string
	ShardFilter           *struct {
		Type    string
		ShardId string
	}
}

type shardJSON struct {
	ShardId             string
	ParentShardId       string `json:",omitempty"`
	SequenceNumberRange struct {
		StartingSequenceNumber string
		EndingSequenceNumber   string `json:",omitempty"`
	}
}

func (f *Fake) describeStream(in describeStreamInput) ([]byte, error) {
	s := f.byARN[in.StreamArn]
	if s == nil {
		return nil, clientErr("ResourceNotFoundException", "Requested resource not found: Stream: %s not found", in.StreamArn)
	}
	limit := maxShardsPerPage
	if in.Limit != nil {
		if *in.Limit < 1 || *in.Limit > maxShardsPerPage {
			return nil, clientErr("ValidationException", "Limit %d is outside [1, %d]", *in.Limit, maxShardsPerPage)
		}
		limit = *in.Limit
	}
	if in.ShardFilter != nil && in.ShardFilter.Type != "CHILD_SHARDS" {
		return nil, clientErr("ValidationException", "ShardFilter type %q", in.ShardFilter.Type)
	}
	var shards []shardJSON
	var last *string
	started := in.ExclusiveStartShardId == nil
	for _, sh := range s.shards {
		if !started {
			started = sh.id == *in.ExclusiveStartShardId
			continue
		}
		if sh.removed || in.ShardFilter != nil && sh.parent != in.ShardFilter.ShardId {
			continue
		}
		if len(shards) == limit {
			id := shards[limit-1].ShardId
			last = &id
			break
		}
		j := shardJSON{ShardId: sh.id, ParentShardId: sh.parent}
		j.SequenceNumberRange.StartingSequenceNumber = sh.startSeq
		if sh.closed {
			end := sh.startSeq
			if n := len(sh.records); n > 0 {
				end = sh.records[n-1].seq.String()
			}
			j.SequenceNumberRange.EndingSequenceNumber = end
		}
		shards = append(shards, j)
	}
	status := "ENABLED"
	allClosed := len(s.shards) > 0
	for _, sh := range s.shards {
		allClosed = allClosed && sh.closed
	}
	if allClosed {
		status = "DISABLED"
	}
	desc := map[string]any{
		"StreamArn":               s.arn,
		"StreamLabel":             s.label,
		"StreamStatus":            status,
		"StreamViewType":          s.viewType,
		"CreationRequestDateTime": float64(s.created.UnixMilli()) / 1000,
		"TableName":               s.table,
		"KeySchema":               []map[string]string{{"AttributeName": "pk", "KeyType": "HASH"}},
		"Shards":                  append([]shardJSON{}, shards...),
	}
	if last != nil {
		desc["LastEvaluatedShardId"] = *last
	}
	return json.Marshal(map[string]any{"StreamDescription": desc})
}

type getShardIteratorInput struct {
	StreamArn         string
	ShardId           string
	ShardIteratorType string
	SequenceNumber    *string
	Timestamp         *float64
}

func (f *Fake) getShardIterator(in getShardIteratorInput) ([]byte, error) {
	s := f.byARN[in.StreamArn]
	if s == nil {
		return nil, clientErr("ResourceNotFoundException", "Requested resource not found: Stream: %s not found", in.StreamArn)
	}
	sh := s.byID[in.ShardId]
	if sh == nil || sh.removed {
		return nil, clientErr("ResourceNotFoundException", "Requested resource not found: Shard: %s in Stream: %s not found", in.ShardId, in.StreamArn)
	}
	var pos int
	switch in.ShardIteratorType {
	case "TRIM_HORIZON":
		pos = sh.trimmed
	case "LATEST":
		pos = len(sh.records)
	case "AT_SEQUENCE_NUMBER", "AFTER_SEQUENCE_NUMBER":
		if in.SequenceNumber == nil {
			return nil, clientErr("ValidationException", "%s needs a SequenceNumber", in.ShardIteratorType)
		}
		seq, ok := new(big.Int).SetString(*in.SequenceNumber, 10)
		if !ok {
			return nil, clientErr("ValidationException", "Invalid SequenceNumber %q", *in.SequenceNumber)
		}
		i := sort.Search(len(sh.records), func(i int) bool { return sh.records[i].seq.Cmp(seq) >= 0 })
		if i == len(sh.records) || sh.records[i].seq.Cmp(seq) != 0 {
			return nil, clientErr("ValidationException", "Invalid SequenceNumber %s for shard %s", seq, sh.id)
		}
		if in.ShardIteratorType == "AFTER_SEQUENCE_NUMBER" {
			i++
		}
		if i < sh.trimmed {
			return nil, clientErr("TrimmedDataAccessException", "The operation attempted to read past the oldest stream record in a shard: sequence number %s was trimmed", seq)
		}
		pos = i
	case "AT_TIMESTAMP":
		if in.Timestamp == nil {
			return nil, clientErr("ValidationException", "AT_TIMESTAMP needs a Timestamp")
		}
		at := time.UnixMicro(int64(*in.Timestamp * 1e6))
		pos = len(sh.records)
		for i := sh.trimmed; i < len(sh.records); i++ {
			if !sh.records[i].at.Before(at) {
				pos = i
				break
			}
		}
	default:
		return nil, clientErr("ValidationException", "ShardIteratorType %q", in.ShardIteratorType)
	}
	return json.Marshal(map[string]string{"ShardIterator": f.newIterator(s, sh, pos)})
}

func (f *Fake) newIterator(s *stream, sh *shard, pos int) string {
	now := f.opts.Now()
	for id, it := range f.iters {
		if now.Sub(it.issued) > f.opts.IteratorTTL {
			delete(f.iters, id)
		}
	}
	id := s.arn + "|1|" + randomHex(24)
	f.iters[id] = &iterator{stream: s, shard: sh, pos: pos, issued: now}
	return id
}

type getRecordsInput struct {
	ShardIterator string
	Limit         *int
}

func (f *Fake) getRecords(in getRecordsInput) ([]byte, error) {
	limit := MaxRecordsPerPage
	if in.Limit != nil {
		if *in.Limit < 1 || *in.Limit > MaxRecordsPerPage {
			return nil, clientErr("ValidationException", "1 validation error detected: Value '%d' at 'limit' failed to satisfy constraint: Member must have value less than or equal to 1000", *in.Limit)
		}
		limit = *in.Limit
	}
	it := f.iters[in.ShardIterator]
	if it == nil {
		return nil, clientErr("ValidationException", "Invalid ShardIterator")
	}
	if f.opts.Now().Sub(it.issued) > f.opts.IteratorTTL {
		delete(f.iters, in.ShardIterator)
		return nil, clientErr("ExpiredIteratorException", "Iterator expired. The iterator was created at time %s", it.issued.UTC().Format(time.RFC1123))
	}
	sh := it.shard
	if sh.removed {
		return nil, clientErr("ResourceNotFoundException", "Requested resource not found: Shard: %s not found", sh.id)
	}
	if it.pos < sh.trimmed {
		return nil, clientErr("TrimmedDataAccessException", "The operation attempted to read past the oldest stream record in a shard")
	}
	var out struct {
		Records           []json.RawMessage
		NextShardIterator *string `json:",omitempty"`
	}
	out.Records = []json.RawMessage{}
	pos := it.pos
	if sh.emptyPages > 0 {
		sh.emptyPages--
	} else {
		size := 0
		for pos < len(sh.records) && len(out.Records) < limit {
			r := sh.records[pos]
			if len(out.Records) > 0 && size+r.size > MaxPageBytes {
				break
			}
			out.Records = append(out.Records, r.raw)
			size += r.size
			pos++
		}
	}
	if !(sh.closed && pos == len(sh.records)) {
		next := f.newIterator(it.stream, sh, pos)
		out.NextShardIterator = &next
	}
	return json.Marshal(out)
}
