package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"math"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	kvv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/kv/v1"
)

// maxQueryPage is the server's largest Query page.
const maxQueryPage = 10000

// QueryOptions selects and orders the items of a Query.
type QueryOptions struct {
	// Start and End select sort keys in [Start, End); an empty Start means
	// from the first sort key, an empty End to the last. Cannot be combined
	// with Prefix.
	Start, End []byte
	// Prefix selects sort keys that begin with these bytes.
	Prefix []byte
	// Limit is the most items the whole query yields. Default: 0, all.
	Limit int
	// PageSize is the most items fetched per call, 1 to 10000. Default: 0,
	// the router's default (1000).
	PageSize int
	// Reverse yields items in descending sort-key order.
	Reverse bool
	// Consistency is how many replicas must answer each page. Default: the
	// client's read consistency.
	Consistency kvv1.Consistency
}

func (q *QueryOptions) validate() error {
	var problems []string
	if len(q.Prefix) > 0 && (len(q.Start) > 0 || len(q.End) > 0) {
		problems = append(problems, "Prefix cannot be combined with Start or End")
	}
	if q.Limit < 0 {
		problems = append(problems, fmt.Sprintf("Limit %d: must be >= 0", q.Limit))
	}
	if q.PageSize < 0 || q.PageSize > maxQueryPage {
		problems = append(problems, fmt.Sprintf("PageSize %d: want 0 to %d", q.PageSize, maxQueryPage))
	}
	if _, ok := kvv1.Consistency_name[int32(q.Consistency)]; !ok {
		problems = append(problems, fmt.Sprintf("unknown consistency %d", q.Consistency))
	}
	if len(problems) > 0 {
		return status.Errorf(codes.InvalidArgument, "client: query: %s", strings.Join(problems, "; "))
	}
	return nil
}

// Query returns the items of one partition key in sort-key order (descending
// with q.Reverse), fetching page after page as the loop consumes them:
//
//	for item, err := range c.Query(ctx, "carts", userID, client.QueryOptions{Prefix: []byte("item#")}) {
//		if err != nil {
//			return err
//		}
//		...
//	}
//
// An error ends the sequence: it is yielded once, with a zero Item. Each
// page is a separate call with its own retries and, if ctx has no
// deadline, its own default timeout. Pages are read independently, so
// writes made during a long query may or may not be seen.
func (c *Client) Query(ctx context.Context, table string, pk []byte, q QueryOptions) iter.Seq2[Item, error] {
	return func(yield func(Item, error) bool) {
		if err := q.validate(); err != nil {
			yield(Item{}, err)
			return
		}
		req := &kvv1.QueryRequest{
			Table:        table,
			PartitionKey: pk,
			Reverse:      q.Reverse,
			Consistency:  q.Consistency,
		}
		if req.Consistency == kvv1.Consistency_CONSISTENCY_UNSPECIFIED {
			req.Consistency = c.opts.readConsistency
		}
		switch {
		case len(q.Prefix) > 0:
			req.Condition = &kvv1.QueryRequest_Prefix{Prefix: q.Prefix}
		case len(q.Start) > 0 || len(q.End) > 0:
			req.Condition = &kvv1.QueryRequest_Range{Range: &kvv1.SortKeyRange{Start: q.Start, End: q.End}}
		}
		remaining := q.Limit
		for {
			page := q.PageSize
			if q.Limit > 0 {
				if page == 0 {
					page = defaultQueryPageLimit
				}
				page = min(page, remaining)
			}
			req.Limit = uint32(page)
			resp, err := c.kv.Query(ctx, req)
			if err != nil {
				yield(Item{}, fmt.Errorf("client: query table %q partition key %s: %w", table, shortBytes(pk), err))
				return
			}
			for _, pi := range resp.GetItems() {
				it := fromProtoItem(pi)
				if it.Table == "" {
					it.Table = table
				}
				if it.PartitionKey == nil {
					it.PartitionKey = pk
				}
				if !yield(it, nil) {
					return
				}
				if q.Limit > 0 {
					if remaining--; remaining == 0 {
						return
					}
				}
			}
			next := resp.GetNextPageToken()
			if len(next) == 0 {
				return
			}
			if bytes.Equal(next, req.PageToken) && len(resp.GetItems()) == 0 {
				yield(Item{}, status.Errorf(codes.Internal, "client: query table %q partition key %s: router returned an empty page with an unchanged page token", table, shortBytes(pk)))
				return
			}
			req.PageToken = next
		}
	}
}

// Scan returns every live item of one segment of a table, in no particular
// order across partitions; segment 0 of 1 (or of 0) is the whole table.
// Run the segments of a table in parallel to read it faster.
//
// An error ends the sequence: it is yielded once, with a zero Item. A stream
// interrupted by Unavailable is reopened from its last page token after a
// backoff, within the client's retry budget (reset whenever the stream makes
// progress), so no item is yielded twice. Scan has no default timeout:
// bound it with ctx if needed.
func (c *Client) Scan(ctx context.Context, table string, segment, totalSegments int) iter.Seq2[Item, error] {
	return func(yield func(Item, error) bool) {
		if totalSegments < 0 || totalSegments > math.MaxUint32 || segment < 0 || segment >= max(totalSegments, 1) {
			yield(Item{}, status.Errorf(codes.InvalidArgument, "client: scan table %q: segment %d of %d: want 0 <= segment < total segments", table, segment, totalSegments))
			return
		}
		ctx, cancel := context.WithCancel(ctx)
		defer cancel() // ends the stream when the loop breaks early
		req := &kvv1.ScanRequest{Table: table, Segment: uint32(segment), TotalSegments: uint32(totalSegments)}
		retries := 0
		for {
			err := c.scanStream(ctx, req, yield, &retries)
			if err == nil {
				return
			}
			if errors.Is(err, errStop) {
				return
			}
			if !retryable(err) || retries == c.opts.maxRetries {
				if retries > 0 {
					err = fmt.Errorf("gave up after %d attempts: %w", retries+1, err)
				}
				yield(Item{}, fmt.Errorf("client: scan table %q segment %d of %d: %w", table, segment, totalSegments, err))
				return
			}
			retries++
			if werr := c.sleep(ctx, retries); werr != nil {
				yield(Item{}, fmt.Errorf("client: scan table %q segment %d of %d: %w", table, segment, totalSegments, retryCanceled(werr, err)))
				return
			}
		}
	}
}

// errStop reports that the consumer of an iterator stopped early.
var errStop = errors.New("client: iteration stopped")

// scanStream reads one Scan stream to its end, advancing req.PageToken past
// every batch it yields. It returns nil at the end of the scan.
func (c *Client) scanStream(ctx context.Context, req *kvv1.ScanRequest, yield func(Item, error) bool, retries *int) error {
	stream, err := c.kv.Scan(ctx, req)
	if err != nil {
		return err
	}
	for {
		resp, err := stream.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		*retries = 0
		for _, pi := range resp.GetItems() {
			it := fromProtoItem(pi)
			if it.Table == "" {
				it.Table = req.Table
			}
			if !yield(it, nil) {
				return errStop
			}
		}
		tok := resp.GetNextPageToken()
		if len(tok) == 0 {
			tok = resp.GetPageToken() //nolint:staticcheck // routers before next_page_token
		}
		if len(tok) > 0 {
			req.PageToken = tok
		}
	}
}

func shortBytes(b []byte) string {
	const maxKey = 64
	if len(b) > maxKey {
		return fmt.Sprintf("%q...(%d bytes)", b[:maxKey], len(b))
	}
	return fmt.Sprintf("%q", b)
}
