package main

// A minimal msgpack codec: just what the node socket needs (docs/protocol.md).
//
// Encoding covers the values the shim sends: string, int/int64/uint64, bool, []byte (bin),
// []string, map[string]string, map[string]any, []any, float64 and nil. Decoding accepts every
// msgpack type except ext, in any width, and yields map[string]any (string keys only), []any,
// string, []byte, int64 (or uint64 above MaxInt64), float64, bool or nil.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// maxDepth bounds nesting while decoding so a hostile frame cannot exhaust the stack.
const maxDepth = 64

var errShort = errors.New("msgpack: truncated input")

// appendValue appends the msgpack encoding of v to b.
func appendValue(b []byte, v any) ([]byte, error) {
	switch v := v.(type) {
	case nil:
		return append(b, 0xc0), nil
	case bool:
		if v {
			return append(b, 0xc3), nil
		}
		return append(b, 0xc2), nil
	case int:
		return appendInt(b, int64(v)), nil
	case int64:
		return appendInt(b, v), nil
	case uint64:
		if v <= math.MaxInt64 {
			return appendInt(b, int64(v)), nil
		}
		return binary.BigEndian.AppendUint64(append(b, 0xcf), v), nil
	case float64:
		return binary.BigEndian.AppendUint64(append(b, 0xcb), math.Float64bits(v)), nil
	case string:
		return append(appendStrHeader(b, len(v)), v...), nil
	case []byte:
		return append(appendBinHeader(b, len(v)), v...), nil
	case []string:
		b = appendArrayHeader(b, len(v))
		for _, s := range v {
			b = append(appendStrHeader(b, len(s)), s...)
		}
		return b, nil
	case []any:
		b = appendArrayHeader(b, len(v))
		var err error
		for _, e := range v {
			if b, err = appendValue(b, e); err != nil {
				return nil, err
			}
		}
		return b, nil
	case map[string]string:
		b = appendMapHeader(b, len(v))
		for k, s := range v {
			b = append(appendStrHeader(b, len(k)), k...)
			b = append(appendStrHeader(b, len(s)), s...)
		}
		return b, nil
	case map[string]any:
		b = appendMapHeader(b, len(v))
		var err error
		for k, e := range v {
			b = append(appendStrHeader(b, len(k)), k...)
			if b, err = appendValue(b, e); err != nil {
				return nil, err
			}
		}
		return b, nil
	}
	return nil, fmt.Errorf("msgpack: cannot encode %T", v)
}

func appendInt(b []byte, v int64) []byte {
	switch {
	case v >= 0 && v <= 0x7f:
		return append(b, byte(v))
	case v < 0 && v >= -32:
		return append(b, byte(v))
	case v >= 0 && v <= math.MaxUint8:
		return append(b, 0xcc, byte(v))
	case v >= 0 && v <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(b, 0xcd), uint16(v))
	case v >= 0 && v <= math.MaxUint32:
		return binary.BigEndian.AppendUint32(append(b, 0xce), uint32(v))
	case v >= 0:
		return binary.BigEndian.AppendUint64(append(b, 0xcf), uint64(v))
	case v >= math.MinInt8:
		return append(b, 0xd0, byte(v))
	case v >= math.MinInt16:
		return binary.BigEndian.AppendUint16(append(b, 0xd1), uint16(v))
	case v >= math.MinInt32:
		return binary.BigEndian.AppendUint32(append(b, 0xd2), uint32(v))
	}
	return binary.BigEndian.AppendUint64(append(b, 0xd3), uint64(v))
}

// appendHeader writes a length header: the fix form when n fits under fixMax, else the 8-bit
// form (when c8 != 0), 16-bit or 32-bit form.
func appendHeader(b []byte, n, fixMax int, fix, c8, c16, c32 byte) []byte {
	switch {
	case fix != 0 && n <= fixMax:
		return append(b, fix|byte(n))
	case c8 != 0 && n <= math.MaxUint8:
		return append(b, c8, byte(n))
	case n <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(b, c16), uint16(n))
	}
	return binary.BigEndian.AppendUint32(append(b, c32), uint32(n))
}

func appendStrHeader(b []byte, n int) []byte   { return appendHeader(b, n, 31, 0xa0, 0xd9, 0xda, 0xdb) }
func appendBinHeader(b []byte, n int) []byte   { return appendHeader(b, n, -1, 0, 0xc4, 0xc5, 0xc6) }
func appendArrayHeader(b []byte, n int) []byte { return appendHeader(b, n, 15, 0x90, 0, 0xdc, 0xdd) }
func appendMapHeader(b []byte, n int) []byte   { return appendHeader(b, n, 15, 0x80, 0, 0xde, 0xdf) }

// decodeValue decodes exactly one msgpack value that must span all of data.
func decodeValue(data []byte) (any, error) {
	d := decoder{buf: data}
	v, err := d.value(0)
	if err != nil {
		return nil, err
	}
	if d.pos != len(d.buf) {
		return nil, fmt.Errorf("msgpack: %d trailing bytes", len(d.buf)-d.pos)
	}
	return v, nil
}

type decoder struct {
	buf []byte
	pos int
}

func (d *decoder) take(n int) ([]byte, error) {
	if n < 0 || n > len(d.buf)-d.pos {
		return nil, errShort
	}
	p := d.buf[d.pos : d.pos+n]
	d.pos += n
	return p, nil
}

// uint reads an n-byte big-endian unsigned integer (n = 1, 2, 4 or 8).
func (d *decoder) uint(n int) (uint64, error) {
	p, err := d.take(n)
	if err != nil {
		return 0, err
	}
	var v uint64
	for _, c := range p {
		v = v<<8 | uint64(c)
	}
	return v, nil
}

func (d *decoder) value(depth int) (any, error) {
	if depth > maxDepth {
		return nil, errors.New("msgpack: nested too deeply")
	}
	p, err := d.take(1)
	if err != nil {
		return nil, err
	}
	c := p[0]
	switch {
	case c <= 0x7f:
		return int64(c), nil
	case c >= 0xe0:
		return int64(int8(c)), nil
	case c&0xf0 == 0x80:
		return d.mapBody(int(c&0x0f), depth)
	case c&0xf0 == 0x90:
		return d.arrayBody(int(c&0x0f), depth)
	case c&0xe0 == 0xa0:
		return d.str(int(c & 0x1f))
	}
	switch c {
	case 0xc0:
		return nil, nil
	case 0xc2:
		return false, nil
	case 0xc3:
		return true, nil
	case 0xc4, 0xc5, 0xc6: // bin 8/16/32
		n, err := d.uint(1 << (c - 0xc4))
		if err != nil {
			return nil, err
		}
		b, err := d.take(clampLen(n))
		if err != nil {
			return nil, err
		}
		return append(make([]byte, 0, len(b)), b...), nil // a copy; empty stays non-nil
	case 0xca: // float32
		u, err := d.uint(4)
		return float64(math.Float32frombits(uint32(u))), err
	case 0xcb: // float64
		u, err := d.uint(8)
		return math.Float64frombits(u), err
	case 0xcc, 0xcd, 0xce, 0xcf: // uint 8/16/32/64
		u, err := d.uint(1 << (c - 0xcc))
		if err != nil {
			return nil, err
		}
		if u > math.MaxInt64 {
			return u, nil
		}
		return int64(u), nil
	case 0xd0, 0xd1, 0xd2, 0xd3: // int 8/16/32/64
		n := 1 << (c - 0xd0)
		u, err := d.uint(n)
		if err != nil {
			return nil, err
		}
		shift := 64 - 8*n // sign-extend
		return int64(u<<shift) >> shift, nil
	case 0xd9, 0xda, 0xdb: // str 8/16/32
		n, err := d.uint(1 << (c - 0xd9))
		if err != nil {
			return nil, err
		}
		return d.str(clampLen(n))
	case 0xdc, 0xdd: // array 16/32
		n, err := d.uint(2 << (c - 0xdc))
		if err != nil {
			return nil, err
		}
		return d.arrayBody(clampLen(n), depth)
	case 0xde, 0xdf: // map 16/32
		n, err := d.uint(2 << (c - 0xde))
		if err != nil {
			return nil, err
		}
		return d.mapBody(clampLen(n), depth)
	}
	return nil, fmt.Errorf("msgpack: unsupported type byte 0x%02x", c)
}

// clampLen turns a wire length into an int; anything huge fails take's bounds check anyway.
func clampLen(n uint64) int {
	if n > math.MaxInt32 {
		return math.MaxInt32
	}
	return int(n)
}

func (d *decoder) str(n int) (string, error) {
	b, err := d.take(n)
	return string(b), err
}

func (d *decoder) arrayBody(n, depth int) ([]any, error) {
	if n > len(d.buf)-d.pos { // every element takes at least one byte
		return nil, errShort
	}
	a := make([]any, n)
	for i := range a {
		v, err := d.value(depth + 1)
		if err != nil {
			return nil, err
		}
		a[i] = v
	}
	return a, nil
}

func (d *decoder) mapBody(n, depth int) (map[string]any, error) {
	if n > (len(d.buf)-d.pos)/2 { // every entry takes at least two bytes
		return nil, errShort
	}
	m := make(map[string]any, n)
	for range n {
		k, err := d.value(depth + 1)
		if err != nil {
			return nil, err
		}
		ks, ok := k.(string)
		if !ok {
			return nil, fmt.Errorf("msgpack: map key of type %T", k)
		}
		v, err := d.value(depth + 1)
		if err != nil {
			return nil, err
		}
		m[ks] = v
	}
	return m, nil
}

// asInt reads an integer field that may arrive in any msgpack integer width or as a float64
// holding an integer (docs/protocol.md).
func asInt(v any) (int64, bool) {
	switch v := v.(type) {
	case int64:
		return v, true
	case uint64:
		return 0, false // above MaxInt64: no valid field is that large
	case float64:
		if v == math.Trunc(v) && v >= math.MinInt64 && v < math.MaxInt64 {
			return int64(v), true
		}
	}
	return 0, false
}
