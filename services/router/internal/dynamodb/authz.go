package dynamodb

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"unicode"

	"github.com/veltrixdb/veltrix/pkg/auth"
)

// Per-table permissions (docs/design.md, "DynamoDB endpoint: SigV4 and
// permissions"). Every operation needs a level on every table it names;
// the check runs before the request is routed anywhere (Veltrix or, in
// migration mode, DynamoDB), so a refused request has no effect.

// opLevels is the level each operation needs on the tables it names.
// ListTables needs none (its answer is filtered to the tables the subject
// may read); PartiQL needs write on every table (AllTables): which tables
// a statement touches is not known without parsing it. Any other
// operation needs admin on the table it names, or on AllTables.
var opLevels = map[string]auth.Level{
	"GetItem":            auth.Read,
	"BatchGetItem":       auth.Read,
	"Query":              auth.Read,
	"Scan":               auth.Read,
	"DescribeTable":      auth.Read,
	"DescribeTimeToLive": auth.Read,
	"TransactGetItems":   auth.Read,
	"ListTagsOfResource": auth.Read,

	"PutItem":            auth.Write,
	"UpdateItem":         auth.Write,
	"DeleteItem":         auth.Write,
	"BatchWriteItem":     auth.Write,
	"TransactWriteItems": auth.Write,

	"CreateTable":      auth.Admin,
	"DeleteTable":      auth.Admin,
	"UpdateTable":      auth.Admin,
	"UpdateTimeToLive": auth.Admin,
}

// partiQLOps need write on AllTables.
var partiQLOps = map[string]bool{
	"ExecuteStatement":      true,
	"BatchExecuteStatement": true,
	"ExecuteTransaction":    true,
}

// need is what a request needed: the level, and the (first) table it was
// checked on, for the audit log.
type need struct {
	level auth.Level
	table string
}

// authorize checks that subj may run op on the tables body names. It
// returns the request's tables when it decoded them (nil otherwise), for
// migration mode's routing. A refusal is AccessDeniedException and an
// audit line.
func (h *Handler) authorize(ctx context.Context, subj auth.Subject, op string, body []byte) (need, *requestTables, error) {
	if op == "ListTables" {
		return need{}, nil, nil
	}
	if partiQLOps[op] {
		n := need{level: auth.Write, table: auth.AllTables}
		if !subj.Allows(auth.AllTables, auth.Write) {
			return n, nil, h.deny(ctx, subj, op, n)
		}
		return n, nil, nil
	}
	lvl, ok := opLevels[op]
	if !ok {
		lvl = auth.Admin
	}
	if subj.Superuser && lvl != auth.Admin {
		return need{level: lvl}, nil, nil // no need to decode
	}
	rt, err := parseRequestTables(body)
	if err != nil {
		if subj.Superuser {
			return need{level: lvl}, nil, nil // the operation words the error
		}
		return need{}, nil, err
	}
	tables := rt.all()
	if len(tables) == 0 {
		tables = []string{auth.AllTables}
	}
	n := need{level: lvl, table: tables[0]}
	for _, t := range tables {
		if !subj.Allows(t, lvl) {
			return n, nil, h.deny(ctx, subj, op, need{level: lvl, table: t})
		}
	}
	return n, rt, nil
}

// deny audits a refusal and returns DynamoDB's AccessDeniedException.
func (h *Handler) deny(ctx context.Context, subj auth.Subject, op string, n need) error {
	h.o.Audit.Denied(ctx, subj, op, n.table, n.level, "missing permission")
	return &Error{Type: "AccessDeniedException", Status: http.StatusBadRequest,
		Message: fmt.Sprintf("User: arn:aws:iam::%s:user/%s is not authorized to perform: dynamodb:%s on resource: %s",
			h.o.Account, subj.Name, op, h.arn(n.table))}
}

// requestTables are the tables a request names: TableName, the keys of
// RequestItems, TransactItems[*].<Get|Put|Update|Delete|ConditionCheck>.TableName,
// and the table of TableArn or ResourceArn.
type requestTables struct {
	TableName     string
	RequestItems  []string
	TransactItems []string
	// ARNs are the tables of TableArn and ResourceArn (AllTables for an
	// ARN that names no table).
	ARNs []string
}

// names are the tables a request names by name, in order, each once.
func (rt *requestTables) names() []string {
	return dedup(append(append([]string{rt.TableName}, rt.RequestItems...), rt.TransactItems...))
}

// all adds the tables named by ARN.
func (rt *requestTables) all() []string {
	return dedup(append(rt.names(), rt.ARNs...))
}

func dedup(in []string) []string {
	var out []string
	seen := map[string]bool{}
	for _, n := range in {
		if n != "" && !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	return out
}

// parseRequestTables decodes the tables a request names. It is stricter
// than the operations' decoding, so that the tables checked are the
// tables used, by Veltrix (encoding/json matches keys case-insensitively,
// the last of repeated keys winning) and by DynamoDB (case-sensitive):
// an object that repeats a key, in any case, is refused.
func parseRequestTables(body []byte) (*requestTables, error) {
	top, err := jsonObject(body)
	if err != nil {
		return nil, err
	}
	rt := &requestTables{}
	if err := stringField(top, "TableName", &rt.TableName); err != nil {
		return nil, err
	}
	for _, f := range []string{"TableArn", "ResourceArn"} {
		var arn string
		if err := stringField(top, f, &arn); err != nil {
			return nil, err
		}
		if arn != "" {
			rt.ARNs = append(rt.ARNs, arnTable(arn))
		}
	}
	if raw, ok := top[foldKey("RequestItems")]; ok {
		var items map[string]json.RawMessage
		if err := json.Unmarshal(raw, &items); err != nil {
			return nil, serializationf("RequestItems: %v", err)
		}
		rt.RequestItems = sortedNames(items)
	}
	if raw, ok := top[foldKey("TransactItems")]; ok {
		var list []json.RawMessage
		if err := json.Unmarshal(raw, &list); err != nil {
			return nil, serializationf("TransactItems: %v", err)
		}
		for _, el := range list {
			actions, err := jsonObject(el)
			if err != nil {
				return nil, err
			}
			for _, k := range sortedNames(actions) {
				action, err := jsonObject(actions[k])
				if err != nil {
					return nil, err
				}
				var name string
				if err := stringField(action, "TableName", &name); err != nil {
					return nil, err
				}
				rt.TransactItems = append(rt.TransactItems, name)
			}
		}
	}
	return rt, nil
}

// arnTable is the table of a DynamoDB ARN
// (arn:aws:dynamodb:<region>:<account>:table/<name>[/index/...]), or
// AllTables when it names none.
func arnTable(arn string) string {
	f := strings.SplitN(arn, ":", 6)
	if len(f) != 6 || f[0] != "arn" || f[2] != "dynamodb" {
		return auth.AllTables
	}
	rest, ok := strings.CutPrefix(f[5], "table/")
	if !ok {
		return auth.AllTables
	}
	name, _, _ := strings.Cut(rest, "/")
	if name == "" {
		return auth.AllTables
	}
	return name
}

// jsonObject decodes a JSON object into its members, keyed by foldKey;
// empty input and null are an empty object. A key given twice (in any
// case) is refused.
func jsonObject(raw []byte) (map[string]json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	tok, err := dec.Token()
	if errors.Is(err, io.EOF) || err == nil && tok == nil {
		return nil, nil
	}
	if err != nil {
		return nil, serializationf("malformed JSON: %v", err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, serializationf("expected a JSON object")
	}
	m := map[string]json.RawMessage{}
	for dec.More() {
		kt, err := dec.Token()
		if err != nil {
			return nil, serializationf("malformed JSON: %v", err)
		}
		k, _ := kt.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, serializationf("malformed JSON: %v", err)
		}
		fk := foldKey(k)
		if _, dup := m[fk]; dup {
			return nil, serializationf("key %q is given twice (keys that differ only in case count as the same)", k)
		}
		m[fk] = v
	}
	if _, err := dec.Token(); err != nil {
		return nil, serializationf("malformed JSON: %v", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, serializationf("malformed JSON: data after the object")
	}
	return m, nil
}

// stringField decodes member name of m (matched as encoding/json matches
// struct fields, case-insensitively) into dst.
func stringField(m map[string]json.RawMessage, name string, dst *string) error {
	raw, ok := m[foldKey(name)]
	if !ok {
		return nil
	}
	if err := json.Unmarshal(raw, dst); err != nil {
		return serializationf("%s: expected a string", name)
	}
	return nil
}

// foldKey maps each rune to the smallest of its Unicode simple case
// folding orbit: foldKey(a) == foldKey(b) exactly when strings.EqualFold(a, b),
// which is how encoding/json matches keys to struct fields.
func foldKey(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	for _, r := range s {
		low := r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			low = min(low, f)
		}
		b.WriteRune(low)
	}
	return b.String()
}
