package expr

import (
	"testing"

	"github.com/veltrixdb/veltrix/pkg/ddb"
)

func TestParseKeyCondition(t *testing.T) {
	ks := ddb.KeySchema{PartitionKey: ddb.KeyAttribute{Name: "pk", Type: ddb.TypeS}, SortKey: ddb.KeyAttribute{Name: "sk", Type: ddb.TypeN}}
	vals := values(t, `{":p": {"S": "user#1"}, ":a": {"N": "1"}, ":b": {"N": "5"}, ":s": {"S": "x"}, ":e": {"S": ""}, ":n": {"N": "3"}}`)
	names := map[string]string{"#p": "pk", "#s": "sk"}
	for _, c := range []struct {
		expr string
		op   SortOp // 0: no sort condition
		vals []string
	}{
		{"pk = :p", 0, nil},
		{"#p = :p", 0, nil},
		{":p = pk", 0, nil},
		{"pk = :p AND sk = :a", SortEQ, []string{"1"}},
		{"sk < :a AND pk = :p", SortLT, []string{"1"}},
		{"pk = :p AND sk <= :a", SortLE, []string{"1"}},
		{"pk = :p AND sk > :a", SortGT, []string{"1"}},
		{"pk = :p AND #s >= :a", SortGE, []string{"1"}},
		{"pk = :p AND :a < sk", SortGT, []string{"1"}}, // operands swapped
		{"pk = :p AND :a >= sk", SortLE, []string{"1"}},
		{"pk = :p AND sk BETWEEN :a AND :b", SortBetween, []string{"1", "5"}},
		{"(pk = :p) AND (sk BETWEEN :a AND :b)", SortBetween, []string{"1", "5"}},
	} {
		t.Run(c.expr, func(t *testing.T) {
			kc, err := ParseKeyCondition(c.expr, NewParams(names, vals), ks)
			if err != nil {
				t.Fatal(err)
			}
			if !ddb.Equal(kc.PartitionKey, ddb.S("user#1")) {
				t.Fatalf("PartitionKey = %v", kc.PartitionKey)
			}
			if c.op == 0 {
				if kc.Sort != nil {
					t.Fatalf("Sort = %+v, want none", kc.Sort)
				}
				return
			}
			if kc.Sort == nil || kc.Sort.Op != c.op || len(kc.Sort.Values) != len(c.vals) {
				t.Fatalf("Sort = %+v, want %v %v", kc.Sort, c.op, c.vals)
			}
			for i, v := range c.vals {
				if !ddb.Equal(kc.Sort.Values[i], ddb.MustN(v)) {
					t.Fatalf("Sort.Values[%d] = %v, want %s", i, kc.Sort.Values[i], v)
				}
			}
		})
	}

	sks := ddb.KeySchema{PartitionKey: ddb.KeyAttribute{Name: "pk", Type: ddb.TypeN}, SortKey: ddb.KeyAttribute{Name: "sk", Type: ddb.TypeS}}
	kc, err := ParseKeyCondition("pk = :a AND begins_with(sk, :s)", NewParams(nil, vals), sks)
	if err != nil {
		t.Fatal(err)
	}
	if kc.Sort.Op != SortBeginsWith || !ddb.Equal(kc.Sort.Values[0], ddb.S("x")) || !ddb.Equal(kc.PartitionKey, ddb.MustN("1")) {
		t.Fatalf("begins_with: %+v %+v", kc, kc.Sort)
	}

	for _, c := range []struct{ expr, msg string }{
		{"", "Invalid KeyConditionExpression: The expression can not be empty;"},
		{"pk = ", `Invalid KeyConditionExpression: Syntax error; token: "<EOF>", near: "="`},
		{"pk = :p OR sk = :a", "Invalid operator used in KeyConditionExpression: OR"},
		{"NOT pk = :p", "Invalid operator used in KeyConditionExpression: NOT"},
		{"pk IN (:p)", "Invalid operator used in KeyConditionExpression: IN"},
		{"pk <> :p", "Invalid operator used in KeyConditionExpression: <>"},
		{"pk = :p AND attribute_exists(sk)", "Invalid operator used in KeyConditionExpression: attribute_exists"},
		{"pk = :p AND size(sk) = :a", "KeyConditionExpressions cannot contain nested operations"},
		{"pk = :p AND sk = :a AND sk = :b", "KeyConditionExpressions must only contain one condition per key"},
		{"pk = :p AND sk = :a AND foo = :b", "Conditions can be of length 1 or 2 only"},
		{":a = :b AND pk = :p", "Invalid condition in KeyConditionExpression: No key attribute specified"},
		{"pk = :p AND :a BETWEEN sk AND :b", "Invalid condition in KeyConditionExpression: BETWEEN operator must have the key attribute as its first operand"},
		{"pk = :p AND begins_with(:s, sk)", "Invalid condition in KeyConditionExpression: begins_with operator must have the key attribute as its first operand"},
		{"pk = :p AND pk = :p", "KeyConditionExpressions must only contain one condition per key"},
		{"sk = :a", "Query condition missed key schema element: pk"},
		{"foo = :a", "Query condition missed key schema element: pk"},
		{"pk < :p", "Query key condition not supported"},
		{"pk = :p AND foo = :a", "Query condition missed key schema element: sk"},
		{"pk = :p AND sk = pk", "Invalid condition in KeyConditionExpression: Multiple attribute names used in one condition"},
		{"pk.x = :p", "KeyConditionExpressions cannot have conditions on nested attributes"},
		{"pk = :a", "One or more parameter values were invalid: Condition parameter type does not match schema type"},
		{"pk = :p AND sk = :s", "One or more parameter values were invalid: Condition parameter type does not match schema type"},
		{"pk = :p AND begins_with(sk, :s)", "One or more parameter values were invalid: Condition parameter type does not match schema type"},
		{"pk = :p AND begins_with(sk, :n)", "Invalid KeyConditionExpression: Incorrect operand type for operator or function; operator or function: begins_with, operand type: N"},
		{"pk = :p AND sk BETWEEN :b AND :a", "Invalid KeyConditionExpression: The BETWEEN operator requires upper bound to be greater than or equal to lower bound; lower bound operand: AttributeValue: {N:5}, upper bound operand: AttributeValue: {N:1}"},
		{"pk = :e", "One or more parameter values are not valid. The AttributeValue for a key attribute cannot contain an empty string value. Key: pk"},
	} {
		_, err := ParseKeyCondition(c.expr, NewParams(names, vals), ks)
		if err == nil || err.Error() != c.msg {
			t.Errorf("%q: err = %v\nwant %s", c.expr, err, c.msg)
		}
	}

	hashOnly := ddb.KeySchema{PartitionKey: ddb.KeyAttribute{Name: "pk", Type: ddb.TypeS}}
	if _, err := ParseKeyCondition("pk = :p AND sk = :a", NewParams(nil, vals), hashOnly); err == nil || err.Error() != "Query key condition not supported" {
		t.Errorf("sort condition on a table without a sort key: err = %v", err)
	}
}
