package grpcx

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"unicode/utf8"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// ServerOptions.CheckUTF8 makes a server refuse requests whose string
// fields hold invalid UTF-8 with InvalidArgument naming the fields. Without
// it grpc's codec fails such a request with Internal before any handler can
// look at it: proto3 requires valid UTF-8 in strings and the Go decoder
// enforces it.
//
// It takes a codec and two interceptors: the codec decodes such a request
// with the bad bytes replaced by U+FFFD and remembers the fields; the
// interceptors, which run after decoding, turn that into the error. Mux
// calls decode their requests with unmarshalUTF8, the codec's logic.

func utf8Unary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if err := badUTF8(req); err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

func utf8StreamInterceptor(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	return handler(srv, utf8Stream{ss})
}

// invalidUTF8 holds, for each message decoded with invalid UTF-8, the paths
// of the bad fields until an interceptor takes them. Entries exist only for
// bad requests and live for one call.
var invalidUTF8 sync.Map // proto.Message → []string

func badUTF8(m any) error {
	pm, ok := m.(proto.Message)
	if !ok {
		return nil
	}
	v, ok := invalidUTF8.LoadAndDelete(pm)
	if !ok {
		return nil
	}
	return status.Errorf(codes.InvalidArgument, "%s: not valid UTF-8", strings.Join(v.([]string), ", "))
}

type utf8Stream struct{ grpc.ServerStream }

func (s utf8Stream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	return badUTF8(m)
}

type utf8Codec struct{ base encoding.CodecV2 }

func (c utf8Codec) Name() string                           { return c.base.Name() }
func (c utf8Codec) Marshal(v any) (mem.BufferSlice, error) { return c.base.Marshal(v) }
func (c utf8Codec) Unmarshal(data mem.BufferSlice, v any) error {
	err := c.base.Unmarshal(data, v)
	if err == nil {
		return nil
	}
	m, ok := v.(proto.Message)
	if !ok {
		return err
	}
	return sanitizeInto(data.Materialize(), m, err)
}

// unmarshalUTF8 decodes b into m like the codec: a message whose only
// fault is invalid UTF-8 is decoded sanitized, its fields remembered for
// the interceptor.
func unmarshalUTF8(b []byte, m proto.Message) error {
	err := proto.Unmarshal(b, m)
	if err == nil {
		return nil
	}
	return sanitizeInto(b, m, err)
}

// sanitizeInto decodes the sanitized b into m after its decoding failed
// with err, and remembers the bad fields; it returns err when b has other
// faults.
func sanitizeInto(b []byte, m proto.Message, err error) error {
	fixed, paths, ok := SanitizeUTF8(b, m.ProtoReflect().Descriptor())
	if !ok || len(paths) == 0 {
		return err
	}
	proto.Reset(m)
	if uerr := proto.Unmarshal(fixed, m); uerr != nil {
		return err
	}
	invalidUTF8.Store(m, paths)
	return nil
}

// maxDepth bounds SanitizeUTF8's recursion like protobuf's own decoder.
const maxDepth = 100

// SanitizeUTF8 returns the wire-format message b with every string field of
// md (nested messages included) that holds invalid UTF-8 replaced by its
// valid form (bad bytes become U+FFFD), and the paths of those fields, like
// "mutations[3].key.table". ok is false when b is not a well-formed message.
func SanitizeUTF8(b []byte, md protoreflect.MessageDescriptor) (out []byte, paths []string, ok bool) {
	out, ok = sanitize(b, md, "", &paths, 0)
	return out, paths, ok
}

func sanitize(b []byte, md protoreflect.MessageDescriptor, prefix string, paths *[]string, depth int) ([]byte, bool) {
	if depth > maxDepth {
		return nil, false
	}
	out := make([]byte, 0, len(b))
	counts := map[protowire.Number]int{}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, false
		}
		fd := md.Fields().ByNumber(num)
		if typ != protowire.BytesType || fd == nil || (fd.Kind() != protoreflect.StringKind && fd.Kind() != protoreflect.MessageKind) {
			m := protowire.ConsumeFieldValue(num, typ, b[n:])
			if m < 0 {
				return nil, false
			}
			out = append(out, b[:n+m]...)
			b = b[n+m:]
			continue
		}
		v, m := protowire.ConsumeBytes(b[n:])
		if m < 0 {
			return nil, false
		}
		path := prefix + string(fd.Name())
		if fd.IsList() {
			path += fmt.Sprintf("[%d]", counts[num])
			counts[num]++
		}
		switch fd.Kind() {
		case protoreflect.StringKind:
			if !utf8.Valid(v) {
				*paths = append(*paths, path)
				v = []byte(strings.ToValidUTF8(string(v), "\uFFFD"))
			}
		case protoreflect.MessageKind:
			var ok bool
			if v, ok = sanitize(v, fd.Message(), path+".", paths, depth+1); !ok {
				return nil, false
			}
		}
		out = protowire.AppendTag(out, num, protowire.BytesType)
		out = protowire.AppendBytes(out, v)
		b = b[n+m:]
	}
	return out, true
}
