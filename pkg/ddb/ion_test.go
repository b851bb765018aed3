package ddb

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

// The example from DynamoDB's export documentation, on one line and as
// printed there (spread over lines).
const awsDocIonLine = `$ion_1_0 {Item:{Authors:$dynamodb_SS::["Author1","Author2"],Dimensions:"8.5 x 11.0 x 1.5",ISBN:"333-3333333333",Id:103.,InPublication:false,PageCount:6d2,Price:2d3,ProductCategory:"Book",Title:"Book 103 Title"}}`

var awsDocIonItem = Item{
	"Authors":         SS{"Author1", "Author2"},
	"Dimensions":      S("8.5 x 11.0 x 1.5"),
	"ISBN":            S("333-3333333333"),
	"Id":              MustN("103"),
	"InPublication":   Bool(false),
	"PageCount":       MustN("600"),
	"Price":           MustN("2000"),
	"ProductCategory": S("Book"),
	"Title":           S("Book 103 Title"),
}

func TestDecodeIonExportLine(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     Item
	}{
		{"aws doc", awsDocIonLine, awsDocIonItem},
		{"aws doc multi-line", `$ion_1_0 {
    Item:{
        Authors:$dynamodb_SS::["Author1","Author2"],
        Dimensions:"8.5 x 11.0 x 1.5",
        ISBN:"333-3333333333",
        Id:103.,
        InPublication:false,
        PageCount:6d2,
        Price:2d3,
        ProductCategory:"Book",
        Title:"Book 103 Title"
    }
}`, awsDocIonItem},
		{"no version marker", `{Item:{id:"a"}}`, Item{"id": S("a")}},
		{"two version markers", `$ion_1_0 $ion_1_0 {Item:{id:"a"}}`, Item{"id": S("a")}},
		{"quoted field names", `{"Item":{"first name":"a",'it\'s':"b",'''long''' '''name''':"c",'null':"d",string:"e",'$10':"f"}}`,
			Item{"first name": S("a"), "it's": S("b"), "longname": S("c"), "null": S("d"), "string": S("e"), "$10": S("f")}},
		{"every scalar", `{Item:{s:"x",e:"",n:1.5,b:{{AP8Q}},eb:{{}},t:true,f:false,z:null,zz:null.null}}`,
			Item{"s": S("x"), "e": S(""), "n": MustN("1.5"), "b": B{0, 0xff, 0x10}, "eb": B{}, "t": Bool(true), "f": Bool(false), "z": Null{}, "zz": Null{}}},
		{"blob with whitespace", "{Item:{b:{{ AP8Q\n YQ== }}}}", Item{"b": B{0, 0xff, 0x10, 'a'}}},
		{"containers", `{Item:{m:{a:{b:[1,[true],{}]}},l:[],e:{}}}`,
			Item{"m": M{"a": M{"b": L{MustN("1"), L{Bool(true)}, M{}}}}, "l": L{}, "e": M{}}},
		{"sets", `{Item:{ss:$dynamodb_SS::["a",'''b'''],ns:$dynamodb_NS::[1.,2d0,3,0x4,5e0],bs:$dynamodb_BS::[{{AQ==}},{{}}],q:'$dynamodb_SS'::["x"]}}`,
			Item{"ss": SS{"a", "b"}, "ns": NS{MustN("1"), MustN("2"), MustN("3"), MustN("4"), MustN("5")}, "bs": BS{{1}, {}}, "q": SS{"x"}}},
		{"set annotation spacing", `{Item:{ss:$dynamodb_SS :: /* c */ [ "a" , ] }}`, Item{"ss": SS{"a"}}},
		{"numbers", `{Item:{a:0,b:-0,c:-0.,d:0.,e:123.,f:1.5,g:1d5,h:1D-5,i:-1.5d+2,j:1_000,k:1_0.0_1,l:0x1F,m:-0xff,n:0b101,o:0B1_1,p:1e5,q:1.5E-3,r:0.,s:12345678901234567890123456789012345678.,t:9.9999999999999999999999999999999999999d125,u:1d-130,v:0d99999,w:0x0}}`,
			Item{"a": MustN("0"), "b": MustN("0"), "c": MustN("0"), "d": MustN("0"), "e": MustN("123"), "f": MustN("1.5"),
				"g": MustN("100000"), "h": MustN("0.00001"), "i": MustN("-150"), "j": MustN("1000"), "k": MustN("10.01"),
				"l": MustN("31"), "m": MustN("-255"), "n": MustN("5"), "o": MustN("3"), "p": MustN("100000"), "q": MustN("0.0015"),
				"r": MustN("0"), "s": MustN("12345678901234567890123456789012345678"), "t": MustN("9.9999999999999999999999999999999999999E125"),
				"u": MustN("1E-130"), "v": MustN("0"), "w": MustN("0")}},
		{"numbers before delimiters", `{Item:{a:[1,2.,3d0,4e0],b:1/* c */,c:2// c
}}`, Item{"a": L{MustN("1"), MustN("2"), MustN("3"), MustN("4")}, "b": MustN("1"), "c": MustN("2")}},
		{"escapes", `{Item:{s:"\a\b\t\n\f\r\v\?\0\'\"\/\\\x41\u00e9\U0001D11E\ud834\udd1e",nl:"a\
b"}}`, Item{"s": S("\a\b\t\n\f\r\v?\x00'\"/\\Aé𝄞𝄞"), "nl": S("ab")}},
		{"escaped CRLF", "{Item:{s:\"a\\\r\nb\"}}", Item{"s": S("ab")}},
		{"raw unicode", `{Item:{s:"下野 𝄞",'ключ':"v"}}`, Item{"s": S("下野 𝄞"), "ключ": S("v")}},
		{"long strings", "{Item:{s:'''a\nb''' // c\n '''c''' /* d */ '''\\'\\'\\'''',t:'''''',u:'''it's'''}}",
			Item{"s": S("a\nbc'''"), "t": S(""), "u": S("it's")}},
		{"whitespace and comments", "// lead\n$ion_1_0 /* x */ {\tItem\v:\f{ a : \"b\" , } , } // trail", Item{"a": S("b")}},
		{"trailing commas", `{Item:{l:[1,],m:{a:1,},},}`, Item{"l": L{MustN("1")}, "m": M{"a": MustN("1")}}},
		{"CRLF line end", "{Item:{a:\"b\"}}\r\n", Item{"a": S("b")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec, err := DecodeIonExportLine([]byte(tc.in))
			if err != nil {
				t.Fatalf("error: %v", err)
			}
			if rec.Incremental() {
				t.Fatal("Incremental() = true")
			}
			if !reflect.DeepEqual(rec.Item, tc.want) {
				t.Fatalf("got  %#v\nwant %#v", rec.Item, tc.want)
			}
		})
	}
}

func TestDecodeIonIncremental(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     ExportRecord
	}{
		{"new and old", `{Metadata:{WriteTimestampMicros:1695097218000000},Keys:{pk:"a"},NewImage:{pk:"a",v:2.},OldImage:{pk:"a",v:1.}}`,
			ExportRecord{Keys: Item{"pk": S("a")}, NewImage: Item{"pk": S("a"), "v": MustN("2")}, OldImage: Item{"pk": S("a"), "v": MustN("1")}, WriteTimestampMicros: 1695097218000000}},
		{"delete, decimal and string timestamp", `$ion_1_0 {Keys:{pk:"a"},OldImage:{pk:"a"},NewImage:null,Metadata:{Other:"x",WriteTimestampMicros:"17"}}`,
			ExportRecord{Keys: Item{"pk": S("a")}, OldImage: Item{"pk": S("a")}, WriteTimestampMicros: 17}},
		{"decimal timestamp", `{Metadata:{WriteTimestampMicros:17d0},Keys:{pk:"a"}}`,
			ExportRecord{Keys: Item{"pk": S("a")}, WriteTimestampMicros: 17}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec, err := DecodeIonExportLine([]byte(tc.in))
			if err != nil {
				t.Fatalf("error: %v", err)
			}
			if !reflect.DeepEqual(rec, tc.want) {
				t.Fatalf("got  %+v\nwant %+v", rec, tc.want)
			}
		})
	}
}

func TestDecodeIonRejects(t *testing.T) {
	for _, tc := range []struct {
		in        string
		kind      error
		path, msg string
		line, col int
	}{
		{"", ErrSyntax, "", "no record on the line", 1, 1},
		{"$ion_1_0", ErrSyntax, "", "no record on the line", 1, 9},
		{"$ion_1_1 {Item:{}}", ErrSyntax, "", "unsupported Ion version marker $ion_1_1", 1, 1},
		{"$ion_1_0::{Item:{}}", ErrSyntax, "", "annotations on top-level values", 1, 1},
		{"foo {Item:{}}", ErrSyntax, "", `unexpected top-level "foo"`, 1, 1},
		{"[1]", ErrSyntax, "", "unexpected '[', want a {Item:...} struct", 1, 1},
		{"{Item:{}} {Item:{}}", ErrSyntax, "", "more than one record", 1, 11},
		{"{Item:{}", ErrSyntax, "", "unexpected end of input, want ',' or '}'", 1, 9},
		{"{Item:{a:1 b:2}}", ErrSyntax, "Item", "want ',' or '}'", 1, 12},
		{"{Item:{a::1}}", ErrSyntax, "Item", "want ':' after field name", 1, 9},
		{"{Item:{,}}", ErrSyntax, "Item", "want a field name", 1, 8},
		{"{Item:{a:1,,}}", ErrSyntax, "Item", "want a field name", 1, 12},
		{"{Item:[]}", ErrInvalidValue, "Item", "Item must be a struct", 1, 7},
		{"{Item:{}, Extra:1}", ErrSyntax, "", `unknown field "Extra"`, 1, 11},
		{"{Item:{},Item:{}}", ErrSyntax, "", `duplicate field "Item"`, 1, 10},
		{"{}", ErrInvalidValue, "", "neither Item nor Keys", 1, 1},
		{"{Keys:{a:1}}", ErrInvalidValue, "", "without Metadata.WriteTimestampMicros", 1, 1},
		{"{Keys:{a:1},Metadata:{WriteTimestampMicros:-1}}", ErrInvalidValue, "Metadata.WriteTimestampMicros", "non-negative", 1, 44},
		{"{Item:{},Keys:{a:1},Metadata:{WriteTimestampMicros:1}}", ErrInvalidValue, "", "mixes", 1, 1},
		{"{Item:{a:1,a:2}}", ErrInvalidValue, "Item", `duplicate attribute name "a"`, 1, 12},
		{"{Item:{null:1}}", ErrSyntax, "Item", "keyword null must be quoted", 1, 8},
		{"{Item:{$10:1}}", ErrSyntax, "Item", "symbol ID $10", 1, 8},
		{"{Item:{a:b}}", ErrSyntax, "Item.a", `symbol value "b" is not supported`, 1, 10},
		{"{Item:{a:'b'}}", ErrSyntax, "Item.a", `symbol value "b" is not supported`, 1, 10},
		{"{Item:{a:foo::\"x\"}}", ErrSyntax, "Item.a", `unsupported annotation "foo"`, 1, 10},
		{"{Item:{a:$dynamodb_SS::$dynamodb_SS::[\"x\"]}}", ErrSyntax, "Item.a", "more than one annotation", 1, 24},
		{"{Item:{a:$dynamodb_SS::\"x\"}}", ErrInvalidValue, "Item.a", "must annotate a list", 1, 24},
		{"{Item:{a:$dynamodb_SS::null}}", ErrInvalidValue, "Item.a", "must annotate a list", 1, 24},
		{"{Item:{a:$dynamodb_SS::'x'::[]}}", ErrSyntax, "Item.a", "more than one annotation", 1, 24},
		{"{Item:{a:$dynamodb_SS::[]}}", ErrInvalidValue, "Item.a", "empty set", 1, 10},
		{"{Item:{a:$dynamodb_SS::[1]}}", ErrInvalidValue, "Item.a[0]", "SS member must be a string, not N", 1, 25},
		{"{Item:{a:$dynamodb_NS::[\"1\"]}}", ErrInvalidValue, "Item.a[0]", "NS member must be a number, not S", 1, 25},
		{"{Item:{a:$dynamodb_BS::[null]}}", ErrInvalidValue, "Item.a[0]", "BS member must be a blob, not NULL", 1, 25},
		{"{Item:{a:$dynamodb_NS::[1,1.0]}}", ErrInvalidValue, "Item.a[1]", "duplicate set member", 1, 27},
		{"{Item:{a:$dynamodb_SS::[\"x\",'''x''']}}", ErrInvalidValue, "Item.a[1]", "duplicate set member", 1, 29},
		{"{Item:{a:(1 2)}}", ErrSyntax, "Item.a", "s-expressions are not supported", 1, 10},
		{"{Item:{a:2007-01-01T}}", ErrSyntax, "Item.a", "timestamps are not supported", 1, 10},
		{"{Item:{a:2007T}}", ErrSyntax, "Item.a", "timestamps are not supported", 1, 10},
		{"{Item:{a:{{\"clob\"}}}}", ErrSyntax, "Item.a", "clobs are not supported", 1, 10},
		{"{Item:{a:{{'''clob'''}}}}", ErrSyntax, "Item.a", "clobs are not supported", 1, 10},
		{"{Item:{a:{{AQ}}}}", ErrInvalidValue, "Item.a", "invalid base64", 1, 10},
		{"{Item:{a:{{AQ==}x}}}", ErrSyntax, "Item.a", "want }} to end the blob", 1, 16},
		{"{Item:{a:{{A!}}}}", ErrSyntax, "Item.a", "want base64 in blob", 1, 13},
		{"{Item:{a:{{AQ==", ErrSyntax, "Item.a", "unterminated blob", 1, 10},
		{"{Item:{a:null.string}}", ErrSyntax, "Item.a", "typed null null.string", 1, 10},
		{"{Item:{a:null.foo}}", ErrSyntax, "Item.a", "unknown typed null null.foo", 1, 10},
		{"{Item:{a:null.}}", ErrSyntax, "Item.a", "want a type name after null.", 1, 15},
		{"{Item:{a:nan}}", ErrInvalidNumber, "Item.a", "nan is not a DynamoDB number", 1, 10},
		{"{Item:{a:+inf}}", ErrInvalidNumber, "Item.a", "+inf is not a DynamoDB number", 1, 10},
		{"{Item:{a:-inf}}", ErrInvalidNumber, "Item.a", "-inf is not a DynamoDB number", 1, 10},
		{"{Item:{a:+1}}", ErrSyntax, "Item.a", "unexpected '+', want a value", 1, 10},
		{"{Item:{a:007}}", ErrSyntax, "Item.a", "leading zeros", 1, 10},
		{"{Item:{a:0_1}}", ErrSyntax, "Item.a", "leading zeros", 1, 10},
		{"{Item:{a:1__0}}", ErrSyntax, "Item.a", "'_' in a number", 1, 11},
		{"{Item:{a:1_}}", ErrSyntax, "Item.a", "'_' in a number", 1, 11},
		{"{Item:{a:1._5}}", ErrSyntax, "Item.a", "want a delimiter after the number", 1, 12},
		{"{Item:{a:1e}}", ErrSyntax, "Item.a", "want exponent digits", 1, 12},
		{"{Item:{a:1e_5}}", ErrSyntax, "Item.a", "want exponent digits", 1, 12},
		{"{Item:{a:1x}}", ErrSyntax, "Item.a", "want a delimiter after the number", 1, 11},
		{"{Item:{a:-}}", ErrSyntax, "Item.a", "want a digit", 1, 11},
		{"{Item:{a:0x}}", ErrSyntax, "Item.a", "want a base-16 digit", 1, 12},
		{"{Item:{a:0b12}}", ErrSyntax, "Item.a", "want a delimiter after the number", 1, 13},
		{"{Item:{a:1d126}}", ErrInvalidNumber, "Item.a", "magnitude above", 1, 10},
		{"{Item:{a:1d-131}}", ErrInvalidNumber, "Item.a", "magnitude below", 1, 10},
		{"{Item:{a:1234567890123456789012345678901234567891.}}", ErrInvalidNumber, "Item.a", "40 significant digits", 1, 10},
		{"{Item:{a:0x" + strings.Repeat("f", 106) + "}}", ErrInvalidNumber, "Item.a", "magnitude above", 1, 10},
		{"{Item:{a:0x" + strings.Repeat("f", 40) + "}}", ErrInvalidNumber, "Item.a", "significant digits", 1, 10},
		{"{Item:{a:\"x}}", ErrSyntax, "Item.a", "unterminated string", 1, 10},
		{"{Item:{a:'''x}}", ErrSyntax, "Item.a", "unterminated string", 1, 10},
		{"{Item:{a:'x}}", ErrSyntax, "Item.a", "unterminated quoted symbol", 1, 10},
		{"{Item:{a:\"x\ny\"}}", ErrSyntax, "Item.a", "control character 0x0a must be escaped", 1, 12},
		{"{Item:{a:\"x\x01\"}}", ErrSyntax, "Item.a", "control character 0x01", 1, 12},
		{"{Item:{a:\"\xff\"}}", ErrInvalidValue, "Item.a", "not valid UTF-8", 1, 11},
		{"{Item:{a:\"\\q\"}}", ErrSyntax, "Item.a", `invalid escape \q`, 1, 11},
		{"{Item:{a:\"\\x4\"}}", ErrSyntax, "Item.a", `invalid \x escape`, 1, 11},
		{"{Item:{a:\"\\ud800\"}}", ErrInvalidValue, "Item.a", "not a Unicode scalar value", 1, 11},
		{"{Item:{a:\"\\udc00\\ud800\"}}", ErrInvalidValue, "Item.a", "not a Unicode scalar value", 1, 11},
		{"{Item:{a:\"\\U00110000\"}}", ErrInvalidValue, "Item.a", "not a Unicode scalar value", 1, 11},
		{"{Item:{a:\"\\UFFFFFFFF\"}}", ErrInvalidValue, "Item.a", "not a Unicode scalar value", 1, 11},
		{"{Item:{a:1 /* x }}", ErrSyntax, "Item", "unterminated /* comment", 1, 12},
		{"{Item:{\n  a:\n  [1,\n   {b:@}]}}", ErrSyntax, "Item.a[1].b", "unexpected '@', want a value", 4, 7},
		{"{Item:{a:" + strings.Repeat("[", MaxDepth+1) + strings.Repeat("]", MaxDepth+1) + "}}", ErrInvalidValue,
			"Item.a" + strings.Repeat("[0]", MaxDepth), "nested more than 32 levels deep", 1, 10 + MaxDepth},
		{"{Item:{a:" + strings.Repeat("{b:", 1<<16), ErrInvalidValue, "Item.a" + strings.Repeat(".b", MaxDepth), "nested more than", 1, 10 + 3*MaxDepth},
		{"{Item:{a:\"x\"}}\x00", ErrSyntax, "", "unexpected byte 0x00", 1, 15},
		{"{Item:{a:1}}é", ErrSyntax, "", "unexpected 'é'", 1, 13},
	} {
		t.Run(tc.in, func(t *testing.T) {
			rec, err := DecodeIonExportLine([]byte(tc.in))
			if err == nil {
				t.Fatalf("got %+v, want error", rec)
			}
			var e *Error
			if !errors.As(err, &e) || !errors.Is(err, tc.kind) {
				t.Fatalf("error %v: want %v", err, tc.kind)
			}
			if e.Path != tc.path || !strings.Contains(e.Msg, tc.msg) || e.Line != tc.line || e.Column != tc.col {
				t.Fatalf("error %q:\n path %q msg %q line %d col %d\nwant path %q msg containing %q line %d col %d",
					err, e.Path, e.Msg, e.Line, e.Column, tc.path, tc.msg, tc.line, tc.col)
			}
		})
	}
}

func TestIonRoundTrip(t *testing.T) {
	items := []Item{everyType(), {}}
	g := newGen(3)
	for range 1000 {
		items = append(items, g.item(0))
	}
	for i, it := range items {
		for _, fancy := range []bool{false, true} {
			line := ionLine(it, fancy)
			rec, err := DecodeIonExportLine(line)
			if err != nil {
				t.Fatalf("item %d (fancy %v): %s\n%v", i, fancy, line, err)
			}
			mustEqualItems(t, rec.Item, it)
		}
	}
}
