package expr

import (
	"fmt"
	"strings"
	"testing"
)

// describe renders parsed update actions for comparison in tests.
func describe(u *Update) string {
	var parts []string
	for _, a := range u.actions {
		kind := map[actionKind]string{actionSet: "SET", actionRemove: "REMOVE", actionAdd: "ADD", actionDelete: "DELETE"}[a.kind]
		s := kind + " " + a.path.String()
		if a.value != nil {
			s += " " + describeOperand(a.value)
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, "; ")
}

func describeOperand(op operand) string {
	switch op := op.(type) {
	case pathOperand:
		return op.path.String()
	case valueOperand:
		return op.name
	case arithOperand:
		return fmt.Sprintf("(%s %c %s)", describeOperand(op.l), op.op, describeOperand(op.r))
	case ifNotExistsOperand:
		return fmt.Sprintf("if_not_exists(%s, %s)", op.path, describeOperand(op.def))
	case listAppendOperand:
		return fmt.Sprintf("list_append(%s, %s)", describeOperand(op.l), describeOperand(op.r))
	}
	return fmt.Sprintf("%T", op)
}

func TestParseUpdate(t *testing.T) {
	vals := values(t, sampleValues)
	for _, c := range []struct{ expr, want string }{
		{"SET a = :n1", "SET a :n1"},
		{"set a = :n1, b = c", "SET a :n1; SET b c"},
		{"SET a = a + :n1", "SET a (a + :n1)"},
		{"SET a = :n5 - a", "SET a (:n5 - a)"},
		{"SET a = (a + :n1)", "SET a (a + :n1)"},
		{"SET a = (a) + (:n1)", "SET a (a + :n1)"},
		{"SET a = if_not_exists(a, :n0) + :n1", "SET a (if_not_exists(a, :n0) + :n1)"},
		{"SET l = list_append(if_not_exists(l, :l), :l)", "SET l list_append(if_not_exists(l, :l), :l)"},
		{"SET l = list_append(:l, l)", "SET l list_append(:l, l)"},
		{"SET #m.a = :n1, m.b[1] = :n2, x[0].y = :x", "SET m.a :n1; SET m.b[1] :n2; SET x[0].y :x"},
		{"REMOVE a, b.c, d[3]", "REMOVE a; REMOVE b.c; REMOVE d[3]"},
		{"ADD n :n1, ss :ss", "ADD n :n1; ADD ss :ss"},
		{"DELETE ss :ss2", "DELETE ss :ss2"},
		{"SET a = :n1 REMOVE b ADD c :n1 DELETE d :ss", "SET a :n1; REMOVE b; ADD c :n1; DELETE d :ss"},
		{"delete d :ss add c :n1 remove b set a = :n1", "DELETE d :ss; ADD c :n1; REMOVE b; SET a :n1"},
		{"  SET\ta=:n1  ", "SET a :n1"},
	} {
		t.Run(c.expr, func(t *testing.T) {
			u, err := ParseUpdate(c.expr, NewParams(sampleNames, vals))
			if err != nil {
				t.Fatal(err)
			}
			if got := describe(u); got != c.want {
				t.Fatalf("got  %s\nwant %s", got, c.want)
			}
		})
	}
}

func TestParseUpdateErrors(t *testing.T) {
	vals := values(t, sampleValues)
	for _, c := range []struct{ expr, msg string }{
		{"", "Invalid UpdateExpression: The expression can not be empty;"},
		{"SET", `Invalid UpdateExpression: Syntax error; token: "<EOF>", near: "SET"`},
		{"SET a", `Invalid UpdateExpression: Syntax error; token: "<EOF>", near: "a"`},
		{"SET a = ", `Invalid UpdateExpression: Syntax error; token: "<EOF>", near: "="`},
		{"SET _123 = :n1", `Invalid UpdateExpression: Syntax error; token: "_", near: "SET _123"`},
		{"SET a = :n1,", `Invalid UpdateExpression: Syntax error; token: "<EOF>", near: ","`},
		{"SET a = :n1 b = :n2", `Invalid UpdateExpression: Syntax error; token: "b", near: ":n1 b ="`},
		{"a = :n1", `Invalid UpdateExpression: Syntax error; token: "a", near: "a ="`},
		{"UPSERT a = :n1", `Invalid UpdateExpression: Syntax error; token: "UPSERT", near: "UPSERT a"`},
		{"SET a = b + c + d", `Invalid UpdateExpression: Syntax error; token: "+", near: "c + d"`},
		{"SET a = (b + c) + d", `Invalid UpdateExpression: Syntax error; token: "+", near: ") + d"`},
		{"SET a = b + (c + d)", `Invalid UpdateExpression: Syntax error; token: "(", near: "+ (c"`},
		{"ADD a b", `Invalid UpdateExpression: Syntax error; token: "b", near: "a b"`},
		{"REMOVE a = :n1", `Invalid UpdateExpression: Syntax error; token: "=", near: "a = :n1"`},
		{"SET a = :n1 SET b = :n2", `Invalid UpdateExpression: The "SET" section can only be used once in an update expression;`},
		{"REMOVE a remove b", `Invalid UpdateExpression: The "REMOVE" section can only be used once in an update expression;`},
		{"SET a = :n1, a = :n2", "Invalid UpdateExpression: Two document paths overlap with each other; must remove or rewrite one of these paths; path one: [a], path two: [a]"},
		{"SET a.b = :n1 REMOVE a", "Invalid UpdateExpression: Two document paths overlap with each other; must remove or rewrite one of these paths; path one: [a, b], path two: [a]"},
		{"SET a[1] = :n1 REMOVE a.b", "Invalid UpdateExpression: Two document paths conflict with each other; must remove or rewrite one of these paths; path one: [a, [1]], path two: [a, b]"},
		{"SET a = size(b)", "Invalid UpdateExpression: Invalid function name; function: size"},
		{"SET a = if_not_exists(:n1, :n2)", "Invalid UpdateExpression: Operator or function requires a document path; operator or function: if_not_exists"},
		{"SET a = if_not_exists(a)", "Invalid UpdateExpression: Incorrect number of operands for operator or function; operator or function: if_not_exists, number of operands: 1"},
		{"SET a = list_append(a, :n1)", "Invalid UpdateExpression: Incorrect operand type for operator or function; operator or function: list_append, operand type: N"},
		{"SET a = a + :s", "Invalid UpdateExpression: Incorrect operand type for operator or function; operator or function: +, operand type: S"},
		{"SET a = :ss - a", "Invalid UpdateExpression: Incorrect operand type for operator or function; operator or function: -, operand type: SS"},
		{"ADD a :s", "Invalid UpdateExpression: Incorrect operand type for operator or function; operator: ADD, operand type: STRING"},
		{"ADD a :l", "Invalid UpdateExpression: Incorrect operand type for operator or function; operator: ADD, operand type: LIST"},
		{"DELETE a :n1", "Invalid UpdateExpression: Incorrect operand type for operator or function; operator: DELETE, operand type: NUMBER"},
		{"DELETE a :true", "Invalid UpdateExpression: Incorrect operand type for operator or function; operator: DELETE, operand type: BOOLEAN"},
		{"SET count = :n1", "Invalid UpdateExpression: Attribute name is a reserved keyword; reserved keyword: count"},
		{"SET a = :nope", "Invalid UpdateExpression: An expression attribute value used in expression is not defined; attribute value: :nope"},
		{"REMOVE #nope", "Invalid UpdateExpression: An expression attribute name used in the document path is not defined; attribute name: #nope"},
	} {
		t.Run(c.expr, func(t *testing.T) {
			_, err := ParseUpdate(c.expr, NewParams(sampleNames, vals))
			if err == nil || err.Error() != c.msg {
				t.Fatalf("err = %v\nwant  %s", err, c.msg)
			}
		})
	}
}
