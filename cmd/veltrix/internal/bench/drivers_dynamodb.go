package bench

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	dtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/veltrixdb/veltrix/pkg/client"
	"github.com/veltrixdb/veltrix/pkg/etcdembed"
	kvv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/kv/v1"
)

// The DynamoDB workloads: the single-key workloads C and PUT sent as
// GetItem and PutItem through a DynamoDB endpoint with the AWS SDK for Go
// v2. On a Veltrix peer they run on the same cluster as the gRPC
// workloads, right after them, on a table with the endpoint's default
// write isolation (always_use_lwt: every write takes the item's lock);
// PUTITEM_ONLYRMW then switches the table to only_rmw_uses_lwt, where a
// blind PutItem takes no lock. The dynalite peer runs GETITEM and PUTITEM.
var DynamoDBWorkloads = []Workload{
	{Name: "GETITEM", Description: "GetItem (DynamoDB endpoint)", Read: 1},
	{Name: "PUTITEM", Description: "PutItem (DynamoDB endpoint)", Update: 1},
	{Name: PutItemOnlyRMW, Description: "PutItem, only_rmw_uses_lwt (DynamoDB endpoint)", Update: 1},
}

// PutItemOnlyRMW is the PutItem workload on a table whose write isolation
// is only_rmw_uses_lwt (Veltrix peers only).
const PutItemOnlyRMW = "PUTITEM_ONLYRMW"

// dynamoDBWorkload finds a DynamoDB workload, case-insensitively.
func dynamoDBWorkload(name string) (Workload, bool) {
	for _, w := range DynamoDBWorkloads {
		if strings.EqualFold(w.Name, name) {
			return w, true
		}
	}
	return Workload{}, false
}

func isDynamoDBWorkload(name string) bool {
	_, ok := dynamoDBWorkload(name)
	return ok
}

// onlyRMW sets the bench table's write isolation to only_rmw_uses_lwt.
func (d *veltrixDriver) onlyRMW(ctx context.Context) error {
	_, err := d.admin.UpdateTable(ctx, dynamoTable, client.WithWriteIsolation(kvv1.WriteIsolation_WRITE_ISOLATION_ONLY_RMW_USES_LWT))
	if err != nil {
		return fmt.Errorf("bench: set %s's write isolation: %w", dynamoTable, err)
	}
	return nil
}

// dynamo connects a dynamoDriver to the cluster's DynamoDB endpoint.
func (d *veltrixDriver) dynamo(ctx context.Context, conns int) (*dynamoDriver, error) {
	addr := d.cluster.DynamoDBAddr()
	if addr == "" {
		return nil, errors.New("bench: the cluster's router serves no DynamoDB endpoint")
	}
	if d.sec == nil {
		return newDynamoDriver(ctx, dynamoEndpoint{URL: "http://" + addr}, conns)
	}
	// Over HTTPS, signed with the bench key (SigV4 verified); bench-admin's
	// key creates the table.
	return newDynamoDriver(ctx, dynamoEndpoint{
		URL: "https://" + addr, TLS: d.sec.caOnly,
		Creds: credentials.NewStaticCredentialsProvider(d.sec.keyID, d.sec.secret, ""),
		Setup: credentials.NewStaticCredentialsProvider(d.sec.adminKeyID, d.sec.adminSecret, ""),
	}, conns)
}

// dynamoEndpoint is where and how a dynamoDriver connects.
type dynamoEndpoint struct {
	// URL is http://host:port or https://host:port.
	URL string
	// TLS verifies an https endpoint. Default: the system roots.
	TLS *tls.Config
	// Creds sign the workloads' requests. Default: a made-up key (an
	// endpoint that checks no signature).
	Creds aws.CredentialsProvider
	// Setup signs CreateTable and DescribeTable. Default: Creds.
	Setup aws.CredentialsProvider
}

// dynamoTable is the table the DynamoDB workloads use: a binary hash key
// pk (the workload's key) and a binary attribute v (the value).
const dynamoTable = "bench_ddb"

// dynamoBatchWrite is BatchWriteItem's limit of writes per call.
const dynamoBatchWrite = 25

// DynaliteDirEnv names a folder holding node_modules/dynalite; by default
// the bench looks for e2e/peers/node_modules/dynalite (npm ci --prefix
// e2e/peers) in the working directory and its parents.
const DynaliteDirEnv = "VELTRIX_PEERS_DIR"

// dynamoDriver reads and writes items through a DynamoDB endpoint.
type dynamoDriver struct {
	cli   *dynamodb.Client
	tr    *http.Transport
	close func() error // stops what the driver owns; nil: nothing
	proc  *exec.Cmd    // the dynalite process, for ServerCPU
}

// newDynamoDriver connects to ep, with up to conns connections, and
// creates the bench table if it does not exist.
func newDynamoDriver(ctx context.Context, ep dynamoEndpoint, conns int) (*dynamoDriver, error) {
	endpoint := ep.URL
	if ep.Creds == nil {
		ep.Creds = credentials.NewStaticCredentialsProvider("bench", "bench", "")
	}
	if ep.Setup == nil {
		ep.Setup = ep.Creds
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns, tr.MaxIdleConnsPerHost = conns*2, conns*2
	tr.TLSClientConfig = ep.TLS
	// HTTP/1.1 over TLS too (no ALPN h2): the same protocol as over
	// plaintext, so a secure peer's cost is TLS and SigV4, not HTTP/2's.
	tr.ForceAttemptHTTP2 = false
	tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	opts := dynamodb.Options{
		Region: "us-east-1", BaseEndpoint: aws.String(endpoint), HTTPClient: &http.Client{Transport: tr},
		Credentials: ep.Creds,
		// Every error is counted by the runner, not hidden by a retry.
		RetryMaxAttempts: 1,
	}
	d := &dynamoDriver{tr: tr, cli: dynamodb.New(opts)}
	opts.Credentials = ep.Setup
	setup := dynamodb.New(opts)
	_, err := setup.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName:            aws.String(dynamoTable),
		KeySchema:            []dtypes.KeySchemaElement{{AttributeName: aws.String("pk"), KeyType: dtypes.KeyTypeHash}},
		AttributeDefinitions: []dtypes.AttributeDefinition{{AttributeName: aws.String("pk"), AttributeType: dtypes.ScalarAttributeTypeB}},
		BillingMode:          dtypes.BillingModePayPerRequest,
	})
	var inUse *dtypes.ResourceInUseException
	if err != nil && !errors.As(err, &inUse) {
		return nil, fmt.Errorf("bench: CreateTable %s at %s: %w", dynamoTable, endpoint, err)
	}
	// Wait until the table is ACTIVE and takes writes.
	if err := waitUntil(ctx, 30*time.Second, func() error {
		out, err := setup.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(dynamoTable)})
		if err != nil {
			return err
		}
		if out.Table.TableStatus != dtypes.TableStatusActive {
			return fmt.Errorf("table %s is %s", dynamoTable, out.Table.TableStatus)
		}
		return d.Put(ctx, []byte("bench-probe"), []byte("x"))
	}); err != nil {
		return nil, fmt.Errorf("bench: DynamoDB endpoint %s does not take writes: %w", endpoint, err)
	}
	return d, nil
}

func dynamoKey(key []byte) map[string]dtypes.AttributeValue {
	return map[string]dtypes.AttributeValue{"pk": &dtypes.AttributeValueMemberB{Value: key}}
}

func (d *dynamoDriver) Get(ctx context.Context, key []byte) (bool, error) {
	out, err := d.cli.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(dynamoTable), Key: dynamoKey(key)})
	if err != nil {
		return false, err
	}
	return len(out.Item) > 0, nil
}

func (d *dynamoDriver) Put(ctx context.Context, key, value []byte) error {
	// The SDK serialises the request before PutItem returns, so the
	// slices are not kept.
	_, err := d.cli.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(dynamoTable), Item: map[string]dtypes.AttributeValue{
		"pk": &dtypes.AttributeValueMemberB{Value: key}, "v": &dtypes.AttributeValueMemberB{Value: value}}})
	return err
}

// BatchGet is one BatchGetItem (its keys deduplicated: DynamoDB refuses
// duplicates), then again for the keys it left unprocessed.
func (d *dynamoDriver) BatchGet(ctx context.Context, keys [][]byte) (int, error) {
	count := map[string]int{}
	var uniq []map[string]dtypes.AttributeValue
	for _, k := range keys {
		if count[string(k)] == 0 {
			uniq = append(uniq, dynamoKey(k))
		}
		count[string(k)]++
	}
	found := 0
	req := map[string]dtypes.KeysAndAttributes{dynamoTable: {Keys: uniq}}
	for len(req) > 0 {
		out, err := d.cli.BatchGetItem(ctx, &dynamodb.BatchGetItemInput{RequestItems: req})
		if err != nil {
			return found, err
		}
		for _, it := range out.Responses[dynamoTable] {
			if b, ok := it["pk"].(*dtypes.AttributeValueMemberB); ok {
				found += count[string(b.Value)]
			}
		}
		req = out.UnprocessedKeys
	}
	return found, nil
}

// PutBatch writes with BatchWriteItem, 25 items a call, until nothing is
// left unprocessed.
func (d *dynamoDriver) PutBatch(ctx context.Context, keys, values [][]byte) error {
	for lo := 0; lo < len(keys); lo += dynamoBatchWrite {
		hi := min(lo+dynamoBatchWrite, len(keys))
		byKey := map[string]int{}
		var reqs []dtypes.WriteRequest
		for i := lo; i < hi; i++ {
			w := dtypes.WriteRequest{PutRequest: &dtypes.PutRequest{Item: map[string]dtypes.AttributeValue{
				"pk": &dtypes.AttributeValueMemberB{Value: keys[i]}, "v": &dtypes.AttributeValueMemberB{Value: values[i]}}}}
			if j, ok := byKey[string(keys[i])]; ok {
				reqs[j] = w // the last write of a key wins, as in a sequence of puts
				continue
			}
			byKey[string(keys[i])] = len(reqs)
			reqs = append(reqs, w)
		}
		req := map[string][]dtypes.WriteRequest{dynamoTable: reqs}
		for len(req) > 0 {
			out, err := d.cli.BatchWriteItem(ctx, &dynamodb.BatchWriteItemInput{RequestItems: req})
			if err != nil {
				return err
			}
			req = out.UnprocessedItems
		}
	}
	return nil
}

func (d *dynamoDriver) Close() error {
	d.tr.CloseIdleConnections()
	if d.close != nil {
		return d.close()
	}
	return nil
}

// ServerCPU is the dynalite process's CPU time (0 for an endpoint inside
// the bench process).
func (d *dynamoDriver) ServerCPU() time.Duration {
	if d.proc == nil || d.proc.Process == nil {
		return 0
	}
	return pidCPU(d.proc.Process.Pid)
}

// dynaliteCLI finds dynalite's cli.js: under $VELTRIX_PEERS_DIR, or
// e2e/peers in the working directory or one of its parents.
func dynaliteCLI() (string, error) {
	rel := filepath.Join("node_modules", "dynalite", "cli.js")
	if d := os.Getenv(DynaliteDirEnv); d != "" {
		p := filepath.Join(d, rel)
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("%w: dynalite is not installed in %s (%s is set)", ErrMissing, d, DynaliteDirEnv)
		}
		return p, nil
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for dir := wd; ; dir = filepath.Dir(dir) {
		p := filepath.Join(dir, "e2e", "peers", rel)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
		if filepath.Dir(dir) == dir {
			return "", fmt.Errorf("%w: dynalite not found in e2e/peers/node_modules above %s (npm ci --prefix e2e/peers, or set %s)", ErrMissing, wd, DynaliteDirEnv)
		}
	}
}

// startDynalite starts dynalite (Node.js, the npm DynamoDB emulator the e2e
// tests use) on 127.0.0.1 and a free port with its data in dir, and
// connects a dynamoDriver to it. A missing node or dynalite is ErrMissing.
func startDynalite(ctx context.Context, dir string, conns int) (*dynamoDriver, error) {
	node, err := exec.LookPath("node")
	if err != nil {
		return nil, fmt.Errorf("%w: node not found (apt-get install -y nodejs npm)", ErrMissing)
	}
	cli, err := dynaliteCLI()
	if err != nil {
		return nil, err
	}
	port, err := etcdembed.FreePort()
	if err != nil {
		return nil, err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	out := &syncBuffer{}
	cmd := exec.Command(node, cli, "--host", "127.0.0.1", "--port", strconv.Itoa(port), "--path", dir,
		"--createTableMs", "50", "--deleteTableMs", "50", "--updateTableMs", "50")
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("bench: start dynalite: %w", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	stop := func() error {
		select {
		case <-done:
			return nil
		default:
		}
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
			return nil
		case <-time.After(5 * time.Second):
		}
		_ = cmd.Process.Kill()
		<-done
		return nil
	}
	if err := waitUntil(ctx, 30*time.Second, func() error {
		select {
		case <-done:
			return fmt.Errorf("dynalite exited at start: %s", tail(out.Bytes()))
		default:
		}
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
		}
		return err
	}); err != nil {
		return nil, errors.Join(fmt.Errorf("bench: dynalite not accepting connections on %s: %w", addr, err), stop())
	}
	d, err := newDynamoDriver(ctx, dynamoEndpoint{URL: "http://" + addr}, conns)
	if err != nil {
		return nil, errors.Join(err, stop())
	}
	d.close, d.proc = stop, cmd
	return d, nil
}
