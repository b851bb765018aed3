package expr

import (
	"testing"

	"github.com/veltrixdb/veltrix/pkg/ddb"
)

func TestParamsCheck(t *testing.T) {
	v := map[string]ddb.Value{":a": ddb.S("a"), ":b": ddb.S("b"), ":c": ddb.S("c")}
	n := map[string]string{"#x": "x", "#y": "y", "#z": "z"}

	// Every name and value used, across several expressions: fine.
	p := NewParams(n, v)
	if _, err := ParseCondition(KindCondition, "#x = :a", p); err != nil {
		t.Fatal(err)
	}
	if _, err := ParseUpdate("SET #y = :b, #z = :c", p); err != nil {
		t.Fatal(err)
	}
	if err := p.Check(); err != nil {
		t.Fatalf("Check = %v", err)
	}

	for _, c := range []struct {
		names  map[string]string
		values map[string]ddb.Value
		exprs  []string // conditions to parse first
		msg    string   // "" = Check passes
	}{
		{nil, nil, nil, ""},
		{nil, nil, []string{"a = b"}, ""},
		{n, v, []string{"#x = :a"}, "Value provided in ExpressionAttributeNames unused in expressions: keys: {#y, #z}"},
		{nil, v, []string{"x = :a"}, "Value provided in ExpressionAttributeValues unused in expressions: keys: {:b, :c}"},
		{n, nil, nil, "ExpressionAttributeNames can only be specified when using expressions"},
		{nil, v, nil, "ExpressionAttributeValues can only be specified when using expressions"},
		{map[string]string{}, nil, nil, "ExpressionAttributeNames must not be empty"},
		{nil, map[string]ddb.Value{}, nil, "ExpressionAttributeValues must not be empty"},
		{map[string]string{"x": "x"}, nil, nil, `ExpressionAttributeNames contains invalid key: Syntax error; key: "x"`},
		{map[string]string{"#": "x"}, nil, nil, `ExpressionAttributeNames contains invalid key: Syntax error; key: "#"`},
		{map[string]string{"#a-b": "x"}, nil, nil, `ExpressionAttributeNames contains invalid key: Syntax error; key: "#a-b"`},
		{map[string]string{"#x": ""}, nil, nil, "ExpressionAttributeNames contains invalid value: Empty attribute name for key #x"},
		{nil, map[string]ddb.Value{"a": ddb.S("a")}, nil, `ExpressionAttributeValues contains invalid key: Syntax error; key: "a"`},
	} {
		p := NewParams(c.names, c.values)
		var err error
		for _, e := range c.exprs {
			if _, err = ParseCondition(KindCondition, e, p); err != nil {
				break
			}
		}
		if err == nil {
			err = p.Check()
		}
		if (err == nil) != (c.msg == "") || err != nil && err.Error() != c.msg {
			t.Errorf("names %v values %v exprs %q: err = %v, want %q", c.names, c.values, c.exprs, err, c.msg)
		}
	}

	// A bad key fails the parse too, before it looks at the expression.
	_, err := ParseCondition(KindCondition, "a = b", NewParams(map[string]string{"x": "x"}, nil))
	if err == nil || err.Error() != `ExpressionAttributeNames contains invalid key: Syntax error; key: "x"` {
		t.Fatalf("parse with a bad key: %v", err)
	}
	var nilP *Params
	if err := nilP.Check(); err != nil {
		t.Fatal(err)
	}
	// A zero Params works as an empty one.
	if _, err := ParseCondition(KindCondition, "a = b", &Params{}); err != nil {
		t.Fatal(err)
	}
}
