package ddb

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestUnmarshalValueDynamoDBJSON(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Value
	}{
		{`{"S":"x"}`, S("x")},
		{`{"S":""}`, S("")},
		{`{"S":"\u00e9\ud834\udd1e\n\t\"\\\/\b\f\r"}`, S("é𝄞\n\t\"\\/\b\f\r")},
		{`{"S":"下野"}`, S("下野")},
		{`{"N":"1"}`, MustN("1")},
		{`{"N":"-12.50E1"}`, MustN("-125")},
		{`{"N":"12345678901234567890123456789012345678"}`, MustN("12345678901234567890123456789012345678")},
		{`{"B":"AP8Q"}`, B{0x00, 0xff, 0x10}},
		{`{"B":""}`, B{}},
		{`{"BOOL":true}`, Bool(true)},
		{`{"BOOL":false}`, Bool(false)},
		{`{"NULL":true}`, Null{}},
		{`{"M":{}}`, M{}},
		{`{"M":{"a":{"S":"b"},"n":{"M":{"x":{"NULL":true}}}}}`, M{"a": S("b"), "n": M{"x": Null{}}}},
		{`{"L":[]}`, L{}},
		{`{"L":[{"S":"a"},{"N":"1"},{"L":[{"BOOL":false}]}]}`, L{S("a"), MustN("1"), L{Bool(false)}}},
		{`{"SS":["a","b",""]}`, SS{"a", "b", ""}},
		{`{"NS":["1","2.5","-3"]}`, NS{MustN("1"), MustN("2.5"), MustN("-3")}},
		{`{"BS":["AQ==","Ag==",""]}`, BS{{1}, {2}, {}}},
		{" \t\r\n{ \"S\" : \"x\" } \r\n", S("x")},
		// Padded form written by some SDKs.
		{`{"S":"x","N":null,"B":null,"SS":null,"NS":null,"BS":null,"M":null,"L":null,"NULL":null,"BOOL":null}`, S("x")},
		{`{"N":null,"B":null,"NULL":true}`, Null{}},
		{`{"BOOL":null,"L":[{"S":"x","N":null}]}`, L{S("x")}},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := UnmarshalValueDynamoDBJSON([]byte(tc.in))
			if err != nil {
				t.Fatalf("error: %v", err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %#v, want %#v", got, tc.want)
			}
		})
	}
}

func TestUnmarshalDynamoDBJSONErrors(t *testing.T) {
	for _, tc := range []struct {
		in   string
		kind error
		path string
		msg  string
	}{
		{``, ErrSyntax, "", "unexpected end of input"},
		{`[]`, ErrSyntax, "", "unexpected '['"},
		{`{"a":{"S":"x"}`, ErrSyntax, "", "unexpected end of input"},
		{`{"a":{"S":"x"}}x`, ErrSyntax, "", "after the value"},
		{`{"a":{"S":"x"},}`, ErrSyntax, "", "want string (object key)"},
		{`{"a":{"S":"x"} "b":{}}`, ErrSyntax, "", "want ',' or '}'"},
		{`{a:{"S":"x"}}`, ErrSyntax, "", "want string"},
		{`{"a":{"S":"x"},"a":{"S":"y"}}`, ErrInvalidValue, "", `duplicate attribute name "a"`},
		{`{"a":{"X":"x"}}`, ErrInvalidValue, "a", `unknown type descriptor "X"`},
		{`{"a":{"s":"x"}}`, ErrInvalidValue, "a", `unknown type descriptor "s"`},
		{`{"a":{}}`, ErrInvalidValue, "a", "has no type"},
		{`{"a":{"S":null}}`, ErrInvalidValue, "a", "has no type"},
		{`{"a":{"S":"x","N":"1"}}`, ErrInvalidValue, "a", "more than one type: S and N"},
		{`{"a":{"S":"x","S":"y"}}`, ErrInvalidValue, "a", "duplicate type descriptor S"},
		{`{"a":{"S":1}}`, ErrSyntax, "a", "want '\"'"},
		{`{"a":{"S":"\x"}}`, ErrSyntax, "a", `invalid escape \x`},
		{`{"a":{"S":"\u12"}}`, ErrSyntax, "a", `invalid \u escape`},
		{`{"a":{"S":"\ud800"}}`, ErrInvalidValue, "a", "unpaired UTF-16 surrogate"},
		{`{"a":{"S":"\udc00\ud800"}}`, ErrInvalidValue, "a", "unpaired UTF-16 surrogate"},
		{"{\"a\":{\"S\":\"\xff\"}}", ErrInvalidValue, "a", "not valid UTF-8"},
		{"{\"\xff\":{\"S\":\"x\"}}", ErrInvalidValue, "", "not valid UTF-8"},
		{"{\"a\":{\"S\":\"x\ny\"}}", ErrSyntax, "a", "control character 0x0a"},
		{`{"a":{"S":"x`, ErrSyntax, "a", "unterminated string"},
		{`{"a":{"N":1}}`, ErrInvalidValue, "a", "N must be a string"},
		{`{"a":{"N":"1e999"}}`, ErrInvalidNumber, "a", "magnitude above"},
		{`{"a":{"N":""}}`, ErrInvalidNumber, "a", "empty"},
		{`{"a":{"N":"one"}}`, ErrInvalidNumber, "a", "not a number"},
		{`{"a":{"N":"1234567890123456789012345678901234567890"}}`, ErrInvalidNumber, "a", "39 significant digits"},
		{`{"a":{"B":"!!"}}`, ErrInvalidValue, "a", "invalid base64"},
		{`{"a":{"B":"AQ"}}`, ErrInvalidValue, "a", "invalid base64"},
		{`{"a":{"B":1}}`, ErrInvalidValue, "a", "B must be a base64 string"},
		{`{"a":{"BOOL":"true"}}`, ErrInvalidValue, "a", "BOOL must be true or false"},
		{`{"a":{"BOOL":tru}}`, ErrSyntax, "a", "want true"},
		{`{"a":{"BOOL":trueish}}`, ErrSyntax, "a", "delimiter after true"},
		{`{"a":{"NULL":false}}`, ErrInvalidValue, "a", "NULL must be true"},
		{`{"a":{"M":[]}}`, ErrInvalidValue, "a", "M must be an object"},
		{`{"a":{"L":{}}}`, ErrInvalidValue, "a", "L must be an array"},
		{`{"a":{"L":[{"S":"x"},]}}`, ErrSyntax, "a[1]", "unexpected ']'"},
		{`{"a":{"SS":[]}}`, ErrInvalidValue, "a", "empty set"},
		{`{"a":{"SS":"x"}}`, ErrInvalidValue, "a", "SS must be an array"},
		{`{"a":{"SS":["x","x"]}}`, ErrInvalidValue, "a[1]", "duplicate set member"},
		{`{"a":{"SS":[1]}}`, ErrInvalidValue, "a[0]", "SS members must be strings"},
		{`{"a":{"NS":["1","1.0"]}}`, ErrInvalidValue, "a[1]", "duplicate set member"},
		{`{"a":{"NS":["1","x"]}}`, ErrInvalidNumber, "a[1]", "not a number"},
		{`{"a":{"BS":["AQ==","AQ=="]}}`, ErrInvalidValue, "a[1]", "duplicate set member"},
		{`{"orders":{"L":[{"M":{"price":{"N":"1.2.3"}}}]}}`, ErrInvalidNumber, "orders[0].price", `"1.2.3"`},
		{`{"first name":{"M":{"x.y":{"N":"x"}}}}`, ErrInvalidNumber, `"first name"."x.y"`, "not a number"},
		{`{"a":` + strings.Repeat(`{"L":[`, MaxDepth+1) + `{"NULL":true}` + strings.Repeat(`]}`, MaxDepth+1) + `}`,
			ErrInvalidValue, "a" + strings.Repeat("[0]", MaxDepth), "nested more than 32 levels deep"},
		{`{"a":{"S":"x"}} {}`, ErrSyntax, "", "after the value"},
		{`{"a":{"N":"1",}}`, ErrSyntax, "a", "want string (object key)"},
		{`{"a":{"N":01}}`, ErrInvalidValue, "a", "N must be a string"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := UnmarshalDynamoDBJSON([]byte(tc.in))
			if err == nil {
				t.Fatalf("got %v, want error", got)
			}
			var e *Error
			if !errors.As(err, &e) || !errors.Is(err, tc.kind) {
				t.Fatalf("error %v: want %v", err, tc.kind)
			}
			if e.Path != tc.path || !strings.Contains(e.Msg, tc.msg) {
				t.Fatalf("error %q: path %q msg %q, want path %q msg containing %q", err, e.Path, e.Msg, tc.path, tc.msg)
			}
		})
	}
}

func TestUnmarshalDynamoDBJSONDeepInput(t *testing.T) {
	// Far deeper than MaxDepth must fail cleanly, not exhaust the stack.
	in := `{"a":` + strings.Repeat(`{"L":[`, 1<<16)
	if _, err := UnmarshalDynamoDBJSON([]byte(in)); !errors.Is(err, ErrInvalidValue) {
		t.Fatalf("error = %v", err)
	}
	in = `{"Metadata":{"x":` + strings.Repeat(`[`, 1<<16) + `}}`
	if _, err := DecodeJSONExportLine([]byte(in)); !errors.Is(err, ErrSyntax) {
		t.Fatalf("error = %v", err)
	}
}

func TestDecodeJSONExportLine(t *testing.T) {
	keys := Item{"pk": S("a"), "sk": MustN("1")}
	newImg := Item{"pk": S("a"), "sk": MustN("1"), "v": SS{"x"}}
	oldImg := Item{"pk": S("a"), "sk": MustN("1"), "v": SS{"y"}}
	const k = `"Keys":{"pk":{"S":"a"},"sk":{"N":"1.0"}}`
	const ni = `"NewImage":{"pk":{"S":"a"},"sk":{"N":"1"},"v":{"SS":["x"]}}`
	const oi = `"OldImage":{"pk":{"S":"a"},"sk":{"N":"1"},"v":{"SS":["y"]}}`
	for _, tc := range []struct {
		name, in string
		want     ExportRecord
	}{
		{"full", `{"Item":{"pk":{"S":"a"},"n":{"N":"01"}}}`, ExportRecord{Item: Item{"pk": S("a"), "n": MustN("1")}}},
		{"full CRLF", "{\"Item\":{\"pk\":{\"S\":\"a\"}}}\r", ExportRecord{Item: Item{"pk": S("a")}}},
		{"full empty item", `{"Item":{}}`, ExportRecord{Item: Item{}}},
		{"incremental N timestamp", `{"Metadata":{"WriteTimestampMicros":{"N":"1695097218000000"}},` + k + `,` + oi + `,` + ni + `}`,
			ExportRecord{Keys: keys, NewImage: newImg, OldImage: oldImg, WriteTimestampMicros: 1695097218000000}},
		{"incremental string timestamp", `{"Metadata":{"WriteTimestampMicros":"1695097218000000"},` + k + `,` + ni + `}`,
			ExportRecord{Keys: keys, NewImage: newImg, WriteTimestampMicros: 1695097218000000}},
		{"incremental number timestamp", `{"Metadata":{"WriteTimestampMicros":1234567890123456},` + k + `,` + ni + `}`,
			ExportRecord{Keys: keys, NewImage: newImg, WriteTimestampMicros: 1234567890123456}},
		{"incremental exponent timestamp", `{"Metadata":{"WriteTimestampMicros":1.695097218E+15},` + k + `,` + ni + `}`,
			ExportRecord{Keys: keys, NewImage: newImg, WriteTimestampMicros: 1695097218000000}},
		{"incremental delete", `{` + k + `,` + oi + `,"Metadata":{"WriteTimestampMicros":{"N":"1"},"Other":[1,{"x":null}]}}`,
			ExportRecord{Keys: keys, OldImage: oldImg, WriteTimestampMicros: 1}},
		{"incremental null images", `{"Metadata":{"WriteTimestampMicros":{"N":"5"}},` + k + `,"NewImage":null,"OldImage":null}`,
			ExportRecord{Keys: keys, WriteTimestampMicros: 5}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DecodeJSONExportLine([]byte(tc.in))
			if err != nil {
				t.Fatalf("error: %v", err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %+v\nwant %+v", got, tc.want)
			}
			if got.Incremental() != (tc.want.Keys != nil) {
				t.Fatalf("Incremental() = %v", got.Incremental())
			}
		})
	}
}

func TestDecodeExportLine(t *testing.T) {
	for _, tc := range []struct {
		format ExportFormat
		line   string
	}{
		{ExportDynamoDBJSON, `{"Item":{"id":{"S":"a"},"n":{"N":"1"}}}`},
		{ExportIon, `$ion_1_0 {Item:{id:"a",n:1.}}`},
	} {
		rec, err := DecodeExportLine(tc.format, []byte(tc.line))
		if err != nil {
			t.Fatalf("%s: %v", tc.format, err)
		}
		mustEqualItems(t, rec.Item, Item{"id": S("a"), "n": MustN("1")})
	}
	if _, err := DecodeExportLine("CSV", []byte("a,b")); !errors.Is(err, ErrSyntax) || !strings.Contains(err.Error(), "unknown export format") {
		t.Fatalf("DecodeExportLine(CSV) error = %v", err)
	}
}

func TestDecodeJSONExportLineErrors(t *testing.T) {
	const k = `"Keys":{"pk":{"S":"a"}}`
	const m = `"Metadata":{"WriteTimestampMicros":{"N":"1"}}`
	for _, tc := range []struct {
		in   string
		kind error
		path string
		msg  string
	}{
		{"", ErrSyntax, "", "empty line"},
		{"  \r", ErrSyntax, "", "empty line"},
		{`{}`, ErrInvalidValue, "", "neither Item nor Keys"},
		{`{"Item":{"a":{"S":"x"}},"Extra":1}`, ErrSyntax, "", `unknown field "Extra"`},
		{`{"item":{}}`, ErrSyntax, "", `unknown field "item"`},
		{`{"Item":{},"Item":{}}`, ErrSyntax, "", `duplicate field "Item"`},
		{`{"Item":null}`, ErrSyntax, "Item", "want '{'"},
		{`{"Item":{"a":{"N":"x"}}}`, ErrInvalidNumber, "Item.a", "not a number"},
		{`{"Item":{}, ` + k + `,` + m + `}`, ErrInvalidValue, "", "mixes"},
		{`{` + m + `}`, ErrInvalidValue, "", "without Keys"},
		{`{"Keys":{},` + m + `}`, ErrInvalidValue, "", "empty Keys"},
		{`{` + k + `}`, ErrInvalidValue, "", "without Metadata.WriteTimestampMicros"},
		{`{` + k + `,"Metadata":{}}`, ErrInvalidValue, "", "without Metadata.WriteTimestampMicros"},
		{`{` + k + `,"Metadata":{"WriteTimestampMicros":{"S":"1"}}}`, ErrInvalidValue, "Metadata.WriteTimestampMicros", "must be a number, not S"},
		{`{` + k + `,"Metadata":{"WriteTimestampMicros":"x"}}`, ErrInvalidValue, "Metadata.WriteTimestampMicros", "is not a number"},
		{`{` + k + `,"Metadata":{"WriteTimestampMicros":-1}}`, ErrInvalidValue, "Metadata.WriteTimestampMicros", "non-negative"},
		{`{` + k + `,"Metadata":{"WriteTimestampMicros":1.5}}`, ErrInvalidValue, "Metadata.WriteTimestampMicros", "non-negative 64-bit integer"},
		{`{` + k + `,"Metadata":{"WriteTimestampMicros":1,"WriteTimestampMicros":2}}`, ErrSyntax, "Metadata", "duplicate field"},
		{`{` + k + `,` + m + `,"NewImage":{"a":{"SS":[]}}}`, ErrInvalidValue, "NewImage.a", "empty set"},
		{`{"Item":{}} {"Item":{}}`, ErrSyntax, "", "after the value"},
		{`{` + k + `,"Metadata":{"WriteTimestampMicros":1.}}`, ErrSyntax, "Metadata.WriteTimestampMicros", "unexpected '}', want digit"},
		{`{` + k + `,"Metadata":{"WriteTimestampMicros":1e}}`, ErrSyntax, "Metadata.WriteTimestampMicros", "want digit"},
		{`{` + k + `,"Metadata":{"WriteTimestampMicros":-}}`, ErrSyntax, "Metadata.WriteTimestampMicros", "want digit"},
		{`{` + k + `,"Metadata":{"WriteTimestampMicros":01}}`, ErrSyntax, "Metadata", "want ',' or '}'"},
		{`{` + k + `,"Metadata":{"Other":[1,-2.5e+3,"x",true,false,null,{}],"WriteTimestampMicros":1}}x`, ErrSyntax, "", "after the value"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := DecodeJSONExportLine([]byte(tc.in))
			if err == nil {
				t.Fatalf("got %+v, want error", got)
			}
			var e *Error
			if !errors.As(err, &e) || !errors.Is(err, tc.kind) {
				t.Fatalf("error %v: want %v", err, tc.kind)
			}
			if e.Path != tc.path || !strings.Contains(e.Msg, tc.msg) {
				t.Fatalf("error %q: path %q msg %q, want path %q msg containing %q", err, e.Path, e.Msg, tc.path, tc.msg)
			}
		})
	}
}

func TestErrorMessage(t *testing.T) {
	_, err := DecodeJSONExportLine([]byte(`{"Item":{"Passenger ID":{"N":"49O10"}}}`))
	want := `ddb: invalid number at Item."Passenger ID" (offset 29): "49O10": unexpected 'O' at index 2`
	if err == nil || err.Error() != want {
		t.Fatalf("error = %v\nwant    %s", err, want)
	}
}

func TestMarshalDynamoDBJSON(t *testing.T) {
	it := Item{
		"s":  S("a\"b\\c\n\x01é"),
		"n":  MustN("1.50"),
		"b":  B{0xff},
		"t":  Bool(true),
		"z":  Null{},
		"m":  M{"y": L{S("x"), Bool(false)}, "x": M{}},
		"ss": SS{"b", "a"},
		"ns": NS{MustN("10"), MustN("9")},
		"bs": BS{{2}, {1}},
	}
	const want = `{"b":{"B":"/w=="},"bs":{"BS":["AQ==","Ag=="]},"m":{"M":{"x":{"M":{}},"y":{"L":[{"S":"x"},{"BOOL":false}]}}},` +
		`"n":{"N":"1.5"},"ns":{"NS":["9","10"]},"s":{"S":"a\"b\\c\n\u0001é"},"ss":{"SS":["a","b"]},"t":{"BOOL":true},"z":{"NULL":true}}`
	got, err := MarshalDynamoDBJSON(it)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	if !json.Valid(got) {
		t.Fatal("invalid JSON")
	}
	back, err := UnmarshalDynamoDBJSON(got)
	if err != nil {
		t.Fatal(err)
	}
	mustEqualItems(t, back, it)

	v, err := MarshalValueDynamoDBJSON(NS{MustN("2"), MustN("-1")})
	if err != nil || string(v) != `{"NS":["-1","2"]}` {
		t.Fatalf("MarshalValueDynamoDBJSON = %s, %v", v, err)
	}
	if _, err := MarshalValueDynamoDBJSON(L{nil}); !errors.Is(err, ErrInvalidValue) {
		t.Fatalf("MarshalValueDynamoDBJSON(L{nil}) error = %v", err)
	}
	if got, _ := MarshalDynamoDBJSON(nil); string(got) != "{}" {
		t.Fatalf("MarshalDynamoDBJSON(nil) = %s", got)
	}
}

func TestDynamoDBJSONRoundTrip(t *testing.T) {
	items := []Item{everyType(), {}}
	g := newGen(2)
	for range 1000 {
		items = append(items, g.item(0))
	}
	for i, it := range items {
		b, err := MarshalDynamoDBJSON(it)
		if err != nil {
			t.Fatalf("item %d: %v", i, err)
		}
		if !json.Valid(b) {
			t.Fatalf("item %d: invalid JSON %s", i, b)
		}
		back, err := UnmarshalDynamoDBJSON(b)
		if err != nil {
			t.Fatalf("item %d: %s: %v", i, b, err)
		}
		mustEqualItems(t, back, it)
		// Through a struct field with encoding/json, both ways.
		var rec struct{ NewImage Item }
		if err := json.Unmarshal(append(append([]byte(`{"NewImage":`), b...), '}'), &rec); err != nil {
			t.Fatalf("item %d: json.Unmarshal: %v", i, err)
		}
		mustEqualItems(t, rec.NewImage, it)
		out, err := json.Marshal(rec)
		if err != nil {
			t.Fatalf("item %d: json.Marshal: %v", i, err)
		}
		// encoding/json re-escapes some characters (U+2028, <, >), so
		// compare values, not bytes.
		var again struct{ NewImage Item }
		if err := json.Unmarshal(out, &again); err != nil {
			t.Fatalf("item %d: json.Unmarshal(%s): %v", i, out, err)
		}
		mustEqualItems(t, again.NewImage, it)
		// Plain JSON is valid JSON too.
		plain, err := ItemToJSON(it)
		if err != nil || !json.Valid(plain) {
			t.Fatalf("item %d: ItemToJSON = %s, %v", i, plain, err)
		}
	}
}

func TestItemString(t *testing.T) {
	if got := (Item{"a": S("x")}).String(); got != `{"a":{"S":"x"}}` {
		t.Errorf("String() = %s", got)
	}
	if got := (Item{"a": SS{}}).String(); !strings.HasPrefix(got, "<invalid item: invalid attribute value at a") {
		t.Errorf("String() of an invalid item = %s", got)
	}
	e := &Error{Err: ErrSyntax, Path: "a", Offset: -1, Line: 2, Column: 3, Msg: "m"}
	if got := e.Error(); got != "ddb: syntax error at a (line 2, column 3): m" {
		t.Errorf("Error() = %s", got)
	}
}

func TestItemJSONNull(t *testing.T) {
	var rec struct {
		Keys     Item
		NewImage Item
		OldImage Item
	}
	rec.OldImage = Item{"x": S("kept")}
	if err := json.Unmarshal([]byte(`{"Keys":{"id":{"S":"1"}},"NewImage":null}`), &rec); err != nil {
		t.Fatal(err)
	}
	if rec.NewImage != nil || rec.OldImage == nil || !EqualItems(rec.Keys, Item{"id": S("1")}) {
		t.Fatalf("got %+v", rec)
	}
	out, err := json.Marshal(struct{ I Item }{})
	if err != nil || string(out) != `{"I":null}` {
		t.Fatalf("json.Marshal(nil item) = %s, %v", out, err)
	}
	err = json.Unmarshal([]byte(`{"Keys":{"id":{"N":"x"}}}`), &rec)
	if !errors.Is(err, ErrInvalidNumber) {
		t.Fatalf("json.Unmarshal error = %v, want ErrInvalidNumber", err)
	}
}

func TestItemToJSON(t *testing.T) {
	it := Item{
		"s":   S("x\"y"),
		"n":   MustN("12345678901234567890123456789012345678"),
		"f":   MustN("-0.0015"),
		"big": MustN("1E125"),
		"b":   B("hi"),
		"t":   Bool(false),
		"z":   Null{},
		"m":   M{"l": L{MustN("1"), S("2")}},
		"ss":  SS{"b", "a"},
		"ns":  NS{MustN("10"), MustN("9.5")},
		"bs":  BS{{2}, {1}},
	}
	got, err := ItemToJSON(it)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"b":"aGk=","big":1` + strings.Repeat("0", 125) + `,"bs":["AQ==","Ag=="],"f":-0.0015,"m":{"l":[1,"2"]},` +
		`"n":12345678901234567890123456789012345678,"ns":[9.5,10],"s":"x\"y","ss":["a","b"],"t":false,"z":null}`
	if string(got) != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	var decoded map[string]any
	dec := json.NewDecoder(strings.NewReader(string(got)))
	dec.UseNumber()
	if err := dec.Decode(&decoded); err != nil {
		t.Fatal(err)
	}
	if decoded["n"] != json.Number("12345678901234567890123456789012345678") {
		t.Fatalf("number lost precision: %v", decoded["n"])
	}
}

// TestDecodeJSONBinary: B values decode to the bytes their JSON string
// holds in base64, whether written plainly (decoded in place) or with
// escapes (decoded as a string first); what is not base64 is refused.
func TestDecodeJSONBinary(t *testing.T) {
	for _, tc := range []struct {
		name, str string // str: the JSON string literal, quotes included
		want      []byte
		err       string
	}{
		{"plain", `"aGVsbG8="`, []byte("hello"), ""},
		{"empty", `""`, []byte{}, ""},
		{"no padding needed", `"AAEC"`, []byte{0, 1, 2}, ""},
		{"unicode escape", `"aGVsbG8\u003d"`, []byte("hello"), ""},
		{"escaped slash", `"a\/8="`, []byte{0x6b, 0xff}, ""},
		{"escaped newline, skipped as in DecodeString", `"aGVs\nbG8="`, []byte("hello"), ""},
		{"raw newline", "\"aGVs\nbG8=\"", nil, "control character"},
		{"raw CR", "\"aGVs\rbG8=\"", nil, "control character"},
		{"not base64", `"aGVsbG8"`, nil, "invalid base64"},
		{"not base64 characters", `"a*b="`, nil, "invalid base64"},
		{"non-ASCII", `"aGVsbG8é"`, nil, "invalid base64"},
		{"unterminated", `"aGVsbG8=`, nil, "unterminated string"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DecodeJSONExportLine([]byte(`{"Item":{"pk":{"S":"a"},"b":{"B":` + tc.str + `}}}`))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("got %v, %v; want an error with %q", got.Item, err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if b, ok := got.Item["b"].(B); !ok || !bytes.Equal(b, tc.want) || b == nil {
				t.Fatalf("got %#v, want B(%q)", got.Item["b"], tc.want)
			}
		})
	}
	// A B set decodes the same way.
	got, err := DecodeJSONExportLine([]byte(`{"Item":{"pk":{"S":"a"},"bs":{"BS":["AQ==","A\u0067=="]}}}`))
	if err != nil || !reflect.DeepEqual(got.Item["bs"], BS{{1}, {2}}) {
		t.Fatalf("got %v, %v", got.Item, err)
	}
}
