package client

import (
	"bytes"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	kvv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/kv/v1"
	muxv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/mux/v1"
)

// FuzzDecodeResultFrame: the stream's decoder of answers accepts exactly
// what proto.Unmarshal accepts as an ExchangeResponse, and reads the same
// results, draining notice and last id.
func FuzzDecodeResultFrame(f *testing.F) {
	detail, err := anypb.New(wrapperspb.String("detail"))
	if err != nil {
		f.Fatal(err)
	}
	seeds := []*kvv1.ExchangeResponse{
		{},
		{Draining: true, LastId: 7},
		{Results: []*muxv1.Result{
			{Id: 1, Response: []byte("\x0a\x03abc")},
			{Id: 2, Code: 5, Message: "not found", Details: []*anypb.Any{detail}},
			{Id: 3, Code: -1},
			{Id: 1 << 40},
		}, LastId: 3},
	}
	for _, s := range seeds {
		b, err := proto.Marshal(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	// Repeated scalars (the last wins), an unknown field, a field of an
	// unexpected wire type, a group, invalid UTF-8, a field number
	// protowire accepts and proto does not.
	var odd []byte
	odd = protowire.AppendTag(odd, 2, protowire.VarintType)
	odd = protowire.AppendVarint(odd, 1)
	odd = protowire.AppendTag(odd, 2, protowire.VarintType)
	odd = protowire.AppendVarint(odd, 0)
	odd = protowire.AppendTag(odd, 9, protowire.Fixed32Type)
	odd = protowire.AppendFixed32(odd, 1)
	odd = protowire.AppendTag(odd, 3, protowire.BytesType)
	odd = protowire.AppendBytes(odd, []byte("x"))
	odd = protowire.AppendTag(odd, 8, protowire.StartGroupType)
	odd = protowire.AppendTag(odd, 8, protowire.EndGroupType)
	f.Add(odd)
	res := protowire.AppendTag(nil, 3, protowire.BytesType)
	res = protowire.AppendBytes(res, []byte("\xff"))
	f.Add(protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), res))
	f.Add(protowire.AppendVarint(protowire.AppendTag(nil, 1<<29, protowire.VarintType), 1))

	f.Fuzz(func(t *testing.T, b []byte) {
		var want kvv1.ExchangeResponse
		wantErr := proto.Unmarshal(b, &want)
		var got resultFrame
		gotErr := got.decode(b)
		if (wantErr == nil) != (gotErr == nil) {
			t.Fatalf("proto.Unmarshal: %v; decode: %v", wantErr, gotErr)
		}
		if wantErr != nil {
			return
		}
		if got.GetDraining() != want.GetDraining() || got.GetLastId() != want.GetLastId() || len(got.GetResults()) != len(want.GetResults()) {
			t.Fatalf("decoded draining %v last id %d, %d results; proto: %v", got.GetDraining(), got.GetLastId(), len(got.GetResults()), &want)
		}
		for i, r := range got.GetResults() {
			w := want.GetResults()[i]
			if r.GetId() != w.GetId() || r.GetCode() != w.GetCode() || r.GetMessage() != w.GetMessage() || !bytes.Equal(r.GetResponse(), w.GetResponse()) || len(r.GetDetails()) != len(w.GetDetails()) {
				t.Fatalf("result %d: decoded id %d code %d message %q response %x, %d details; proto: %v", i, r.GetId(), r.GetCode(), r.GetMessage(), r.GetResponse(), len(r.GetDetails()), w)
			}
			for j, d := range r.GetDetails() {
				if !proto.Equal(d, w.GetDetails()[j]) {
					t.Fatalf("result %d detail %d: decoded %v, proto %v", i, j, d, w.GetDetails()[j])
				}
			}
		}
	})
}
