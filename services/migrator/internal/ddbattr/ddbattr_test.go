package ddbattr

import (
	"bytes"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	streamstypes "github.com/aws/aws-sdk-go-v2/service/dynamodbstreams/types"
	"github.com/veltrixdb/veltrix/pkg/ddb"
)

// every holds one value of each type, nested, with a 38-digit number and
// bytes that are not UTF-8.
var every = ddb.Item{
	"s":    ddb.S("héllo"),
	"n":    ddb.MustN("12345678901234567890123456789012345678"),
	"b":    ddb.B{0xff, 0x00, 0xfe},
	"bool": ddb.Bool(true),
	"null": ddb.Null{},
	"ss":   ddb.SS{"a", "b"},
	"ns":   ddb.NS{ddb.MustN("1"), ddb.MustN("-0.5")},
	"bs":   ddb.BS{{1}, {2, 3}},
	"m":    ddb.M{"l": ddb.L{ddb.S("x"), ddb.M{"deep": ddb.MustN("7")}}},
}

// toStreams is the Streams SDK's form of a DynamoDB SDK value.
func toStreams(av types.AttributeValue) streamstypes.AttributeValue {
	switch v := av.(type) {
	case *types.AttributeValueMemberS:
		return &streamstypes.AttributeValueMemberS{Value: v.Value}
	case *types.AttributeValueMemberN:
		return &streamstypes.AttributeValueMemberN{Value: v.Value}
	case *types.AttributeValueMemberB:
		return &streamstypes.AttributeValueMemberB{Value: v.Value}
	case *types.AttributeValueMemberBOOL:
		return &streamstypes.AttributeValueMemberBOOL{Value: v.Value}
	case *types.AttributeValueMemberNULL:
		return &streamstypes.AttributeValueMemberNULL{Value: v.Value}
	case *types.AttributeValueMemberSS:
		return &streamstypes.AttributeValueMemberSS{Value: v.Value}
	case *types.AttributeValueMemberNS:
		return &streamstypes.AttributeValueMemberNS{Value: v.Value}
	case *types.AttributeValueMemberBS:
		return &streamstypes.AttributeValueMemberBS{Value: v.Value}
	case *types.AttributeValueMemberL:
		l := make([]streamstypes.AttributeValue, len(v.Value))
		for i, e := range v.Value {
			l[i] = toStreams(e)
		}
		return &streamstypes.AttributeValueMemberL{Value: l}
	case *types.AttributeValueMemberM:
		return &streamstypes.AttributeValueMemberM{Value: toStreamsMap(v.Value)}
	}
	panic("unknown value")
}

func toStreamsMap(m map[string]types.AttributeValue) map[string]streamstypes.AttributeValue {
	out := make(map[string]streamstypes.AttributeValue, len(m))
	for k, v := range m {
		out[k] = toStreams(v)
	}
	return out
}

// TestRoundTrip: an item converts to the SDK's form and back unchanged,
// from DynamoDB and from DynamoDB Streams values alike, encoding to the
// same canonical bytes.
func TestRoundTrip(t *testing.T) {
	want, err := ddb.MarshalDynamoDBJSON(every)
	if err != nil {
		t.Fatal(err)
	}
	av := FromItem(every)
	fromDDB, err := Item(av)
	if err != nil {
		t.Fatal(err)
	}
	fromStreams, err := StreamsItem(toStreamsMap(av))
	if err != nil {
		t.Fatal(err)
	}
	for name, got := range map[string]ddb.Item{"dynamodb": fromDDB, "streams": fromStreams} {
		b, err := ddb.MarshalDynamoDBJSON(got)
		if err != nil {
			t.Fatal(err)
		}
		if !ddb.EqualItems(got, every) || !bytes.Equal(b, want) {
			t.Errorf("%s: %s, want %s", name, b, want)
		}
	}
	if it, err := StreamsItem(nil); it != nil || err != nil {
		t.Errorf("no image: %v, %v; want nil, nil", it, err)
	}
}

// TestInvalid: values ddb's decoders refuse are refused from either SDK.
func TestInvalid(t *testing.T) {
	for name, av := range map[string]types.AttributeValue{
		"bad number":    &types.AttributeValueMemberN{Value: "1e"},
		"empty set":     &types.AttributeValueMemberSS{},
		"duplicate set": &types.AttributeValueMemberNS{Value: []string{"1", "1.0"}},
		"bad utf-8":     &types.AttributeValueMemberS{Value: "\xff"},
	} {
		if _, err := Item(map[string]types.AttributeValue{"a": av}); err == nil {
			t.Errorf("%s: accepted from DynamoDB", name)
		}
		if _, err := StreamsItem(map[string]streamstypes.AttributeValue{"a": toStreams(av)}); err == nil {
			t.Errorf("%s: accepted from DynamoDB Streams", name)
		}
	}
}
