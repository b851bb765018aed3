// Package ddbattr is the migrator's one converter between the AWS SDK's
// AttributeValues and pkg/ddb's item model: DynamoDB items (Scan pages,
// keys) directly, DynamoDB Streams images through the SDK's own
// conversion to DynamoDB values (attributevalue.FromDynamoDBStreamsMap),
// so both sources check and convert values by one code path.
package ddbattr

import (
	"fmt"

	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	streamstypes "github.com/aws/aws-sdk-go-v2/service/dynamodbstreams/types"
	"github.com/veltrixdb/veltrix/pkg/ddb"
)

// StreamsItem converts an attribute map of the DynamoDB Streams SDK (a
// record's Keys or NewImage) into an Item as Item does; a nil map (no
// image) is a nil Item.
func StreamsItem(m map[string]streamstypes.AttributeValue) (ddb.Item, error) {
	if m == nil {
		return nil, nil
	}
	dm, err := attributevalue.FromDynamoDBStreamsMap(m)
	if err != nil {
		return nil, err
	}
	return Item(dm)
}

// Item converts an item of the DynamoDB SDK into an Item, checking it as
// ddb's decoders do (numbers normalized, sets non-empty and without
// duplicates, UTF-8, depth).
func Item(m map[string]types.AttributeValue) (ddb.Item, error) {
	it := make(ddb.Item, len(m))
	for name, av := range m {
		v, err := toValue(av, 0)
		if err != nil {
			return nil, fmt.Errorf("attribute %q: %w", name, err)
		}
		it[name] = v
	}
	if err := it.Validate(); err != nil {
		return nil, err
	}
	return it, nil
}

func toValue(av types.AttributeValue, depth int) (ddb.Value, error) {
	if depth > ddb.MaxDepth {
		return nil, fmt.Errorf("nested deeper than %d levels", ddb.MaxDepth)
	}
	switch v := av.(type) {
	case *types.AttributeValueMemberS:
		return ddb.S(v.Value), nil
	case *types.AttributeValueMemberN:
		return ddb.ParseN(v.Value)
	case *types.AttributeValueMemberB:
		return ddb.B(v.Value), nil
	case *types.AttributeValueMemberBOOL:
		return ddb.Bool(v.Value), nil
	case *types.AttributeValueMemberNULL:
		return ddb.Null{}, nil
	case *types.AttributeValueMemberM:
		m := make(ddb.M, len(v.Value))
		for name, e := range v.Value {
			ev, err := toValue(e, depth+1)
			if err != nil {
				return nil, fmt.Errorf("%q: %w", name, err)
			}
			m[name] = ev
		}
		return m, nil
	case *types.AttributeValueMemberL:
		l := make(ddb.L, len(v.Value))
		for i, e := range v.Value {
			ev, err := toValue(e, depth+1)
			if err != nil {
				return nil, fmt.Errorf("[%d]: %w", i, err)
			}
			l[i] = ev
		}
		return l, nil
	case *types.AttributeValueMemberSS:
		return ddb.SS(v.Value), nil
	case *types.AttributeValueMemberNS:
		ns := make(ddb.NS, len(v.Value))
		for i, s := range v.Value {
			n, err := ddb.ParseN(s)
			if err != nil {
				return nil, err
			}
			ns[i] = n
		}
		return ns, nil
	case *types.AttributeValueMemberBS:
		return ddb.BS(v.Value), nil
	case nil:
		return nil, fmt.Errorf("null attribute value")
	}
	return nil, fmt.Errorf("unsupported attribute value %T", av)
}

// FromItem converts an Item into the DynamoDB SDK's form (for
// ExclusiveStartKey).
func FromItem(it ddb.Item) map[string]types.AttributeValue {
	m := make(map[string]types.AttributeValue, len(it))
	for name, v := range it {
		m[name] = fromValue(v)
	}
	return m
}

func fromValue(v ddb.Value) types.AttributeValue {
	switch v := v.(type) {
	case ddb.S:
		return &types.AttributeValueMemberS{Value: string(v)}
	case ddb.N:
		return &types.AttributeValueMemberN{Value: v.String()}
	case ddb.B:
		return &types.AttributeValueMemberB{Value: []byte(v)}
	case ddb.Bool:
		return &types.AttributeValueMemberBOOL{Value: bool(v)}
	case ddb.Null:
		return &types.AttributeValueMemberNULL{Value: true}
	case ddb.M:
		m := make(map[string]types.AttributeValue, len(v))
		for name, e := range v {
			m[name] = fromValue(e)
		}
		return &types.AttributeValueMemberM{Value: m}
	case ddb.L:
		l := make([]types.AttributeValue, len(v))
		for i, e := range v {
			l[i] = fromValue(e)
		}
		return &types.AttributeValueMemberL{Value: l}
	case ddb.SS:
		return &types.AttributeValueMemberSS{Value: []string(v)}
	case ddb.NS:
		s := make([]string, len(v))
		for i, n := range v {
			s[i] = n.String()
		}
		return &types.AttributeValueMemberNS{Value: s}
	case ddb.BS:
		return &types.AttributeValueMemberBS{Value: [][]byte(v)}
	}
	panic(fmt.Sprintf("ddbattr: unknown ddb value %T", v))
}
