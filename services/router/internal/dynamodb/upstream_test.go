package dynamodb

import (
	"encoding/json"
	"reflect"
	"testing"
)

func TestRenameTables(t *testing.T) {
	for _, tc := range []struct {
		name    string
		in, out string
		f       tableFields
	}{
		{"request TableName", `{"TableName":"app","Key":{"pk":{"S":"app"}}}`, `{"TableName":"up","Key":{"pk":{"S":"app"}}}`, requestTableFields},
		{"request RequestItems", `{"RequestItems":{"app":[{"PutRequest":{"Item":{"pk":{"S":"x"}}}}],"other":[]}}`,
			`{"RequestItems":{"up":[{"PutRequest":{"Item":{"pk":{"S":"x"}}}}],"other":[]}}`, requestTableFields},
		{"transaction members", `{"TransactItems":[{"Put":{"TableName":"app","Item":{}}},{"ConditionCheck":{"TableName":"other"}}]}`,
			`{"TransactItems":[{"Put":{"TableName":"up","Item":{}}},{"ConditionCheck":{"TableName":"other"}}]}`, requestTableFields},
		{"response maps and capacity", `{"Responses":{"app":[]},"UnprocessedKeys":{"app":{"Keys":[]}},"ConsumedCapacity":[{"TableName":"app","CapacityUnits":1}]}`,
			`{"Responses":{"up":[]},"UnprocessedKeys":{"up":{"Keys":[]}},"ConsumedCapacity":[{"TableName":"up","CapacityUnits":1}]}`, responseTableFields},
		{"response TableDescription", `{"TableDescription":{"TableName":"app","ItemCount":3}}`, `{"TableDescription":{"TableName":"up","ItemCount":3}}`, responseTableFields},
		{"single ConsumedCapacity", `{"ConsumedCapacity":{"TableName":"app","CapacityUnits":1}}`, `{"ConsumedCapacity":{"TableName":"up","CapacityUnits":1}}`, responseTableFields},
		{"error body untouched", `{"__type":"com.amazonaws.dynamodb.v20120810#ResourceNotFoundException","message":"app"}`,
			`{"__type":"com.amazonaws.dynamodb.v20120810#ResourceNotFoundException","message":"app"}`, responseTableFields},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := renameTables([]byte(tc.in), "app", "up", tc.f)
			if err != nil {
				t.Fatal(err)
			}
			var g, w any
			if err := json.Unmarshal(got, &g); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal([]byte(tc.out), &w); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(g, w) {
				t.Fatalf("got %s, want %s", got, tc.out)
			}
		})
	}
	// An answer with nothing to rename keeps DynamoDB's exact bytes.
	in := []byte(`{ "Item" : {"pk":{"S":"x"}} }`)
	if got, _ := renameTables(in, "app", "up", responseTableFields); string(got) != string(in) {
		t.Fatalf("unchanged body rewritten: %s", got)
	}
}
