package e2e

// A second-language client: boto3 (Debian's python3-boto3, installed by
// `make python-deps`) runs e2e/python/dynamodb_smoke.py against the
// endpoint.

import (
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/veltrixdb/veltrix/e2e/framework"
	"github.com/veltrixdb/veltrix/e2e/peers"
)

// runPythonSmoke runs the boto3 script against endpoint and fails the test
// on a non-zero exit.
func runPythonSmoke(t *testing.T, endpoint string) {
	t.Helper()
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Fatalf("python3 is not on PATH (make python-deps installs python3-boto3): %v", err)
	}
	if out, err := exec.Command(py, "-c", "import boto3").CombinedOutput(); err != nil {
		t.Fatalf("python3 cannot import boto3 (run make python-deps): %v\n%s", err, out)
	}
	script, err := filepath.Abs(filepath.Join("python", "dynamodb_smoke.py"))
	if err != nil {
		t.Fatal(err)
	}
	res := runBin(t, 2*time.Minute, "", py, script, endpoint, "py_smoke")
	t.Logf("dynamodb_smoke.py against %s (exit %d):\n%s%s", endpoint, res.code, res.stdout, res.stderr)
	if res.code != 0 {
		t.Fatalf("dynamodb_smoke.py failed with exit %d", res.code)
	}
}

// TestDynamoDBPythonDynalite runs the boto3 script against dynalite: the
// script's expectations hold on another DynamoDB implementation.
func TestDynamoDBPythonDynalite(t *testing.T) {
	runPythonSmoke(t, peers.StartDynalite(t))
}

// TestBinDynamoDBPython runs the boto3 script against a real cluster's
// endpoint, then checks that the router's /metrics counted its requests
// and errors per operation.
func TestBinDynamoDBPython(t *testing.T) {
	binTest(t)
	c, eps := startDynamoCluster(t, framework.Options{Nodes: 3, RF: 3})
	runPythonSmoke(t, eps[0])
	r := c.Routers[0]
	for _, op := range []string{"CreateTable", "PutItem", "GetItem", "Query", "UpdateItem", "DeleteItem", "BatchGetItem", "BatchWriteItem", "DeleteTable"} {
		if n := metricValue(t, r, `veltrix_dynamodb_requests_total{operation="`+op+`"}`); n < 1 {
			t.Errorf("veltrix_dynamodb_requests_total for %s: %v; want at least 1", op, n)
		}
		if n := metricValue(t, r, `veltrix_dynamodb_request_duration_seconds_count{operation="`+op+`"}`); n < 1 {
			t.Errorf("veltrix_dynamodb_request_duration_seconds_count for %s: %v; want at least 1", op, n)
		}
	}
	// The script's failing condition and syntax error, and its read of a
	// missing table.
	for _, series := range []string{
		`veltrix_dynamodb_errors_total{operation="UpdateItem",type="ConditionalCheckFailedException"}`,
		`veltrix_dynamodb_errors_total{operation="UpdateItem",type="ValidationException"}`,
		`veltrix_dynamodb_errors_total{operation="DeleteItem",type="ConditionalCheckFailedException"}`,
		`veltrix_dynamodb_errors_total{operation="GetItem",type="ResourceNotFoundException"}`,
	} {
		if n := metricValue(t, r, series); n != 1 {
			t.Errorf("%s = %v; want 1", series, n)
		}
	}
}
