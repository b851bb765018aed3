package ddb

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// Seed corpora live in testdata/fuzz/<FuzzName>. Regenerate the generated
// part with: go test -run TestWriteFuzzSeeds -update-fuzz-seeds
var updateFuzzSeeds = flag.Bool("update-fuzz-seeds", false, "rewrite the generated seed files under testdata/fuzz")

func jsonSeeds() [][]byte {
	seeds := [][]byte{
		[]byte(`{"Item":{"pk":{"S":"a"},"n":{"N":"1.50"},"b":{"B":"AP8="},"t":{"BOOL":true},"z":{"NULL":true}}}`),
		[]byte(`{"Item":{"m":{"M":{"l":{"L":[{"SS":["a","b"]},{"NS":["1","-2E3"]},{"BS":["AQ=="]}]}}}}}`),
		[]byte(`{"Metadata":{"WriteTimestampMicros":{"N":"1695097218000000"}},"Keys":{"pk":{"S":"a"}},"NewImage":{"pk":{"S":"a"}},"OldImage":{"pk":{"S":"a"}}}`),
		[]byte(`{"Metadata":{"WriteTimestampMicros":"1695097218000000"},"Keys":{"pk":{"S":"a"}},"OldImage":null}`),
		[]byte(`{"pk":{"S":"x","N":null,"B":null,"SS":null,"NS":null,"BS":null,"M":null,"L":null,"NULL":null,"BOOL":null}}`),
		[]byte(`{"S":"\u00e9\ud834\udd1e\n"}`),
		[]byte(`{"Item":{"a":{"N":"1e999"}}}`),
		[]byte(`{"Item":{"a":{"SS":[]}}}`),
	}
	b, _ := MarshalDynamoDBJSON(everyType())
	seeds = append(seeds, append(append([]byte(`{"Item":`), b...), '}'))
	g := newGen(10)
	for range 4 {
		b, _ := MarshalDynamoDBJSON(g.item(0))
		seeds = append(seeds, append(append([]byte(`{"Item":`), b...), '}'))
	}
	return seeds
}

func ionSeeds() [][]byte {
	seeds := [][]byte{
		[]byte(awsDocIonLine),
		[]byte(`{Item:{s:'''a''' '''b''',n:[1_0, 0x1f, 0b1, 1.5e3, -0., 1d-5],b:{{AP8=}},z:null.null,q:'$dynamodb_BS'::[{{}}]}}`),
		[]byte("$ion_1_0 /* c */ {Metadata:{WriteTimestampMicros:1695097218000000},Keys:{pk:\"a\"},NewImage:{pk:\"a\"}} // end"),
		[]byte(`{Item:{"e":"\x41\u00e9\U0001D11E\0\
"}}`),
		[]byte(`{Item:{a:2007-01-01T}}`),
		[]byte(`{Item:{a:{{"clob"}}}}`),
	}
	seeds = append(seeds, ionLine(everyType(), false), ionLine(everyType(), true))
	g := newGen(11)
	for range 4 {
		seeds = append(seeds, ionLine(g.item(0), g.r.IntN(2) == 0))
	}
	return seeds
}

func normalizeSeeds() []string {
	return []string{"0", "-0", "1.0", "10E-1", "01", ".5", "5.", "+1", "1e+2", "1E-130", "1E-131", "1E125", "1E126",
		"9.9999999999999999999999999999999999999E+125", "12345678901234567890123456789012345678",
		"123456789012345678901234567890123456789", "1234567890123456789012345678901234567890", "0e99999999999999999999",
		"abc", "", "-", "1e", "1.2.3", "0x10", "1_000"}
}

func itemSeeds() [][]byte {
	seeds := [][]byte{EncodeItem(Item{}), EncodeItem(everyType()), {FormatV1, 1, 1, 'a', 0}, {2, 0}, {}}
	g := newGen(12)
	for range 4 {
		seeds = append(seeds, EncodeItem(g.item(0)))
	}
	return seeds
}

// checkDecodeError checks that a decoder error is an *Error wrapping one of
// the sentinels the decoders use.
func checkDecodeError(t *testing.T, err error) {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T) is not an *Error", err, err)
	}
	switch {
	case errors.Is(err, ErrSyntax), errors.Is(err, ErrInvalidValue), errors.Is(err, ErrInvalidNumber):
	default:
		t.Fatalf("error %v wraps no decoder sentinel", err)
	}
}

// checkItem checks the properties every decoded item must have: valid, and
// surviving every encoding this package writes unchanged.
func checkItem(t *testing.T, it Item) {
	t.Helper()
	if it == nil {
		return
	}
	if err := it.Validate(); err != nil {
		t.Fatalf("decoded an invalid item %v: %v", it, err)
	}
	enc := EncodeItem(it)
	dec, err := DecodeItem(enc)
	if err != nil {
		t.Fatalf("DecodeItem(EncodeItem(%v)): %v", it, err)
	}
	if !bytes.Equal(EncodeItem(dec), enc) {
		t.Fatalf("canonical encoding not stable for %v", it)
	}
	j, err := MarshalDynamoDBJSON(it)
	if err != nil {
		t.Fatal(err)
	}
	back, err := UnmarshalDynamoDBJSON(j)
	if err != nil {
		t.Fatalf("UnmarshalDynamoDBJSON(%s): %v", j, err)
	}
	if !bytes.Equal(EncodeItem(back), enc) {
		t.Fatalf("DynamoDB JSON round trip changed %v into %v", it, back)
	}
	plain, err := ItemToJSON(it)
	if err != nil || !json.Valid(plain) {
		t.Fatalf("ItemToJSON(%v) = %s, %v", it, plain, err)
	}
	for _, fancy := range []bool{false, true} {
		rec, err := DecodeIonExportLine(ionLine(it, fancy))
		if err != nil {
			t.Fatalf("Ion round trip of %v: %s: %v", it, ionLine(it, fancy), err)
		}
		if !bytes.Equal(EncodeItem(rec.Item), enc) {
			t.Fatalf("Ion round trip changed %v into %v", it, rec.Item)
		}
	}
}

func checkRecordItems(t *testing.T, rec ExportRecord) {
	t.Helper()
	if (rec.Item != nil) == (rec.Keys != nil) {
		t.Fatalf("record is neither full nor incremental: %+v", rec)
	}
	for _, it := range []Item{rec.Item, rec.Keys, rec.NewImage, rec.OldImage} {
		checkItem(t, it)
	}
}

func FuzzDecodeDynamoDBJSON(f *testing.F) {
	for _, s := range jsonSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		rec, err := DecodeJSONExportLine(data)
		if err == nil {
			if !json.Valid(data) {
				t.Fatalf("accepted invalid JSON %q", data)
			}
			checkRecordItems(t, rec)
		} else {
			checkDecodeError(t, err)
		}
		it, err := UnmarshalDynamoDBJSON(data)
		if err == nil {
			if !json.Valid(data) {
				t.Fatalf("accepted invalid JSON %q", data)
			}
			checkItem(t, it)
		} else {
			checkDecodeError(t, err)
		}
		v, err := UnmarshalValueDynamoDBJSON(data)
		if err == nil {
			checkItem(t, Item{"v": v})
		} else {
			checkDecodeError(t, err)
		}
	})
}

func FuzzDecodeIon(f *testing.F) {
	for _, s := range ionSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		rec, err := DecodeIonExportLine(data)
		if err != nil {
			checkDecodeError(t, err)
			var e *Error
			errors.As(err, &e)
			if e.Line < 1 || e.Column < 1 || e.Offset < 0 || e.Offset > len(data) {
				t.Fatalf("error %v has a bad position", err)
			}
			return
		}
		checkRecordItems(t, rec)
	})
}

// plainNumber is the syntax Normalize accepts.
var plainNumber = regexp.MustCompile(`^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$`)

func FuzzNormalize(f *testing.F) {
	for _, s := range normalizeSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out, err := Normalize(s)
		syntaxOK := plainNumber.MatchString(s)
		limits := err != nil && errorIs(err, "significant digits", "magnitude")
		if err == nil && !syntaxOK || err != nil && syntaxOK != limits {
			t.Fatalf("Normalize(%q) = %q, %v; but the syntax is valid: %v", s, out, err, syntaxOK)
		}
		if err != nil {
			if !errors.Is(err, ErrInvalidNumber) {
				t.Fatalf("Normalize(%q) error %v does not wrap ErrInvalidNumber", s, err)
			}
			return
		}
		if again, err := Normalize(out); err != nil || again != out {
			t.Fatalf("Normalize(%q) = %q, not a fixed point (%q, %v)", s, out, again, err)
		}
		if n, err := ParseN(s); err != nil || n.String() != out {
			t.Fatalf("ParseN(%q) = %v, %v, want %q", s, n, err, out)
		}
		d := canonicalDecimal(out)
		if len(d.digits) > MaxNumberDigits || d.digits != "" && (d.point-1 < MinNumberExponent || d.point-1 > MaxNumberExponent) {
			t.Fatalf("Normalize(%q) = %q is out of DynamoDB's limits", s, out)
		}
		if d.String() != out {
			t.Fatalf("canonicalDecimal(%q) formats as %q", out, d.String())
		}
		// Same value as math/big says, when the exponent is small enough
		// for big.Rat to expand cheaply.
		if len(s) < 400 && !hugeExponent(s) {
			var a, b big.Rat
			if _, ok := a.SetString(strings.TrimPrefix(s, "+")); ok {
				if _, ok := b.SetString(out); !ok || a.Cmp(&b) != 0 {
					t.Fatalf("Normalize(%q) = %q, a different value", s, out)
				}
			}
		}
	})
}

func errorIs(err error, msgs ...string) bool {
	for _, m := range msgs {
		if strings.Contains(err.Error(), m) {
			return true
		}
	}
	return false
}

func hugeExponent(s string) bool {
	i := strings.IndexAny(s, "eE")
	if i < 0 {
		return false
	}
	e := strings.TrimLeft(s[i+1:], "+-")
	e = strings.TrimLeft(e, "0")
	return len(e) > 3
}

func FuzzEncodeDecodeItem(f *testing.F) {
	for _, s := range itemSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		it, err := DecodeItem(data)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrUnknownFormat) {
				t.Fatalf("DecodeItem error %v wraps neither ErrCorrupt nor ErrUnknownFormat", err)
			}
			return
		}
		// Only canonical bytes decode: re-encoding gives the input back.
		if enc := EncodeItem(it); !bytes.Equal(enc, data) {
			t.Fatalf("DecodeItem accepted non-canonical bytes\n in %x\nout %x", data, enc)
		}
		checkItem(t, it)
	})
}

// TestWriteFuzzSeeds rewrites the generated seed corpora (seed-*) under
// testdata/fuzz when run with -update-fuzz-seeds; otherwise it checks that
// every fuzz target has a corpus. Inputs the fuzzer found are kept under
// their own names.
func TestWriteFuzzSeeds(t *testing.T) {
	corpora := map[string][]string{}
	for _, s := range jsonSeeds() {
		corpora["FuzzDecodeDynamoDBJSON"] = append(corpora["FuzzDecodeDynamoDBJSON"], fmt.Sprintf("[]byte(%q)", s))
	}
	for _, s := range ionSeeds() {
		corpora["FuzzDecodeIon"] = append(corpora["FuzzDecodeIon"], fmt.Sprintf("[]byte(%q)", s))
	}
	for _, s := range normalizeSeeds() {
		corpora["FuzzNormalize"] = append(corpora["FuzzNormalize"], fmt.Sprintf("string(%q)", s))
	}
	for _, s := range itemSeeds() {
		corpora["FuzzEncodeDecodeItem"] = append(corpora["FuzzEncodeDecodeItem"], fmt.Sprintf("[]byte(%q)", s))
	}
	for name, entries := range corpora {
		dir := filepath.Join("testdata", "fuzz", name)
		if !*updateFuzzSeeds {
			if files, _ := filepath.Glob(filepath.Join(dir, "seed-*")); len(files) == 0 {
				t.Errorf("no seed corpus in %s; run go test -run TestWriteFuzzSeeds -update-fuzz-seeds", dir)
			}
			continue
		}
		old, _ := filepath.Glob(filepath.Join(dir, "seed-*"))
		for _, f := range old {
			if err := os.Remove(f); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			content := "go test fuzz v1\n" + e + "\n"
			sum := sha256.Sum256([]byte(content))
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed-%x", sum[:8])), []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}
