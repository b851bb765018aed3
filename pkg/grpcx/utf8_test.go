package grpcx

import (
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	kvv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/kv/v1"
)

func field(num protowire.Number, v []byte) []byte {
	return protowire.AppendBytes(protowire.AppendTag(nil, num, protowire.BytesType), v)
}

func TestUTF8CodecNamesTheFields(t *testing.T) {
	key := func(table string) []byte { return append(field(1, []byte(table)), field(2, []byte("pk\xff"))...) }
	mut := func(table string) []byte {
		return append(protowire.AppendVarint(protowire.AppendTag(nil, 1, protowire.VarintType), 1), field(2, key(table))...)
	}
	codec := utf8Codec{base: encoding.GetCodecV2("proto")}
	for _, tc := range []struct {
		name  string
		wire  []byte
		msg   proto.Message
		paths []string
	}{
		{"put", field(1, key("t\xff\xfe")), &kvv1.PutRequest{}, []string{"key.table"}},
		{"batch", append(field(1, mut("ok")), field(1, mut("bad\xc3"))...), &kvv1.BatchWriteRequest{}, []string{"mutations[1].key.table"}},
		{"create table", field(1, []byte("\xff")), &kvv1.CreateTableRequest{}, []string{"name"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := proto.Unmarshal(tc.wire, tc.msg); err == nil {
				t.Fatal("protobuf accepted invalid UTF-8; the codec is not needed any more")
			}
			_, paths, ok := SanitizeUTF8(tc.wire, tc.msg.ProtoReflect().Descriptor())
			if !ok || !slices.Equal(paths, tc.paths) {
				t.Fatalf("paths %v ok %v, want %v", paths, ok, tc.paths)
			}
			if err := codec.Unmarshal(mem.BufferSlice{mem.SliceBuffer(tc.wire)}, tc.msg); err != nil {
				t.Fatalf("codec: %v", err)
			}
			err := badUTF8(tc.msg)
			if status.Code(err) != codes.InvalidArgument || status.Convert(err).Message() != tc.paths[0]+": not valid UTF-8" {
				t.Fatalf("got %v", err)
			}
			if badUTF8(tc.msg) != nil {
				t.Fatal("the entry was not removed")
			}
		})
	}
	// Valid input and garbage behave as before.
	ok := &kvv1.GetRequest{}
	if err := codec.Unmarshal(mem.BufferSlice{mem.SliceBuffer(field(1, key("ok")))}, ok); err != nil || badUTF8(ok) != nil {
		t.Fatalf("valid request: %v", err)
	}
	if err := codec.Unmarshal(mem.BufferSlice{mem.SliceBuffer([]byte{0x0a, 0x05, 'x'})}, &kvv1.GetRequest{}); err == nil {
		t.Fatal("truncated message accepted")
	}
}

// FuzzSanitizeUTF8 decodes arbitrary bytes as a BatchWriteRequest (strings
// nested in repeated messages): no panic; input protobuf accepts comes out
// unchanged in meaning with no bad fields; after sanitizing, no UTF-8 error
// remains.
func FuzzSanitizeUTF8(f *testing.F) {
	key := append(field(1, []byte("t\xff")), field(2, []byte("pk"))...)
	f.Add(field(1, field(2, key)))
	f.Add(field(1, field(2, field(1, []byte("ok")))))
	f.Add([]byte{0x0a, 0x05, 'x'})
	f.Fuzz(func(t *testing.T, wire []byte) {
		md := (&kvv1.BatchWriteRequest{}).ProtoReflect().Descriptor()
		out, paths, ok := SanitizeUTF8(wire, md)
		var orig kvv1.BatchWriteRequest
		if proto.Unmarshal(wire, &orig) == nil {
			var got kvv1.BatchWriteRequest
			if !ok || len(paths) > 0 || proto.Unmarshal(out, &got) != nil || !proto.Equal(&orig, &got) {
				t.Fatalf("valid input changed: ok %v paths %v", ok, paths)
			}
			return
		}
		if ok && len(paths) > 0 {
			var got kvv1.BatchWriteRequest
			if err := proto.Unmarshal(out, &got); err != nil && strings.Contains(err.Error(), "UTF-8") {
				t.Fatalf("still invalid UTF-8 after sanitizing %v: %v", paths, err)
			}
		}
	})
}
