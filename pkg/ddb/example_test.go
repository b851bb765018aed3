package ddb_test

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/veltrixdb/veltrix/pkg/ddb"
)

// Importing one line of a DynamoDB export: decode it, extract the key,
// store the canonical encoding, read it back.
func Example() {
	line := []byte(`{"Item":{"id":{"S":"user#1"},"score":{"N":"12.50"},"tags":{"SS":["b","a"]},"avatar":{"B":"iVBO"}}}`)
	rec, err := ddb.DecodeJSONExportLine(line)
	if err != nil {
		fmt.Println(err)
		return
	}
	schema := ddb.KeySchema{PartitionKey: ddb.KeyAttribute{Name: "id", Type: ddb.TypeS}}
	pk, _, err := schema.Key(rec.Item)
	if err != nil {
		fmt.Println(err)
		return
	}
	value := ddb.EncodeItem(rec.Item) // what Veltrix stores under pk

	stored, err := ddb.DecodeItem(value)
	if err != nil {
		fmt.Println(err)
		return
	}
	plain, _ := ddb.ItemToJSON(stored)
	dynamo, _ := ddb.MarshalDynamoDBJSON(stored)
	fmt.Printf("key:   %s\n", pk)
	fmt.Printf("value: %d bytes, format 0x%02x\n", len(value), value[0])
	fmt.Printf("plain: %s\n", plain)
	fmt.Printf("ddb:   %s\n", dynamo)
	// Output:
	// key:   user#1
	// value: 48 bytes, format 0x01
	// plain: {"avatar":"iVBO","id":"user#1","score":12.5,"tags":["a","b"]}
	// ddb:   {"avatar":{"B":"iVBO"},"id":{"S":"user#1"},"score":{"N":"12.5"},"tags":{"SS":["a","b"]}}
}

func ExampleDecodeIonExportLine() {
	line := []byte(`$ion_1_0 {Item:{Id:103.,Authors:$dynamodb_SS::["Author1","Author2"],PageCount:6d2,InPublication:false}}`)
	rec, err := ddb.DecodeIonExportLine(line)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(rec.Item)
	// Output:
	// {"Authors":{"SS":["Author1","Author2"]},"Id":{"N":"103"},"InPublication":{"BOOL":false},"PageCount":{"N":"600"}}
}

// Item implements json.Unmarshaler, so DynamoDB Streams and Kinesis records
// decode with encoding/json.
func ExampleItem_UnmarshalJSON() {
	record := []byte(`{"eventName":"MODIFY","dynamodb":{"Keys":{"key":{"S":"t0926"}},
		"NewImage":{"population":{"N":"54148"},"key":{"S":"t0926"}},
		"OldImage":{"population":{"N":"56148"},"key":{"S":"t0926"}}}}`)
	var rec struct {
		EventName string
		Dynamodb  struct{ Keys, NewImage, OldImage ddb.Item }
	}
	if err := json.Unmarshal(record, &rec); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(rec.EventName, rec.Dynamodb.Keys["key"], rec.Dynamodb.OldImage["population"], "->", rec.Dynamodb.NewImage["population"])
	// Output:
	// MODIFY t0926 56148 -> 54148
}

func ExampleNormalize() {
	for _, s := range []string{"1", "1.0", "1E0", "01", "10E-1", "-0", "1.5E2", ".5", "1E126", "12x"} {
		n, err := ddb.Normalize(s)
		fmt.Printf("%-6s %s %v\n", s, n, err)
	}
	// Output:
	// 1      1 <nil>
	// 1.0    1 <nil>
	// 1E0    1 <nil>
	// 01     1 <nil>
	// 10E-1  1 <nil>
	// -0     0 <nil>
	// 1.5E2  150 <nil>
	// .5     0.5 <nil>
	// 1E126   ddb: invalid number: "1E126": magnitude above 9.9999999999999999999999999999999999999E+125
	// 12x     ddb: invalid number: "12x": unexpected 'x' at index 2
}

// Errors say what is wrong and where, for a dead-letter record.
func ExampleError() {
	_, err := ddb.DecodeJSONExportLine([]byte(`{"Item":{"id":{"S":"a"},"orders":{"L":[{"M":{"qty":{"N":"1e999"}}}]}}}`))
	var e *ddb.Error
	if errors.As(err, &e) {
		fmt.Println(errors.Is(err, ddb.ErrInvalidNumber), e.Path, e.Offset)
		fmt.Println(err)
	}
	// Output:
	// true Item.orders[0].qty 56
	// ddb: invalid number at Item.orders[0].qty (offset 56): "1e999": magnitude above 9.9999999999999999999999999999999999999E+125
}
