// Package ddb is the DynamoDB item model of Veltrix and its codecs: it reads
// the formats DynamoDB data arrives in (export files, Streams and Kinesis
// records), stores items in one canonical binary encoding, and writes them
// back out as DynamoDB JSON or plain JSON. The migrator uses it to import
// and verify tables; the DynamoDB-compatible endpoint will use the same
// encoding, so both read and write the same bytes.
//
// # Model
//
// An Item maps attribute names to Values. A Value is one of the ten
// DynamoDB types: S (string), N (number), B (binary), Bool, Null, M (map),
// L (list), SS, NS and BS (string, number and binary sets):
//
//	it := ddb.Item{
//		"id":    ddb.S("user#1"),
//		"score": ddb.MustN("12.50"), // stored as 12.5
//		"tags":  ddb.SS{"a", "b"},
//		"meta":  ddb.M{"seen": ddb.Bool(true), "avatar": ddb.B{0x89, 'P'}},
//	}
//
// Item.Validate checks the rules DynamoDB enforces on values: UTF-8 text,
// non-empty sets without duplicates, at most MaxDepth levels of M and L.
// Every decoder in this package enforces them too, so a decoded item is
// always valid.
//
// # Numbers
//
// DynamoDB numbers are decimals of up to 38 significant digits with
// magnitudes from 1E-130 to 9.9999999999999999999999999999999999999E+125.
// N holds the canonical text of one (see Normalize): plain notation with
// no exponent and no redundant zeros, as DynamoDB itself returns numbers, so
// 1, 1.0, 1E0, 01 and 10E-1 are all "1" and == on N is numeric equality.
// Numbers never pass through float64: N.Add and N.Sub are exact decimal
// arithmetic, and like DynamoDB they refuse a result they cannot store
// instead of rounding it (MsgNumberOverflow, MsgNumberUnderflow).
//
// # Input formats
//
// DynamoDB JSON, the wire format of the DynamoDB API, Streams and Kinesis
// Data Streams for DynamoDB ({"S":"x"}, {"N":"1"}, {"B":"base64"},
// {"M":{...}}, {"L":[...]}, {"SS":[...]}, {"NULL":true}, {"BOOL":true}):
// UnmarshalDynamoDBJSON decodes an attribute map, UnmarshalValueDynamoDBJSON
// one value, and *Item implements json.Unmarshaler, so the Keys, NewImage
// and OldImage of a stream record decode with encoding/json straight into
// Items. The parser is strict: duplicate keys, invalid UTF-8, unknown type
// descriptors, empty or duplicated sets, bad numbers and bad base64 are
// errors. It accepts the padded form some SDKs write, where every type key
// is present and all but one are null.
//
// DecodeJSONExportLine decodes a line of a DYNAMODB_JSON export to S3, full
// ({"Item":{...}}) or incremental ({"Metadata":{"WriteTimestampMicros":...},
// "Keys":{...},"NewImage":{...},"OldImage":{...}}); DecodeIonExportLine
// decodes a line of an ION export ($ion_1_0 {Item:{...}}) with a small
// strict reader for the subset of Ion text DynamoDB's Ion mapping uses (see
// its documentation for exactly what it accepts).
//
// Errors are *Error values that wrap a sentinel (ErrSyntax,
// ErrInvalidValue, ErrInvalidNumber, ...) and name the attribute path
// (Item.orders[2].price) and input position, so a rejected export line can
// be reported to a person with file, line and reason.
//
// # Canonical encoding
//
// EncodeItem produces the bytes Veltrix stores for a migrated item.
// Equal items (as DynamoDB values: sets compared as sets, numbers by value)
// always encode to the same bytes and different items to different bytes,
// so stored values compare and checksum directly. DecodeItem accepts only
// such canonical bytes. Version 1 layout:
//
//	item    = 0x01 attrs                  leading format byte, FormatV1
//	attrs   = uvarint(n) n×(string value) names in strictly ascending byte order
//	string  = uvarint(len) len×byte
//	value   = tag payload                 tag is the Type's number:
//	  0x01 S     string                   UTF-8
//	  0x02 N     string                   canonical decimal text (Normalize)
//	  0x03 B     string                   raw bytes
//	  0x04 BOOL  0x00 | 0x01
//	  0x05 NULL                           no payload
//	  0x06 M     attrs
//	  0x07 L     uvarint(n) n×value
//	  0x08 SS    uvarint(n≥1) n×string    strictly ascending bytes
//	  0x09 NS    uvarint(n≥1) n×string    canonical text, strictly ascending value
//	  0x0A BS    uvarint(n≥1) n×string    strictly ascending bytes
//
// uvarint is encoding/binary's unsigned varint (LEB128) in its shortest
// form. M and L nest at most MaxDepth deep. A later layout gets a new
// leading byte, and DecodeItem reports unknown ones with ErrUnknownFormat,
// so stored values can be migrated lazily.
//
// # Output formats
//
// MarshalDynamoDBJSON writes DynamoDB JSON; ItemToJSON writes natural JSON
// ({"id":"user#1","score":12.5,"tags":["a","b"]}) with numbers as their
// exact decimal text and binary as base64. Both are deterministic: sorted
// names, sets in canonical order.
//
// # Keys
//
// KeyBytes and KeySchema.Key turn an item's key attributes into the byte
// strings Veltrix addresses items by (partition key, sort key), never by
// concatenating them: S keys are their UTF-8 bytes, B keys their raw bytes,
// an N partition key its canonical decimal text and an N sort key the
// order-preserving EncodeNumberKey, so sort keys of every type compare as
// bytes in DynamoDB's order. ValueFromKey, SortValueFromKey and
// KeySchema.ItemKey reverse them.
package ddb
