package client

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	kvv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/kv/v1"
)

// TableOption configures a table created by CreateTable.
type TableOption func(*kvv1.CreateTableRequest)

// WithDefaultTTL makes writes that carry no expiry expire d after they are
// written. Default: never.
func WithDefaultTTL(d time.Duration) TableOption {
	return func(r *kvv1.CreateTableRequest) { r.DefaultTtl = durationpb.New(d) }
}

// WithKeySchema records the DynamoDB key schema of a table holding DynamoDB
// items. Default: none.
func WithKeySchema(s *kvv1.KeySchema) TableOption {
	return func(r *kvv1.CreateTableRequest) { r.KeySchema = s }
}

// CreateTable creates a table. It fails with AlreadyExists if the name is
// taken; after a retried ambiguous failure that can mean the first attempt
// created it.
func (c *Client) CreateTable(ctx context.Context, name string, opts ...TableOption) (*kvv1.Table, error) {
	req := &kvv1.CreateTableRequest{Name: name}
	for _, opt := range opts {
		opt(req)
	}
	resp, err := c.admin.CreateTable(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("client: create table %q: %w", name, err)
	}
	return resp.GetTable(), nil
}

// DeleteTable deletes a table and makes its items unreachable. It fails with
// NotFound if there is no such table.
func (c *Client) DeleteTable(ctx context.Context, name string) (*kvv1.Table, error) {
	resp, err := c.admin.DeleteTable(ctx, &kvv1.DeleteTableRequest{Name: name})
	if err != nil {
		return nil, fmt.Errorf("client: delete table %q: %w", name, err)
	}
	return resp.GetTable(), nil
}

// ListTables returns every table in name order.
func (c *Client) ListTables(ctx context.Context) ([]*kvv1.Table, error) {
	resp, err := c.admin.ListTables(ctx, &kvv1.ListTablesRequest{})
	if err != nil {
		return nil, fmt.Errorf("client: list tables: %w", err)
	}
	return resp.GetTables(), nil
}

// DescribeTable returns one table, or NotFound.
func (c *Client) DescribeTable(ctx context.Context, name string) (*kvv1.Table, error) {
	resp, err := c.admin.DescribeTable(ctx, &kvv1.DescribeTableRequest{Name: name})
	if err != nil {
		return nil, fmt.Errorf("client: describe table %q: %w", name, err)
	}
	return resp.GetTable(), nil
}

// UpdateOption is one change UpdateTable makes; settings no option names
// keep their value.
type UpdateOption func(*kvv1.UpdateTableRequest)

// WithTTLAttribute makes attr the attribute holding each item's expiry in
// Unix epoch seconds, for items written through the DynamoDB endpoint; ""
// turns TTL off.
func WithTTLAttribute(attr string) UpdateOption {
	return func(r *kvv1.UpdateTableRequest) { r.TtlAttribute = &attr }
}

// WithMaxItemBytes sets the DynamoDB endpoint's item size limit (0: 400 KB).
func WithMaxItemBytes(n uint64) UpdateOption {
	return func(r *kvv1.UpdateTableRequest) { r.MaxItemBytes = &n }
}

// WithWriteIsolation sets how the DynamoDB endpoint serialises writes of
// one item.
func WithWriteIsolation(w kvv1.WriteIsolation) UpdateOption {
	return func(r *kvv1.UpdateTableRequest) { r.WriteIsolation = w }
}

// UpdateTable changes a table's settings and returns the table after the
// change. It fails with NotFound if there is no such table. Repeating it
// is harmless: it sets values, it does not add to them.
func (c *Client) UpdateTable(ctx context.Context, name string, opts ...UpdateOption) (*kvv1.Table, error) {
	req := &kvv1.UpdateTableRequest{Name: name}
	for _, opt := range opts {
		opt(req)
	}
	resp, err := c.admin.UpdateTable(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("client: update table %q: %w", name, err)
	}
	return resp.GetTable(), nil
}

// ClusterStatus reports the cluster's nodes, their state and placement as
// the answering router sees them.
func (c *Client) ClusterStatus(ctx context.Context) (*kvv1.ClusterStatusResponse, error) {
	resp, err := c.admin.ClusterStatus(ctx, &kvv1.ClusterStatusRequest{})
	if err != nil {
		return nil, fmt.Errorf("client: cluster status: %w", err)
	}
	return resp, nil
}
