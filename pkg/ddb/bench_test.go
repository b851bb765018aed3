package ddb

import "testing"

// benchLine is shaped like the real airline export line: 15 attributes,
// mostly short strings.
var benchLine = []byte(`{"Item":{"Passenger ID":{"N":"49010"},"Country Name":{"S":"China"},"Departure Date":{"S":"2/4/2022"},"Arrival Airport":{"S":"ZAT"},"Pilot Name":{"S":"Isak McCambrois"},"Last Name":{"S":"McCambrois"},"Continents":{"S":"Asia"},"First Name":{"S":"Isak"},"Flight Status":{"S":"Cancelled"},"Airport Name":{"S":"Zhaotong Airport"},"Gender":{"S":"Male"},"Airport Country Code":{"S":"CN"},"Airport Continent":{"S":"AS"},"Age":{"N":"69"},"Tags":{"SS":["a","b","c"]}}}`)

func benchItem(b *testing.B) Item {
	rec, err := DecodeJSONExportLine(benchLine)
	if err != nil {
		b.Fatal(err)
	}
	return rec.Item
}

func BenchmarkDecodeJSONExportLine(b *testing.B) {
	b.SetBytes(int64(len(benchLine)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeJSONExportLine(benchLine); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeIonExportLine(b *testing.B) {
	line := ionLine(benchItem(b), false)
	b.SetBytes(int64(len(line)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeIonExportLine(line); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncodeItem(b *testing.B) {
	it := benchItem(b)
	buf := AppendItem(nil, it)
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendItem(buf[:0], it)
	}
}

func BenchmarkDecodeItem(b *testing.B) {
	enc := EncodeItem(benchItem(b))
	b.SetBytes(int64(len(enc)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeItem(enc); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkNormalize(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Normalize("-1234.5678900E+10"); err != nil {
			b.Fatal(err)
		}
	}
}
