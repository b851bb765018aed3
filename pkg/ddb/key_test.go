package ddb

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestKeyBytes(t *testing.T) {
	it := Item{
		"s":     S("user#1"),
		"n":     MustN("-012.50"),
		"b":     B{0x00, 0xff},
		"es":    S(""),
		"eb":    B{},
		"zero":  N{},
		"other": Bool(true),
	}
	for _, tc := range []struct {
		attr KeyAttribute
		want string
	}{
		{KeyAttribute{"s", TypeS}, "user#1"},
		{KeyAttribute{"n", TypeN}, "-12.5"},
		{KeyAttribute{"zero", TypeN}, "0"},
		{KeyAttribute{"b", TypeB}, "\x00\xff"},
	} {
		got, err := KeyBytes(it, tc.attr)
		if err != nil || string(got) != tc.want {
			t.Errorf("KeyBytes(%v) = %q, %v, want %q", tc.attr, got, err, tc.want)
			continue
		}
		v, err := ValueFromKey(tc.attr.Type, got)
		if err != nil || !Equal(v, it[tc.attr.Name]) {
			t.Errorf("ValueFromKey(%v, %q) = %v, %v", tc.attr.Type, got, v, err)
		}
	}
	// The returned bytes are the caller's.
	kb, _ := KeyBytes(it, KeyAttribute{"b", TypeB})
	kb[0] = 'x'
	if it["b"].(B)[0] != 0 {
		t.Error("KeyBytes returned the item's own slice")
	}

	for _, tc := range []struct {
		attr KeyAttribute
		kind error
		msg  string
	}{
		{KeyAttribute{"missing", TypeS}, ErrMissingKey, "item has no key attribute missing (S)"},
		{KeyAttribute{"s", TypeN}, ErrInvalidKey, "key attribute is S, declared N"},
		{KeyAttribute{"other", TypeB}, ErrInvalidKey, "key attribute is BOOL, declared B"},
		{KeyAttribute{"es", TypeS}, ErrInvalidKey, "empty S key value"},
		{KeyAttribute{"eb", TypeB}, ErrInvalidKey, "empty B key value"},
		{KeyAttribute{"other", TypeBOOL}, ErrInvalidKey, "key type must be S, N or B, not BOOL"},
		{KeyAttribute{"", TypeS}, ErrInvalidKey, "no name"},
	} {
		_, err := KeyBytes(it, tc.attr)
		if !errors.Is(err, tc.kind) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("KeyBytes(%v) error = %v, want %v containing %q", tc.attr, err, tc.kind, tc.msg)
		}
	}
	if _, err := KeyBytes(Item{"a": nil}, KeyAttribute{"a", TypeS}); !errors.Is(err, ErrMissingKey) {
		t.Errorf("nil key value error = %v", err)
	}
}

func TestValueFromKeyRejects(t *testing.T) {
	for _, tc := range []struct {
		t   Type
		key string
	}{
		{TypeS, ""},
		{TypeS, "\xff"},
		{TypeN, "1.0"},
		{TypeN, "x"},
		{TypeB, ""},
		{TypeM, "x"},
	} {
		if v, err := ValueFromKey(tc.t, []byte(tc.key)); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("ValueFromKey(%v, %q) = %v, %v", tc.t, tc.key, v, err)
		}
	}
}

func TestKeySchema(t *testing.T) {
	it := Item{"pk": S("a"), "sk": MustN("10"), "big": S(strings.Repeat("x", 2049))}
	ks := KeySchema{PartitionKey: KeyAttribute{"pk", TypeS}, SortKey: KeyAttribute{"sk", TypeN}}
	pk, sk, err := ks.Key(it)
	if err != nil || string(pk) != "a" || !bytes.Equal(sk, EncodeNumberKey(MustN("10"))) {
		t.Fatalf("Key = %q, %q, %v", pk, sk, err)
	}
	pk, sk, err = KeySchema{PartitionKey: KeyAttribute{"pk", TypeS}}.Key(it)
	if err != nil || string(pk) != "a" || sk != nil {
		t.Fatalf("Key without sort key = %q, %q, %v", pk, sk, err)
	}
	for _, tc := range []struct {
		ks   KeySchema
		kind error
		msg  string
	}{
		{KeySchema{}, ErrInvalidKey, "no name"},
		{KeySchema{PartitionKey: KeyAttribute{"pk", TypeS}, SortKey: KeyAttribute{"pk", TypeS}}, ErrInvalidKey, "same attribute"},
		{KeySchema{PartitionKey: KeyAttribute{"pk", TypeS}, SortKey: KeyAttribute{"sk", TypeL}}, ErrInvalidKey, "not L"},
		{KeySchema{PartitionKey: KeyAttribute{"big", TypeS}}, ErrInvalidKey, "partition key is 2049 bytes"},
		{KeySchema{PartitionKey: KeyAttribute{"pk", TypeS}, SortKey: KeyAttribute{"big", TypeS}}, ErrInvalidKey, "sort key is 2049 bytes"},
		{KeySchema{PartitionKey: KeyAttribute{"pk", TypeS}, SortKey: KeyAttribute{"nope", TypeS}}, ErrMissingKey, "nope"},
		{KeySchema{PartitionKey: KeyAttribute{"sk", TypeS}}, ErrInvalidKey, "declared S"},
	} {
		if _, _, err := tc.ks.Key(it); !errors.Is(err, tc.kind) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%+v.Key error = %v, want %v containing %q", tc.ks, err, tc.kind, tc.msg)
		}
	}
	// Composite keys stay apart: no separator can make two keys collide.
	a := Item{"pk": S("a#b"), "sk": S("c")}
	b := Item{"pk": S("a"), "sk": S("b#c")}
	ks.SortKey.Type = TypeS
	apk, ask, _ := ks.Key(a)
	bpk, bsk, _ := ks.Key(b)
	if bytes.Equal(apk, bpk) && bytes.Equal(ask, bsk) {
		t.Fatal("distinct composite keys collide")
	}
}
