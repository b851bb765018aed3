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

// consumeTag is protowire.ConsumeTag refusing, as proto.Unmarshal does,
// the field numbers above protowire.MaxValidNumber it lets through.
func consumeTag(b []byte) (protowire.Number, protowire.Type, int, error) {
	num, typ, l := protowire.ConsumeTag(b)
	if l < 0 {
		return 0, 0, 0, parseError(l)
	}
	if num > protowire.MaxValidNumber {
		return 0, 0, 0, errFieldNumber
	}
	return num, typ, l, nil
}

// parseError describes a protowire parse failure (l < 0).
func parseError(l int) error {
	return fmt.Errorf("client: Exchange answer: %w", protowire.ParseError(l))
}

// decode parses b as proto.Unmarshal parses an ExchangeResponse (the
// last of a repeated scalar wins, unknown fields and fields of an
// unexpected wire type are skipped, strings must be UTF-8), except that
// responses alias b.
func (f *resultFrame) decode(b []byte) error {
	*f = resultFrame{}
	n := 0 // results, to allocate them at once
	for rest := b; len(rest) > 0; {
		num, typ, l := protowire.ConsumeField(rest)
		if l < 0 {
			break // the decoding below reports it
		}
		if num == exchangeResponseResults && typ == protowire.BytesType {
			n++
		}
		rest = rest[l:]
	}
	f.results = make([]frameResult, 0, n)
	for len(b) > 0 {
		num, typ, l, err := consumeTag(b)
		if err != nil {
			return err
		}
		b = b[l:]
		switch {
		case num == exchangeResponseResults && typ == protowire.BytesType:
			v, l := protowire.ConsumeBytes(b)
			if l < 0 {
				return parseError(l)
			}
			f.results = append(f.results, frameResult{})
			if err := f.results[len(f.results)-1].decode(v); err != nil {
				return err
			}
			b = b[l:]
			continue
		case num == exchangeResponseDraining && typ == protowire.VarintType:
			v, l := protowire.ConsumeVarint(b)
			if l < 0 {
				return parseError(l)
			}
			f.draining = protowire.DecodeBool(v)
			b = b[l:]
			continue
		case num == exchangeResponseLastID && typ == protowire.VarintType:
			v, l := protowire.ConsumeVarint(b)
			if l < 0 {
				return parseError(l)
			}
			f.lastID = v
			b = b[l:]
			continue
		}
		l = protowire.ConsumeFieldValue(num, typ, b)
		if l < 0 {
			return parseError(l)
		}
		b = b[l:]
	}
	return nil
}

// decode parses b as proto.Unmarshal parses a Result; the response aliases
// b.
func (r *frameResult) decode(b []byte) error {
	for len(b) > 0 {
		num, typ, l, err := consumeTag(b)
		if err != nil {
			return err
		}
		b = b[l:]
		switch {
		case (num == resultID || num == resultCode) && typ == protowire.VarintType:
			v, l := protowire.ConsumeVarint(b)
			if l < 0 {
				return parseError(l)
			}
			if num == resultID {
				r.id = v
			} else {
				r.code = int32(v)
			}
			b = b[l:]
			continue
		case num == resultMessage && typ == protowire.BytesType:
			v, l := protowire.ConsumeBytes(b)
			if l < 0 {
				return parseError(l)
			}
			if !utf8.Valid(v) {
				return errInvalidUTF8
			}
			r.message = string(v)
			b = b[l:]
			continue
		case num == resultDetails && typ == protowire.BytesType:
			v, l := protowire.ConsumeBytes(b)
			if l < 0 {
				return parseError(l)
			}
			d := new(anypb.Any)
			if err := proto.Unmarshal(v, d); err != nil {
				return err
			}
			r.details = append(r.details, d)
			b = b[l:]
			continue
		case num == resultResponse && typ == protowire.BytesType:
			v, l := protowire.ConsumeBytes(b)
			if l < 0 {
				return parseError(l)
			}
			r.response = v
			b = b[l:]
			continue
		}
		l = protowire.ConsumeFieldValue(num, typ, b)
		if l < 0 {
			return parseError(l)
		}
		b = b[l:]
	}
	return nil
}
