package client

// The answers of an Exchange stream are decoded here rather than by the
// proto codec: proto.Unmarshal copies each Result's serialized response
// out of gRPC's receive buffer (a BatchGet answer: every value once more),
// only for the caller to unmarshal it again. frameCodec keeps the buffer
// instead, and each result's response aliases it until the caller has
// unmarshalled it; the buffer goes back to gRPC's pool when the last
// result of the message is released. The wire format is unchanged
// (veltrix.kv.v1.ExchangeResponse); FuzzDecodeResultFrame checks the
// decoder against proto.Unmarshal.

import (
	"errors"
	"fmt"
	"sync/atomic"
	"unicode/utf8"

	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	protoenc "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// Field numbers of veltrix.kv.v1.ExchangeResponse and veltrix.mux.v1.Result.
const (
	exchangeResponseResults  protowire.Number = 1
	exchangeResponseDraining protowire.Number = 2
	exchangeResponseLastID   protowire.Number = 3

	resultID       protowire.Number = 1
	resultCode     protowire.Number = 2
	resultMessage  protowire.Number = 3
	resultDetails  protowire.Number = 4
	resultResponse protowire.Number = 5
)

// muxCodec is the proto codec with resultFrame decoding; the stream's
// calls are encoded by the proto codec itself.
func muxCodec() grpc.CallOption { return grpc.ForceCodecV2(frameCodec{}) }

// frameCodec is the proto codec, except that it decodes a resultFrame
// itself. Its name is the proto codec's, so the router decodes the calls
// with its own (the content-subtype says "proto").
type frameCodec struct{}

var protoCodec = encoding.GetCodecV2(protoenc.Name)

func (frameCodec) Name() string { return protoenc.Name }

func (frameCodec) Marshal(v any) (mem.BufferSlice, error) { return protoCodec.Marshal(v) }

func (frameCodec) Unmarshal(data mem.BufferSlice, v any) error {
	f, ok := v.(*resultFrame)
	if !ok {
		return protoCodec.Unmarshal(data, v)
	}
	buf := data.MaterializeToBuffer(mem.DefaultBufferPool())
	if err := f.decode(buf.ReadOnlyData()); err != nil {
		buf.Free()
		return err // grpc says it failed to unmarshal the message
	}
	if len(f.results) == 0 {
		buf.Free()
		return nil
	}
	ref := &frameBuffer{buf: buf}
	ref.refs.Store(int32(len(f.results)))
	for i := range f.results {
		f.results[i].buf = ref
	}
	return nil
}

// frameBuffer is a received message's buffer, shared by its results.
type frameBuffer struct {
	buf  mem.Buffer
	refs atomic.Int32 // results not released
}

// resultFrame is one veltrix.kv.v1.ExchangeResponse as frameCodec decodes
// it.
type resultFrame struct {
	results  []frameResult
	draining bool
	lastID   uint64
}

// frameResult is one veltrix.mux.v1.Result of a resultFrame. Its response
// aliases the message's buffer: valid until release.
type frameResult struct {
	id       uint64
	code     int32
	message  string
	details  []*anypb.Any
	response []byte
	buf      *frameBuffer
}

func (f *resultFrame) GetDraining() bool { return f.draining }
func (f *resultFrame) GetLastId() uint64 { return f.lastID }

// GetResults returns the frame's results; each must be released once
// done with (one that is not only keeps its buffer from the pool).
func (f *resultFrame) GetResults() []*frameResult {
	rs := make([]*frameResult, len(f.results))
	for i := range f.results {
		rs[i] = &f.results[i]
	}
	return rs
}

func (r *frameResult) GetId() uint64            { return r.id }
func (r *frameResult) GetCode() int32           { return r.code }
func (r *frameResult) GetMessage() string       { return r.message }
func (r *frameResult) GetDetails() []*anypb.Any { return r.details }
func (r *frameResult) GetResponse() []byte      { return r.response }

// release says that r's response is no longer read: the last result of a
// message to be released gives its buffer back. Nil-safe; at most once.
func (r *frameResult) release() {
	if r == nil || r.buf == nil {
		return
	}
	b := r.buf
	r.buf, r.response = nil, nil
	if b.refs.Add(-1) == 0 {
		b.buf.Free()
	}
}

var (
	errInvalidUTF8 = errors.New("client: Exchange answer: a Result's message is not valid UTF-8")
	errFieldNumber = errors.New("client: Exchange answer: invalid field number")
)

// parseError describes a protowire parse failure (l < 0).
func parseError(l int) error {
	return fmt.Errorf("client: Exchange answer: %w", protowire.ParseError(l))
}

// walkFields walks the fields of the message b as proto.Unmarshal does:
// field gets each field's number, wire type and the bytes from its value
// on, and returns the length of the value it read, or -1 for a field it
// does not know (or of another wire type), which is skipped. Field
// numbers protowire accepts above protowire.MaxValidNumber are refused,
// as proto.Unmarshal refuses them.
func walkFields(b []byte, field func(num protowire.Number, typ protowire.Type, b []byte) (int, error)) error {
	for len(b) > 0 {
		num, typ, l := protowire.ConsumeTag(b)
		if l < 0 {
			return parseError(l)
		}
		if num > protowire.MaxValidNumber {
			return errFieldNumber
		}
		b = b[l:]
		n, err := field(num, typ, b)
		if err != nil {
			return err
		}
		if n < 0 {
			if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
				return parseError(n)
			}
		}
		b = b[n:]
	}
	return nil
}

func consumeVarint(b []byte) (uint64, int, error) {
	v, n := protowire.ConsumeVarint(b)
	if n < 0 {
		return 0, 0, parseError(n)
	}
	return v, n, nil
}

func consumeBytes(b []byte) ([]byte, int, error) {
	v, n := protowire.ConsumeBytes(b)
	if n < 0 {
		return nil, 0, parseError(n)
	}
	return v, n, nil
}

// decode parses b as proto.Unmarshal parses an ExchangeResponse (the last
// of a repeated scalar wins, unknown fields and fields of an unexpected
// wire type are skipped, strings must be UTF-8), except that responses
// alias b.
func (f *resultFrame) decode(b []byte) error {
	*f = resultFrame{}
	n := 0 // results, to allocate them at once
	for rest := b; len(rest) > 0; {
		num, typ, l := protowire.ConsumeField(rest)
		if l < 0 {
			break // walkFields reports it
		}
		if num == exchangeResponseResults && typ == protowire.BytesType {
			n++
		}
		rest = rest[l:]
	}
	f.results = make([]frameResult, 0, n)
	return walkFields(b, func(num protowire.Number, typ protowire.Type, b []byte) (int, error) {
		switch {
		case num == exchangeResponseResults && typ == protowire.BytesType:
			v, n, err := consumeBytes(b)
			if err != nil {
				return 0, err
			}
			f.results = append(f.results, frameResult{})
			return n, f.results[len(f.results)-1].decode(v)
		case num == exchangeResponseDraining && typ == protowire.VarintType:
			v, n, err := consumeVarint(b)
			f.draining = protowire.DecodeBool(v)
			return n, err
		case num == exchangeResponseLastID && typ == protowire.VarintType:
			v, n, err := consumeVarint(b)
			f.lastID = v
			return n, err
		}
		return -1, nil
	})
}

// decode parses b as proto.Unmarshal parses a Result; the response aliases
// b.
func (r *frameResult) decode(b []byte) error {
	return walkFields(b, func(num protowire.Number, typ protowire.Type, b []byte) (int, error) {
		switch {
		case num == resultID && typ == protowire.VarintType:
			v, n, err := consumeVarint(b)
			r.id = v
			return n, err
		case num == resultCode && typ == protowire.VarintType:
			v, n, err := consumeVarint(b)
			r.code = int32(v)
			return n, err
		case num == resultMessage && typ == protowire.BytesType:
			v, n, err := consumeBytes(b)
			if err == nil && !utf8.Valid(v) {
				err = errInvalidUTF8
			}
			r.message = string(v)
			return n, err
		case num == resultDetails && typ == protowire.BytesType:
			v, n, err := consumeBytes(b)
			if err != nil {
				return 0, err
			}
			d := new(anypb.Any)
			r.details = append(r.details, d)
			return n, proto.Unmarshal(v, d)
		case num == resultResponse && typ == protowire.BytesType:
			v, n, err := consumeBytes(b)
			r.response = v
			return n, err
		}
		return -1, nil
	})
}
