package ddb

import (
	"bytes"
	"fmt"
	"unicode/utf8"
)

// DynamoDB's key size limits.
const (
	// MaxPartitionKeyBytes is the largest partition key value DynamoDB
	// accepts (UTF-8 bytes for S, raw bytes for B).
	MaxPartitionKeyBytes = 2048
	// MaxSortKeyBytes is the largest sort key value DynamoDB accepts.
	MaxSortKeyBytes = 1024
)

// KeyAttribute names a key attribute and its declared scalar type: TypeS,
// TypeN or TypeB (DynamoDB's AttributeDefinitions).
type KeyAttribute struct {
	Name string
	Type Type
}

func (a KeyAttribute) String() string { return pathName(a.Name) + " (" + a.Type.String() + ")" }

// KeyBytes returns the key bytes of the item's attribute attr: the UTF-8
// bytes of an S, the canonical decimal text of an N (see Normalize), the
// raw bytes of a B. The result is a fresh slice the caller may keep.
//
// Byte order matches DynamoDB's order for S and B keys. It does not for N:
// canonical decimal text sorts "10" before "9", so sort keys use
// SortKeyBytes, which encodes N with EncodeNumberKey.
//
// Errors: ErrMissingKey when the item lacks the attribute, ErrInvalidKey
// when it has another type than declared, when an S or B is empty (DynamoDB
// rejects empty key values) or when attr.Type is not S, N or B.
func KeyBytes(it Item, attr KeyAttribute) ([]byte, error) {
	if err := attr.validate(); err != nil {
		return nil, err
	}
	v, ok := it[attr.Name]
	if !ok || v == nil {
		return nil, &Error{Err: ErrMissingKey, Path: pathName(attr.Name), Offset: -1,
			Msg: "item has no key attribute " + attr.String()}
	}
	if v.Type() != attr.Type {
		return nil, &Error{Err: ErrInvalidKey, Path: pathName(attr.Name), Offset: -1,
			Msg: fmt.Sprintf("key attribute is %s, declared %s", v.Type(), attr.Type)}
	}
	var b []byte
	switch x := v.(type) {
	case S:
		b = []byte(x)
	case N:
		b = []byte(x.String())
	case B:
		b = bytes.Clone(x)
	}
	if len(b) == 0 {
		return nil, &Error{Err: ErrInvalidKey, Path: pathName(attr.Name), Offset: -1,
			Msg: "empty " + attr.Type.String() + " key value (DynamoDB rejects empty keys)"}
	}
	return b, nil
}

// ValueFromKey is the inverse of KeyBytes: it rebuilds the attribute value
// of type t (TypeS, TypeN or TypeB) from key bytes.
func ValueFromKey(t Type, key []byte) (Value, error) {
	fail := func(msg string) error { return &Error{Err: ErrInvalidKey, Offset: -1, Msg: msg} }
	if len(key) == 0 {
		return nil, fail("empty key value")
	}
	switch t {
	case TypeS:
		if !utf8.Valid(key) {
			return nil, fail("S key is not valid UTF-8")
		}
		return S(key), nil
	case TypeN:
		n, err := ParseN(string(key))
		if err != nil || n.String() != string(key) {
			return nil, fail("N key " + quoteInput(string(key)) + " is not a canonical number")
		}
		return n, nil
	case TypeB:
		return B(bytes.Clone(key)), nil
	}
	return nil, fail("key type must be S, N or B, not " + t.String())
}

func (a KeyAttribute) validate() error {
	switch {
	case a.Name == "":
		return &Error{Err: ErrInvalidKey, Offset: -1, Msg: "key attribute has no name"}
	case a.Type != TypeS && a.Type != TypeN && a.Type != TypeB:
		return &Error{Err: ErrInvalidKey, Path: pathName(a.Name), Offset: -1,
			Msg: "key type must be S, N or B, not " + a.Type.String()}
	}
	return nil
}

// KeySchema is a table's primary key: a partition key and an optional sort
// key (SortKey.Name == "" when the table has none).
type KeySchema struct {
	PartitionKey KeyAttribute
	SortKey      KeyAttribute
}

// HasSortKey reports whether the schema has a sort key.
func (s KeySchema) HasSortKey() bool { return s.SortKey.Name != "" }

// Validate checks the schema: names set, types S, N or B, distinct names.
func (s KeySchema) Validate() error {
	if err := s.PartitionKey.validate(); err != nil {
		return err
	}
	if !s.HasSortKey() {
		return nil
	}
	if err := s.SortKey.validate(); err != nil {
		return err
	}
	if s.SortKey.Name == s.PartitionKey.Name {
		return &Error{Err: ErrInvalidKey, Path: pathName(s.SortKey.Name), Offset: -1,
			Msg: "partition and sort key are the same attribute"}
	}
	return nil
}

// Key returns the partition and sort key bytes of an item: KeyBytes of the
// partition key and SortKeyBytes of the sort key, so N sort keys are stored
// in an order-preserving encoding; sort is nil when the schema has no sort
// key. Besides KeyBytes' checks it
// enforces DynamoDB's key size limits, MaxPartitionKeyBytes and
// MaxSortKeyBytes.
func (s KeySchema) Key(it Item) (partition, sort []byte, err error) {
	if err := s.Validate(); err != nil {
		return nil, nil, err
	}
	partition, err = KeyBytes(it, s.PartitionKey)
	if err != nil {
		return nil, nil, err
	}
	if len(partition) > MaxPartitionKeyBytes {
		return nil, nil, &Error{Err: ErrInvalidKey, Path: pathName(s.PartitionKey.Name), Offset: -1,
			Msg: fmt.Sprintf("partition key is %d bytes, DynamoDB allows %d", len(partition), MaxPartitionKeyBytes)}
	}
	if !s.HasSortKey() {
		return partition, nil, nil
	}
	sort, err = SortKeyBytes(it, s.SortKey)
	if err != nil {
		return nil, nil, err
	}
	if len(sort) > MaxSortKeyBytes {
		return nil, nil, &Error{Err: ErrInvalidKey, Path: pathName(s.SortKey.Name), Offset: -1,
			Msg: fmt.Sprintf("sort key is %d bytes, DynamoDB allows %d", len(sort), MaxSortKeyBytes)}
	}
	return partition, sort, nil
}
