package svcmain

import (
	"context"
	"log/slog"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// ZapLogger returns a zap logger that writes to h the entries at min and
// above, for libraries that log through zap (etcd's client): their lines
// then go where the service's slog lines go, with the same format.
func ZapLogger(h slog.Handler, min slog.Level) *zap.Logger {
	return zap.New(&zapCore{h: h, min: min})
}

// zapCore is a zapcore.Core writing to a slog.Handler. go.uber.org/zap/exp's
// zapslog bridges the other way (slog onto zap).
type zapCore struct {
	h   slog.Handler
	min slog.Level
}

func zapToSlog(l zapcore.Level) slog.Level {
	switch {
	case l >= zapcore.ErrorLevel:
		return slog.LevelError
	case l == zapcore.WarnLevel:
		return slog.LevelWarn
	case l == zapcore.InfoLevel:
		return slog.LevelInfo
	}
	return slog.LevelDebug
}

func (c *zapCore) Enabled(l zapcore.Level) bool {
	lvl := zapToSlog(l)
	return lvl >= c.min && c.h.Enabled(context.Background(), lvl)
}

func (c *zapCore) With(fields []zapcore.Field) zapcore.Core {
	if len(fields) == 0 {
		return c
	}
	return &zapCore{h: c.h.WithAttrs(attrs(fields)), min: c.min}
}

func (c *zapCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c *zapCore) Write(e zapcore.Entry, fields []zapcore.Field) error {
	var pc uintptr
	if e.Caller.Defined {
		pc = e.Caller.PC
	}
	r := slog.NewRecord(e.Time, zapToSlog(e.Level), e.Message, pc)
	if e.LoggerName != "" {
		r.AddAttrs(slog.String("logger", e.LoggerName))
	}
	r.AddAttrs(attrs(fields)...)
	return c.h.Handle(context.Background(), r)
}

func (c *zapCore) Sync() error { return nil }

// attrs converts zap fields to slog attributes through zap's own encoder,
// so every field type (errors, durations, objects) keeps its value.
func attrs(fields []zapcore.Field) []slog.Attr {
	enc := zapcore.NewMapObjectEncoder()
	for _, f := range fields {
		f.AddTo(enc)
	}
	out := make([]slog.Attr, 0, len(enc.Fields))
	for _, f := range fields {
		if v, ok := enc.Fields[f.Key]; ok {
			out = append(out, slog.Any(f.Key, v))
			delete(enc.Fields, f.Key)
		}
	}
	return out
}
