package e2e

// End-to-end tests of the real binaries (e2e/framework): public API access
// with the tools a user has, grpcurl and a Node.js client generated from
// proto/. Names start with TestBin: go test -run TestBin ./e2e.

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/veltrixdb/veltrix/e2e/framework"
	"github.com/veltrixdb/veltrix/pkg/client"
	kvv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/kv/v1"
)

// binTest marks an end-to-end test of the real binaries: it builds and
// spawns processes, so -short skips it.
func binTest(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("e2e: spawns the real binaries; skipped with -short")
	}
}

// cmdResult is what a command run by runBin printed and how it exited.
type cmdResult struct {
	stdout, stderr string
	code           int
}

// runBin runs a command to completion within timeout and returns its
// output and exit code; a command that cannot start or times out fails the
// test.
func runBin(t *testing.T, timeout time.Duration, dir, name string, args ...string) cmdResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	res := cmdResult{stdout: stdout.String(), stderr: stderr.String()}
	var exit *exec.ExitError
	switch {
	case ctx.Err() != nil:
		t.Fatalf("%s %s: no exit within %s\nstdout:\n%s\nstderr:\n%s", filepath.Base(name), strings.Join(args, " "), timeout, res.stdout, res.stderr)
	case errors.As(err, &exit):
		res.code = exit.ExitCode()
	case err != nil:
		t.Fatalf("%s %s: %v", name, strings.Join(args, " "), err)
	}
	return res
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// TestBinGrpcurl uses the public API the way the README tells a person to:
// grpcurl with server reflection, JSON requests with base64 byte fields.
func TestBinGrpcurl(t *testing.T) {
	binTest(t)
	c := framework.Start(t, framework.Options{Nodes: 1})
	grpcurl := framework.Grpcurl(t)
	addr := c.RouterAddrs()[0]
	call := func(data, method string) cmdResult {
		t.Helper()
		args := []string{"-plaintext", "-max-time", "20"}
		if data != "" {
			args = append(args, "-d", data)
		}
		return runBin(t, 30*time.Second, "", grpcurl, append(args, addr, method)...)
	}
	ok := func(data, method string, out any) {
		t.Helper()
		res := call(data, method)
		if res.code != 0 {
			t.Fatalf("grpcurl %s %s: exit %d\n%s%s", method, data, res.code, res.stdout, res.stderr)
		}
		if err := json.Unmarshal([]byte(res.stdout), out); err != nil {
			t.Fatalf("grpcurl %s: output is not JSON: %v\n%s", method, err, res.stdout)
		}
	}

	t.Run("list", func(t *testing.T) {
		res := runBin(t, 30*time.Second, "", grpcurl, "-plaintext", addr, "list")
		if res.code != 0 {
			t.Fatalf("grpcurl list: exit %d: %s", res.code, res.stderr)
		}
		services := strings.Fields(res.stdout)
		for _, want := range []string{"veltrix.kv.v1.KVService", "veltrix.kv.v1.AdminService", "grpc.health.v1.Health"} {
			if !strings.Contains(" "+strings.Join(services, " ")+" ", " "+want+" ") {
				t.Errorf("grpcurl list = %q; missing %s", services, want)
			}
		}
	})
	t.Run("describe", func(t *testing.T) {
		res := runBin(t, 30*time.Second, "", grpcurl, "-plaintext", addr, "describe", "veltrix.kv.v1.KVService")
		if res.code != 0 {
			t.Fatalf("grpcurl describe: exit %d: %s", res.code, res.stderr)
		}
		for _, want := range []string{"service KVService", "rpc Put ( .veltrix.kv.v1.PutRequest ) returns ( .veltrix.kv.v1.PutResponse )", "rpc Query", "rpc Scan ( .veltrix.kv.v1.ScanRequest ) returns ( stream .veltrix.kv.v1.ScanResponse )"} {
			if !strings.Contains(res.stdout, want) {
				t.Errorf("describe KVService lacks %q:\n%s", want, res.stdout)
			}
		}
		res = runBin(t, 30*time.Second, "", grpcurl, "-plaintext", addr, "describe", "veltrix.kv.v1.Key")
		if res.code != 0 || !strings.Contains(res.stdout, "bytes partition_key = 2;") {
			t.Errorf("describe veltrix.kv.v1.Key: exit %d\n%s%s", res.code, res.stdout, res.stderr)
		}
	})

	t.Run("metrics", func(t *testing.T) {
		for _, p := range []*framework.Process{c.Routers[0], c.Nodes[0]} {
			url := fmt.Sprintf("http://127.0.0.1:%d/metrics", p.Port("metrics-addr"))
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				cancel()
				t.Fatalf("%s: GET %s: %v", p.Name, url, err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			cancel()
			if err != nil || resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "\nveltrix_") {
				t.Errorf("%s: GET %s: %s, %d bytes, err %v; want 200 with veltrix_* metrics", p.Name, url, resp.Status, len(body), err)
			}
		}
	})

	var health struct{ Status string }
	ok("", "grpc.health.v1.Health/Check", &health)
	if health.Status != "SERVING" {
		t.Errorf("Health/Check status = %q; want SERVING", health.Status)
	}

	var created struct {
		Table struct {
			Name string
			ID   string `json:"id"`
		}
	}
	ok(`{"name": "grpcurl_users"}`, "veltrix.kv.v1.AdminService/CreateTable", &created)
	if created.Table.Name != "grpcurl_users" || created.Table.ID == "" {
		t.Fatalf("CreateTable answered %+v", created)
	}

	// Three items of one partition key, written out of order.
	versions := map[string]string{}
	for _, sk := range []string{"b", "c", "a"} {
		var put struct{ Version string }
		ok(`{"key": {"table": "grpcurl_users", "partitionKey": "`+b64("user-1")+`", "sortKey": "`+b64(sk)+`"}, "value": "`+b64("value-"+sk)+`"}`,
			"veltrix.kv.v1.KVService/Put", &put)
		if put.Version == "" || put.Version == "0" {
			t.Fatalf("Put %s: version %q", sk, put.Version)
		}
		versions[sk] = put.Version
	}

	var got struct {
		Found   bool
		Value   string
		Version string
	}
	ok(`{"key": {"table": "grpcurl_users", "partitionKey": "`+b64("user-1")+`", "sortKey": "`+b64("b")+`"}}`, "veltrix.kv.v1.KVService/Get", &got)
	if !got.Found || got.Value != b64("value-b") || got.Version != versions["b"] {
		t.Errorf("Get user-1/b = %+v; want found, value %q, version %s", got, b64("value-b"), versions["b"])
	}
	var missing struct{ Found bool }
	ok(`{"key": {"table": "grpcurl_users", "partitionKey": "`+b64("user-2")+`"}}`, "veltrix.kv.v1.KVService/Get", &missing)
	if missing.Found {
		t.Errorf("Get of a missing item: found")
	}

	type item struct {
		Key struct {
			PartitionKey string
			SortKey      string
		}
		Value   string
		Version string
	}
	var q struct {
		Items         []item
		NextPageToken string
	}
	ok(`{"table": "grpcurl_users", "partitionKey": "`+b64("user-1")+`"}`, "veltrix.kv.v1.KVService/Query", &q)
	if len(q.Items) != 3 {
		t.Fatalf("Query user-1: %d items; want 3: %+v", len(q.Items), q.Items)
	}
	for i, sk := range []string{"a", "b", "c"} {
		it := q.Items[i]
		if it.Key.PartitionKey != b64("user-1") || it.Key.SortKey != b64(sk) || it.Value != b64("value-"+sk) || it.Version != versions[sk] {
			t.Errorf("Query item %d = %+v; want user-1/%s value-%s version %s", i, it, sk, sk, versions[sk])
		}
	}
	q.Items = nil
	ok(`{"table": "grpcurl_users", "partitionKey": "`+b64("user-1")+`", "reverse": true, "limit": 1}`, "veltrix.kv.v1.KVService/Query", &q)
	if len(q.Items) != 1 || q.Items[0].Key.SortKey != b64("c") || q.NextPageToken == "" {
		t.Errorf("reverse Query limit 1 = %+v; want c and a next page token", q)
	}

	// A gRPC error is grpcurl's exit code 64 + the status code.
	res := call(`{"key": {"table": "no_such_table", "partitionKey": "`+b64("x")+`"}}`, "veltrix.kv.v1.KVService/Get")
	if res.code != 64+5 || !strings.Contains(res.stderr, "NotFound") {
		t.Errorf("Get on an unknown table: exit %d (want 69, NotFound)\n%s", res.code, res.stderr)
	}

	// What grpcurl wrote, the Go client reads.
	cl := c.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	it, found, err := cl.Get(ctx, "grpcurl_users", []byte("user-1"), []byte("a"), client.WithConsistency(kvv1.Consistency_CONSISTENCY_ALL))
	if err != nil || !found || string(it.Value) != "value-a" {
		t.Errorf("Go client Get user-1/a = %q, %v, %v; want value-a", it.Value, found, err)
	}
}

// nodeClient returns node and the directory of e2e/node/client.js, or
// skips the test (fails it in CI) when node or its packages are missing.
func nodeClient(t *testing.T) (nodeBin, nodeDir string) {
	t.Helper()
	nodeDir = filepath.Join(framework.RepoRoot(t), "e2e", "node")
	install := "npm ci --prefix e2e/node --no-audit --no-fund --ignore-scripts"
	missing := func(what string) {
		t.Helper()
		if ciRun() {
			t.Fatalf("CI=%s and %s: install it before the e2e tests (%s)", os.Getenv("CI"), what, install)
		}
		t.Skipf("%s; run `%s` to enable this test (in CI, with CI=true, this is a failure)", what, install)
	}
	nodeBin, err := exec.LookPath("node")
	if err != nil {
		missing("node is not on PATH")
	}
	for _, dep := range []string{"@grpc/grpc-js", "@grpc/proto-loader"} {
		if _, err := os.Stat(filepath.Join(nodeDir, "node_modules", dep, "package.json")); err != nil {
			missing("e2e/node/node_modules lacks " + dep)
		}
	}
	return nodeBin, nodeDir
}

// ciRun reports whether the tests run in CI (CI=true, as CI systems set
// it), where a missing test dependency is a failure, not a skip.
func ciRun() bool {
	v := strings.ToLower(os.Getenv("CI"))
	return v != "" && v != "false" && v != "0"
}

// TestBinNodeClient drives the router from Node.js: e2e/node/client.js
// loads proto/ with @grpc/proto-loader and puts, gets and queries; this test
// checks what it prints and reads its writes back with the Go client.
func TestBinNodeClient(t *testing.T) {
	binTest(t)
	root := framework.RepoRoot(t)
	nodeBin, nodeDir := nodeClient(t)

	c := framework.Start(t, framework.Options{Nodes: 2, RF: 2})
	cl := c.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := cl.CreateTable(ctx, "node_items"); err != nil {
		t.Fatal(err)
	}
	goValue := []byte{0, 1, 2, 0xfe, 0xff, '\n', 'g', 'o'}
	goPut, err := cl.Put(ctx, "node_items", []byte("from-go"), []byte("sk-1"), goValue)
	if err != nil {
		t.Fatal(err)
	}
	goVersion := goPut.Version

	res := runBin(t, 60*time.Second, nodeDir, nodeBin, "client.js",
		"--addr", c.RouterAddrs()[0], "--proto-dir", filepath.Join(root, "proto"),
		"--table", "node_items", "--pk", "from-node", "--go-pk", "from-go", "--go-sk", "sk-1")
	if res.code != 0 {
		t.Fatalf("node client.js: exit %d\nstdout:\n%s\nstderr:\n%s", res.code, res.stdout, res.stderr)
	}
	type nodeItem struct {
		SK      string `json:"sk"`
		Value   string `json:"value_b64"`
		Version string `json:"version"`
	}
	type nodeGet struct {
		Found   bool   `json:"found"`
		Value   string `json:"value_b64"`
		Version string `json:"version"`
	}
	var out struct {
		Puts []struct {
			SK      string `json:"sk"`
			Version string `json:"version"`
		} `json:"puts"`
		Get                 nodeGet               `json:"get"`
		Missing             nodeGet               `json:"missing"`
		Query               []nodeItem            `json:"query"`
		QueryReverse        []nodeItem            `json:"query_reverse"`
		QueryReverseHasNext bool                  `json:"query_reverse_has_next"`
		QueryPrefix         []nodeItem            `json:"query_prefix"`
		GoItem              nodeGet               `json:"go_item"`
		UnknownTable        struct{ Code string } `json:"unknown_table"`
	}
	if err := json.Unmarshal([]byte(res.stdout), &out); err != nil {
		t.Fatalf("node client.js printed no JSON: %v\n%s\nstderr:\n%s", err, res.stdout, res.stderr)
	}
	t.Logf("node client.js: %s", strings.TrimSpace(res.stdout))

	values := map[string]string{
		"a": b64("node-value-a"),
		"b": base64.StdEncoding.EncodeToString([]byte{0x00, 0xff, 0x10, 0x80, 0x7f, 0x0a}),
		"c": b64("node-value-c"),
	}
	versions := map[string]string{}
	for _, p := range out.Puts {
		versions[p.SK] = p.Version
	}
	if len(versions) != 3 {
		t.Fatalf("node puts = %+v; want a, b, c", out.Puts)
	}
	if !out.Get.Found || out.Get.Value != values["b"] || out.Get.Version != versions["b"] {
		t.Errorf("node Get b = %+v; want value %s version %s", out.Get, values["b"], versions["b"])
	}
	if out.Missing.Found {
		t.Errorf("node Get of a missing item: found")
	}
	checkItems := func(what string, got []nodeItem, sks ...string) {
		t.Helper()
		if len(got) != len(sks) {
			t.Errorf("node %s: %d items %+v; want %v", what, len(got), got, sks)
			return
		}
		for i, sk := range sks {
			if got[i].SK != sk || got[i].Value != values[sk] || got[i].Version != versions[sk] {
				t.Errorf("node %s item %d = %+v; want %s value %s version %s", what, i, got[i], sk, values[sk], versions[sk])
			}
		}
	}
	checkItems("Query", out.Query, "a", "b", "c")
	checkItems("Query reverse limit 2", out.QueryReverse, "c", "b")
	if !out.QueryReverseHasNext {
		t.Errorf("node Query reverse limit 2: no next page token")
	}
	checkItems("Query prefix c", out.QueryPrefix, "c")
	if want := base64.StdEncoding.EncodeToString(goValue); !out.GoItem.Found || out.GoItem.Value != want || out.GoItem.Version != fmtUint(goVersion) {
		t.Errorf("node Get of the Go item = %+v; want value %s version %d", out.GoItem, want, goVersion)
	}
	if out.UnknownTable.Code != "NOT_FOUND" {
		t.Errorf("node Get on an unknown table: code %q; want NOT_FOUND", out.UnknownTable.Code)
	}

	// What Node wrote, Go reads, at ALL.
	for sk, want := range values {
		it, found, err := cl.Get(ctx, "node_items", []byte("from-node"), []byte(sk), client.WithConsistency(kvv1.Consistency_CONSISTENCY_ALL))
		if err != nil || !found || base64.StdEncoding.EncodeToString(it.Value) != want || fmtUint(it.Version) != versions[sk] {
			t.Errorf("Go Get from-node/%s = %q v%d, found %v, err %v; want %s v%s", sk, it.Value, it.Version, found, err, want, versions[sk])
		}
	}
}

func fmtUint(v uint64) string { return strconv.FormatUint(v, 10) }
