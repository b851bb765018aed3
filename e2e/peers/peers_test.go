package peers_test

import (
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/veltrixdb/veltrix/e2e/peers"
)

// post sends one unsigned JSON-protocol call; both peers accept any
// signature, and answer an unsigned one with an error body, which is
// enough to show the server speaks the protocol.
func post(t *testing.T, endpoint, target, contentType, body string) string {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, endpoint, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Amz-Target", target)
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("X-Amz-Date", "20240101T000000Z")
	req.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=k/20240101/us-east-1/x/aws4_request, SignedHeaders=host, Signature=0")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s: %s: %s", target, resp.Status, b)
	}
	return string(b)
}

func TestStartKinesalite(t *testing.T) {
	ep := peers.StartKinesalite(t)
	if !strings.HasPrefix(ep, "http://127.0.0.1:") {
		t.Fatalf("endpoint %q is not on loopback", ep)
	}
	got := post(t, ep, "Kinesis_20131202.ListStreams", "application/x-amz-json-1.1", "{}")
	if !strings.Contains(got, `"StreamNames"`) {
		t.Fatalf("ListStreams = %s", got)
	}
}

func TestStartDynalite(t *testing.T) {
	ep := peers.StartDynalite(t)
	got := post(t, ep, "DynamoDB_20120810.ListTables", "application/x-amz-json-1.0", "{}")
	if !strings.Contains(got, `"TableNames"`) {
		t.Fatalf("ListTables = %s", got)
	}
}

// TestDynaliteKillRestart: a dynalite SIGKILLed by its PID refuses
// connections; restarted on the same port and data directory it serves the
// table created and the item written before the kill.
func TestDynaliteKillRestart(t *testing.T) {
	d := peers.StartDynaliteProcess(t)
	ep := d.Endpoint()
	post(t, ep, "DynamoDB_20120810.CreateTable", "application/x-amz-json-1.0",
		`{"TableName":"kill-restart","AttributeDefinitions":[{"AttributeName":"pk","AttributeType":"S"}],"KeySchema":[{"AttributeName":"pk","KeyType":"HASH"}],"BillingMode":"PAY_PER_REQUEST"}`)
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(post(t, ep, "DynamoDB_20120810.DescribeTable", "application/x-amz-json-1.0", `{"TableName":"kill-restart"}`), `"ACTIVE"`) {
		if time.Now().After(deadline) {
			t.Fatal("table kill-restart not ACTIVE")
		}
		time.Sleep(20 * time.Millisecond)
	}
	post(t, ep, "DynamoDB_20120810.PutItem", "application/x-amz-json-1.0", `{"TableName":"kill-restart","Item":{"pk":{"S":"a"},"v":{"N":"1"}}}`)
	pid := d.PID()
	d.Kill(t)
	if c, err := net.DialTimeout("tcp", strings.TrimPrefix(ep, "http://"), time.Second); err == nil {
		c.Close()
		t.Fatalf("dynalite (pid %d) killed, but %s still accepts connections", pid, ep)
	}
	d.Restart(t)
	if d.Endpoint() != ep || d.PID() == pid {
		t.Fatalf("restarted at %s pid %d, want %s and a new process (was %d)", d.Endpoint(), d.PID(), ep, pid)
	}
	if got := post(t, ep, "DynamoDB_20120810.GetItem", "application/x-amz-json-1.0", `{"TableName":"kill-restart","Key":{"pk":{"S":"a"}},"ConsistentRead":true}`); !strings.Contains(got, `"v":{"N":"1"}`) {
		t.Fatalf("after the restart GetItem = %s, want the item written before the kill", got)
	}
}
