package cdc

import (
	"fmt"

	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams/types"
	"github.com/veltrixdb/veltrix/pkg/ddb"
)

// streamsItem converts an attribute map of the DynamoDB Streams SDK into
// an Item, checking it as ddb's decoders do (numbers normalized, sets
// non-empty and without duplicates, UTF-8, depth).
func streamsItem(m map[string]types.AttributeValue) (ddb.Item, error) {
	if m == nil {
		return nil, nil
	}
	it := make(ddb.Item, len(m))
	for name, av := range m {
		v, err := streamsValue(av, 0)
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

func streamsValue(av types.AttributeValue, depth int) (ddb.Value, error) {
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
			ev, err := streamsValue(e, depth+1)
			if err != nil {
				return nil, fmt.Errorf("%q: %w", name, err)
			}
			m[name] = ev
		}
		return m, nil
	case *types.AttributeValueMemberL:
		l := make(ddb.L, len(v.Value))
		for i, e := range v.Value {
			ev, err := streamsValue(e, depth+1)
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
