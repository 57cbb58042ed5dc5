package main

// Frames on the node socket (docs/protocol.md): a u32 big-endian length, then that many bytes
// holding one msgpack map with string keys. The length is checked against maxFrameBytes before
// anything is read or decoded.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"
)

// nodeSocket is a connection to the node: an *os.File on Unix (dial_unix.go), a net.Conn
// elsewhere.
type nodeSocket interface {
	io.ReadWriteCloser
	SetDeadline(t time.Time) error
}

// maxFrameBytes is MAX_FRAME_BYTES of packages/protocol/src/constants.ts.
const maxFrameBytes = 64 << 20

var errFrameTooLarge = errors.New("frame larger than 64 MiB")

// encodeFrame returns the length-prefixed msgpack encoding of msg.
func encodeFrame(msg map[string]any) ([]byte, error) {
	b, err := appendValue(make([]byte, 4, 256), msg)
	if err != nil {
		return nil, err
	}
	n := len(b) - 4
	if n > maxFrameBytes {
		return nil, errFrameTooLarge
	}
	binary.BigEndian.PutUint32(b, uint32(n))
	return b, nil
}

// writeFrame writes msg as one frame with a single Write call.
func writeFrame(w io.Writer, msg map[string]any) error {
	b, err := encodeFrame(msg)
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

// readFrame reads one frame and decodes it into a map.
func readFrame(r io.Reader) (map[string]any, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > maxFrameBytes {
		return nil, errFrameTooLarge
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	v, err := decodeValue(body)
	if err != nil {
		return nil, err
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("frame holds %T, not a map", v)
	}
	return m, nil
}
