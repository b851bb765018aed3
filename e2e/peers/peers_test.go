package peers_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

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
