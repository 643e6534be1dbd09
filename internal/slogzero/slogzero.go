// Package slogzero writes the log/slog lines of libraries (sipgo) through
// zerolog, so that every line of the process is one JSON object at the
// level zerolog is set to.
package slogzero

import (
	"context"
	"log/slog"
	"slices"

	"github.com/rs/zerolog"
)

// Handler is a slog.Handler that writes to a zerolog.Logger.
type Handler struct {
	log    zerolog.Logger
	attrs  []slog.Attr // from WithAttrs, already nested in the groups open then
	groups []string
}

// New returns a slog logger writing to log.
func New(log zerolog.Logger) *slog.Logger { return slog.New(&Handler{log: log}) }

// dropped are attributes a library logs that may carry a message's body or
// credentials (sipgo logs a message it cannot parse whole under "data"):
// only their size is written.
var dropped = []string{"data"}

// Enabled implements slog.Handler.
func (h *Handler) Enabled(_ context.Context, l slog.Level) bool {
	return h.log.GetLevel() <= level(l) && zerolog.GlobalLevel() <= level(l)
}

// Handle implements slog.Handler.
func (h *Handler) Handle(_ context.Context, r slog.Record) error {
	e := h.log.WithLevel(level(r.Level))
	if e == nil {
		return nil
	}
	for _, a := range h.attrs {
		e = add(e, a)
	}
	attrs := make([]slog.Attr, 0, r.NumAttrs())
	r.Attrs(func(a slog.Attr) bool {
		attrs = append(attrs, a)
		return true
	})
	if len(h.groups) > 0 && len(attrs) > 0 {
		attrs = []slog.Attr{grouped(h.groups, attrs)}
	}
	for _, a := range attrs {
		e = add(e, a)
	}
	e.Msg(r.Message)
	return nil
}

// WithAttrs implements slog.Handler.
func (h *Handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	c := *h
	for _, a := range attrs {
		if len(h.groups) > 0 {
			a = grouped(h.groups, []slog.Attr{a})
		}
		c.attrs = append(slices.Clip(c.attrs), a)
	}
	return &c
}

// WithGroup implements slog.Handler.
func (h *Handler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	c := *h
	c.groups = append(slices.Clip(h.groups), name)
	return &c
}

// grouped nests attrs under groups (outermost first); groups is not empty.
func grouped(groups []string, attrs []slog.Attr) slog.Attr {
	v := slog.GroupValue(attrs...)
	for i := len(groups) - 1; i > 0; i-- {
		v = slog.GroupValue(slog.Attr{Key: groups[i], Value: v})
	}
	return slog.Attr{Key: groups[0], Value: v}
}

// add writes one attribute as a zerolog field.
func add(e *zerolog.Event, a slog.Attr) *zerolog.Event {
	a.Value = a.Value.Resolve()
	if a.Equal(slog.Attr{}) {
		return e
	}
	if slices.Contains(dropped, a.Key) {
		return e.Int(a.Key+"_bytes", len(a.Value.String()))
	}
	switch a.Value.Kind() {
	case slog.KindGroup:
		d := zerolog.Dict()
		for _, member := range a.Value.Group() {
			d = add(d, member)
		}
		return e.Dict(a.Key, d)
	case slog.KindString:
		return e.Str(a.Key, a.Value.String())
	case slog.KindInt64:
		return e.Int64(a.Key, a.Value.Int64())
	case slog.KindUint64:
		return e.Uint64(a.Key, a.Value.Uint64())
	case slog.KindFloat64:
		return e.Float64(a.Key, a.Value.Float64())
	case slog.KindBool:
		return e.Bool(a.Key, a.Value.Bool())
	case slog.KindDuration:
		return e.Dur(a.Key, a.Value.Duration())
	case slog.KindTime:
		return e.Time(a.Key, a.Value.Time())
	}
	if err, ok := a.Value.Any().(error); ok {
		return e.AnErr(a.Key, err)
	}
	return e.Str(a.Key, a.Value.String())
}

// level maps slog's levels onto zerolog's; slog's are spaced by 4.
func level(l slog.Level) zerolog.Level {
	switch {
	case l < slog.LevelInfo:
		return zerolog.DebugLevel
	case l < slog.LevelWarn:
		return zerolog.InfoLevel
	case l < slog.LevelError:
		return zerolog.WarnLevel
	}
	return zerolog.ErrorLevel
}
