package ddb

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// samplesDir holds real DynamoDB export and stream samples shared by the
// Veltrix workspace (see its README.md). They are read in place, never
// copied into the repository.
const samplesDir = "../../../shared/testdata/dynamodb"

func samplePath(t *testing.T, rel string) string {
	t.Helper()
	p := filepath.Join(samplesDir, rel)
	if _, err := os.Stat(p); err != nil {
		t.Skipf("DynamoDB samples not available (%v); they live in <workspace>/shared/testdata/dynamodb", err)
	}
	return p
}

// sampleLines returns the non-empty lines of the sample files matching glob.
func sampleLines(t *testing.T, glob string) map[string][][]byte {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(samplePath(t, "."), glob))
	if err != nil || len(files) == 0 {
		t.Fatalf("no sample files match %s (%v)", glob, err)
	}
	out := map[string][][]byte{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(bytes.NewReader(data))
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			if len(bytes.TrimSpace(sc.Bytes())) > 0 {
				out[f] = append(out[f], bytes.Clone(sc.Bytes()))
			}
		}
		if err := sc.Err(); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// sameJSON checks that our DynamoDB JSON for an item says the same as the
// source's (the samples hold canonical numbers and no sets, so the decoded
// JSON trees must match exactly).
func sameJSON(t *testing.T, where string, raw json.RawMessage, it Item) {
	t.Helper()
	ours, err := MarshalDynamoDBJSON(it)
	if err != nil {
		t.Fatalf("%s: MarshalDynamoDBJSON: %v", where, err)
	}
	var a, b any
	if err := json.Unmarshal(raw, &a); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(ours, &b); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(a, b) {
		t.Fatalf("%s: re-encoded item differs:\nsource %s\nours   %s", where, raw, ours)
	}
}

func TestSampleFullExportLine(t *testing.T) {
	for f, lines := range sampleLines(t, "export-full-*/data-line-sample.json") {
		for i, line := range lines {
			rec, err := DecodeJSONExportLine(line)
			if err != nil {
				t.Fatalf("%s:%d: %v", f, i+1, err)
			}
			if rec.Incremental() || len(rec.Item) == 0 {
				t.Fatalf("%s:%d: got %+v", f, i+1, rec)
			}
			var raw struct{ Item json.RawMessage }
			if err := json.Unmarshal(line, &raw); err != nil {
				t.Fatal(err)
			}
			sameJSON(t, f, raw.Item, rec.Item)
			// The item survives the canonical encoding.
			back, err := DecodeItem(EncodeItem(rec.Item))
			if err != nil {
				t.Fatal(err)
			}
			mustEqualItems(t, back, rec.Item)
		}
	}
	rec, err := DecodeJSONExportLine(mustRead(t, "export-full-airline/data-line-sample.json"))
	if err != nil {
		t.Fatal(err)
	}
	if rec.Item["Passenger ID"] != MustN("49010") || rec.Item["Age"] != S("69") {
		t.Fatalf("unexpected item %v", rec.Item)
	}
	pk, _, err := KeySchema{PartitionKey: KeyAttribute{"Passenger ID", TypeN}}.Key(rec.Item)
	if err != nil || string(pk) != "49010" {
		t.Fatalf("key = %q, %v", pk, err)
	}
}

func mustRead(t *testing.T, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(samplePath(t, rel))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// streamRecord is the part of a DynamoDB Streams or Kinesis record this
// package decodes; the Items decode through Item.UnmarshalJSON.
type streamRecord struct {
	EventName string
	Dynamodb  struct {
		Keys, NewImage, OldImage Item
	}
}

// rawStreamRecord keeps the source JSON of the images.
type rawStreamRecord struct {
	Dynamodb struct {
		Keys, NewImage, OldImage json.RawMessage
	}
}

func checkStreamRecord(t *testing.T, where string, data []byte) {
	t.Helper()
	var rec streamRecord
	if err := json.Unmarshal(data, &rec); err != nil {
		t.Fatalf("%s: %v", where, err)
	}
	var raw rawStreamRecord
	if err := json.Unmarshal(data, &raw); err != nil {
		t.Fatal(err)
	}
	d := rec.Dynamodb
	if len(d.Keys) == 0 {
		t.Fatalf("%s: no Keys", where)
	}
	switch rec.EventName {
	case "INSERT", "MODIFY", "REMOVE":
	default:
		t.Fatalf("%s: eventName %q", where, rec.EventName)
	}
	if rec.EventName == "REMOVE" && d.NewImage != nil {
		t.Fatalf("%s: REMOVE with a NewImage", where)
	}
	sameJSON(t, where+" Keys", raw.Dynamodb.Keys, d.Keys)
	for _, img := range []struct {
		it  Item
		raw json.RawMessage
	}{{d.NewImage, raw.Dynamodb.NewImage}, {d.OldImage, raw.Dynamodb.OldImage}} {
		if img.it == nil {
			continue
		}
		sameJSON(t, where+" image", img.raw, img.it)
		// Every key attribute is in the image, with the same value.
		for name, kv := range d.Keys {
			ks := KeySchema{PartitionKey: KeyAttribute{name, kv.Type()}}
			a, _, err := ks.Key(d.Keys)
			if err != nil {
				t.Fatalf("%s: %v", where, err)
			}
			b, _, err := ks.Key(img.it)
			if err != nil || !bytes.Equal(a, b) {
				t.Fatalf("%s: key %s: %q vs %q, %v", where, name, a, b, err)
			}
		}
	}
}

func TestSampleKinesisRecords(t *testing.T) {
	n := 0
	for f, lines := range sampleLines(t, "kinesis-records/*.jsonl") {
		for i, line := range lines {
			checkStreamRecord(t, fmt.Sprintf("%s:%d", f, i+1), line)
			n++
		}
	}
	if n < 7 {
		t.Fatalf("checked %d records, want at least 7", n)
	}
}

func TestSampleStreamsGetRecords(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join(samplePath(t, "streams-getrecords"), "*.json"))
	n := 0
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var resp struct{ Records []json.RawMessage }
		if err := json.Unmarshal(data, &resp); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, r := range resp.Records {
			checkStreamRecord(t, f, r)
			n++
		}
	}
	if n < 5 {
		t.Fatalf("checked %d records, want at least 5", n)
	}
}

// Shapes the samples README lists without a sample: a Lambda-delivered TTL
// delete with SDK-padded attribute values, and an incremental export line.
func TestDocumentedShapes(t *testing.T) {
	lambda := []byte(`{"Records":[{"eventID":"1","eventName":"REMOVE","eventVersion":"1.1","eventSource":"aws:dynamodb",
	"awsRegion":"us-east-1","eventSourceARN":"arn:aws:dynamodb:us-east-1:123456789012:table/sessions/stream/2024-01-01T00:00:00.000",
	"userIdentity":{"type":"Service","principalId":"dynamodb.amazonaws.com"},
	"dynamodb":{"ApproximateCreationDateTime":1.7e9,"Keys":{"id":{"S":"s1","N":null,"B":null,"SS":null,"NS":null,"BS":null,"M":null,"L":null,"NULL":null,"BOOL":null}},
	"OldImage":{"id":{"S":"s1","N":null,"B":null,"SS":null,"NS":null,"BS":null,"M":null,"L":null,"NULL":null,"BOOL":null},
	"ttl":{"S":null,"N":"1700000000","B":null,"SS":null,"NS":null,"BS":null,"M":null,"L":null,"NULL":null,"BOOL":null}},
	"SequenceNumber":"1","SizeBytes":30,"StreamViewType":"NEW_AND_OLD_IMAGES"}}]}`)
	var ev struct{ Records []streamRecord }
	if err := json.Unmarshal(lambda, &ev); err != nil {
		t.Fatal(err)
	}
	d := ev.Records[0].Dynamodb
	mustEqualItems(t, d.Keys, Item{"id": S("s1")})
	mustEqualItems(t, d.OldImage, Item{"id": S("s1"), "ttl": MustN("1700000000")})

	for _, line := range []string{
		`{"Metadata":{"WriteTimestampMicros":{"N":"1695097218000000"}},"Keys":{"id":{"S":"s1"}},"OldImage":{"id":{"S":"s1"},"v":{"N":"1"}},"NewImage":{"id":{"S":"s1"},"v":{"N":"2"}}}`,
		`{"Metadata":{"WriteTimestampMicros":"1695097218000000"},"Keys":{"id":{"S":"s1"}},"OldImage":{"id":{"S":"s1"},"v":{"N":"1"}},"NewImage":{"id":{"S":"s1"},"v":{"N":"2"}}}`,
	} {
		rec, err := DecodeJSONExportLine([]byte(line))
		if err != nil {
			t.Fatal(err)
		}
		if !rec.Incremental() || rec.WriteTimestampMicros != 1695097218000000 || rec.NewImage["v"] != MustN("2") {
			t.Fatalf("got %+v", rec)
		}
	}
}
