package expr

import (
	"testing"

	"github.com/veltrixdb/veltrix/pkg/ddb"
)

// item decodes an item written in DynamoDB JSON.
func item(t testing.TB, js string) ddb.Item {
	t.Helper()
	it, err := ddb.UnmarshalDynamoDBJSON([]byte(js))
	if err != nil {
		t.Fatalf("item %s: %v", js, err)
	}
	return it
}

// values decodes ExpressionAttributeValues written in DynamoDB JSON.
func values(t testing.TB, js string) map[string]ddb.Value {
	t.Helper()
	if js == "" {
		return nil
	}
	return map[string]ddb.Value(item(t, js))
}

// sample is the item most condition tests evaluate against.
const sample = `{
	"pk": {"S": "user#42"},
	"n": {"N": "10"},
	"neg": {"N": "-2.5"},
	"s": {"S": "hello world"},
	"uni": {"S": "é𝄞"},
	"b": {"B": "AQID"},
	"t": {"BOOL": true},
	"nul": {"NULL": true},
	"ss": {"SS": ["a", "b", "c"]},
	"ns": {"NS": ["1", "2.5"]},
	"bs": {"BS": ["AQ==", "Ag=="]},
	"l": {"L": [{"S": "x"}, {"N": "1"}, {"M": {"deep": {"S": "y"}}}]},
	"m": {"M": {"a": {"N": "1"}, "b": {"L": [{"N": "5"}, {"N": "6"}]}, "c": {"M": {"d": {"S": "e"}}}}},
	"blank": {"S": ""},
	"a b": {"S": "spaced"},
	"status": {"S": "active"}
}`

// sampleValues are the ExpressionAttributeValues condition tests may use.
const sampleValues = `{
	":s": {"S": "hello world"}, ":hello": {"S": "hello"}, ":world": {"S": "world"},
	":n10": {"N": "10"}, ":n10e": {"N": "1E1"}, ":n5": {"N": "5"}, ":n20": {"N": "20"},
	":n0": {"N": "0"}, ":n1": {"N": "1"}, ":n2": {"N": "2"}, ":n3": {"N": "3"}, ":n11": {"N": "11"},
	":b": {"B": "AQID"}, ":b1": {"B": "AQ=="}, ":b12": {"B": "AQI="},
	":true": {"BOOL": true}, ":null": {"NULL": true},
	":ss": {"SS": ["c", "b", "a"]}, ":ss2": {"SS": ["a", "b"]},
	":a": {"S": "a"}, ":x": {"S": "x"}, ":y": {"S": "y"}, ":z": {"S": "z"}, ":e": {"S": "e"},
	":n25": {"N": "2.5"}, ":l": {"L": [{"N": "5"}, {"N": "6"}]},
	":m": {"M": {"deep": {"S": "y"}}},
	":tS": {"S": "S"}, ":tN": {"S": "N"}, ":tSS": {"S": "SS"}, ":tNULL": {"S": "NULL"}, ":tM": {"S": "M"}, ":tL": {"S": "L"},
	":user": {"S": "user#"}, ":ab": {"S": "ab"}, ":empty": {"S": ""},
	":active": {"S": "active"}, ":neg": {"N": "-3"}
}`

var sampleNames = map[string]string{"#pk": "pk", "#sp": "a b", "#st": "status", "#m": "m", "#dot": "m.a"}
