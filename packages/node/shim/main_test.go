package main

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestMsgpackRoundTrip(t *testing.T) {
	msg := map[string]any{
		"type":  "compile",
		"id":    1,
		"big":   int64(math.MaxInt64),
		"neg":   int64(math.MinInt64),
		"small": -5,
		"ok":    true,
		"no":    false,
		"nil":   nil,
		"bin":   []byte{0, 1, 2, 255},
		"empty": []byte{},
		"long":  strings.Repeat("x", 70000),
		"args":  []string{"-o", "", strings.Repeat("y", 300)},
		"env":   map[string]string{"GOOS": "linux", "GOARCH": "amd64"},
		"float": 1.5,
		"u64":   uint64(math.MaxUint64),
	}
	want := map[string]any{
		"type":  "compile",
		"id":    int64(1),
		"big":   int64(math.MaxInt64),
		"neg":   int64(math.MinInt64),
		"small": int64(-5),
		"ok":    true,
		"no":    false,
		"nil":   nil,
		"bin":   []byte{0, 1, 2, 255},
		"empty": []byte{},
		"long":  strings.Repeat("x", 70000),
		"args":  []any{"-o", "", strings.Repeat("y", 300)},
		"env":   map[string]any{"GOOS": "linux", "GOARCH": "amd64"},
		"float": 1.5,
		"u64":   uint64(math.MaxUint64),
	}
	b, err := appendValue(nil, msg)
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeValue(b)
	if err != nil {
		t.Fatal(err)
	}
	gm := got.(map[string]any)
	for k, w := range want {
		if g := gm[k]; !reflect.DeepEqual(g, w) {
			t.Errorf("%s: got %.200v (%T), want %.200v (%T)", k, g, g, w, w)
		}
	}
	if len(gm) != len(want) {
		t.Errorf("got %d keys, want %d", len(gm), len(want))
	}
}

func TestMsgpackIntegerWidths(t *testing.T) {
	for _, v := range []int64{0, 1, 127, 128, 255, 256, 65535, 65536, math.MaxUint32, math.MaxUint32 + 1,
		-1, -32, -33, -128, -129, -32768, -32769, math.MinInt32, math.MinInt32 - 1, math.MinInt64} {
		b := appendInt(nil, v)
		got, err := decodeValue(b)
		if err != nil || got != any(v) {
			t.Errorf("%d: got %v, %v (encoded % x)", v, got, err, b)
		}
	}
}

// TestMsgpackDecodeForms feeds hand-written encodings of every form a foreign encoder may use.
func TestMsgpackDecodeForms(t *testing.T) {
	hexes := func(s string) []byte {
		var b []byte
		for _, f := range strings.Fields(s) {
			var c byte
			for _, d := range f {
				c = c<<4 | byte(strings.IndexRune("0123456789abcdef", d))
			}
			b = append(b, c)
		}
		return b
	}
	cases := []struct {
		in   string
		want any
	}{
		{"07", int64(7)},
		{"ff", int64(-1)},
		{"cc 80", int64(128)},
		{"cd 01 00", int64(256)},
		{"ce 00 01 00 00", int64(65536)},
		{"cf 00 00 00 01 00 00 00 00", int64(1 << 32)},
		{"d0 80", int64(-128)},
		{"d0 05", int64(5)},
		{"d1 ff 7f", int64(-129)},
		{"d2 ff ff ff fe", int64(-2)},
		{"d3 ff ff ff ff ff ff ff fd", int64(-3)},
		{"ca 3f c0 00 00", 1.5},
		{"cb 40 09 00 00 00 00 00 00", 3.125},
		{"c0", nil},
		{"c2", false},
		{"c3", true},
		{"a2 68 69", "hi"},
		{"d9 02 68 69", "hi"},
		{"da 00 02 68 69", "hi"},
		{"db 00 00 00 02 68 69", "hi"},
		{"c4 02 01 02", []byte{1, 2}},
		{"c5 00 02 01 02", []byte{1, 2}},
		{"c6 00 00 00 02 01 02", []byte{1, 2}},
		{"92 01 02", []any{int64(1), int64(2)}},
		{"dc 00 02 01 02", []any{int64(1), int64(2)}},
		{"dd 00 00 00 02 01 02", []any{int64(1), int64(2)}},
		{"81 a1 61 01", map[string]any{"a": int64(1)}},
		{"de 00 01 a1 61 01", map[string]any{"a": int64(1)}},
		{"df 00 00 00 01 a1 61 c0", map[string]any{"a": nil}},
		{"90", []any{}},
		{"80", map[string]any{}},
	}
	for _, c := range cases {
		got, err := decodeValue(hexes(c.in))
		if err != nil || !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: got %#v, %v; want %#v", c.in, got, err, c.want)
		}
	}
	for _, bad := range []string{
		"",                                // nothing
		"cd 01",                           // truncated uint16
		"a3 61 62",                        // truncated str
		"c6 ff ff ff ff 00",               // bin longer than the input
		"dd ff ff ff ff",                  // array longer than the input
		"df ff ff ff ff",                  // map longer than the input
		"81 01 02",                        // non-string key
		"d4 01 00",                        // fixext: unsupported
		"c1",                              // never used
		"01 02",                           // trailing bytes
		strings.Repeat("91 ", 100) + "01", // too deep
	} {
		if v, err := decodeValue(hexes(bad)); err == nil {
			t.Errorf("%q: decoded to %#v, want an error", bad, v)
		}
	}
}

func TestAsInt(t *testing.T) {
	for _, c := range []struct {
		in   any
		want int64
		ok   bool
	}{
		{int64(5), 5, true}, {float64(7), 7, true}, {1.5, 0, false}, {"1", 0, false},
		{uint64(math.MaxUint64), 0, false}, {nil, 0, false}, {math.Inf(1), 0, false},
	} {
		if got, ok := asInt(c.in); got != c.want || ok != c.ok {
			t.Errorf("asInt(%#v) = %d, %v", c.in, got, ok)
		}
	}
}

func TestFrameRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	msg := map[string]any{"type": "cache-get", "id": 3, "actionId": make([]byte, 32)}
	if err := writeFrame(&buf, msg); err != nil {
		t.Fatal(err)
	}
	if n := binary.BigEndian.Uint32(buf.Bytes()); int(n) != buf.Len()-4 {
		t.Fatalf("length prefix %d for %d bytes", n, buf.Len()-4)
	}
	got, err := readFrame(&buf)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"type": "cache-get", "id": int64(3), "actionId": make([]byte, 32)}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %#v", got)
	}
	if _, err := readFrame(&buf); err != io.EOF {
		t.Fatalf("at end: %v, want EOF", err)
	}
}

func TestFrameCaps(t *testing.T) {
	// Over the cap: refused from the header alone, before any body is read.
	var hdr [4]byte
	binary.BigEndian.PutUint32(hdr[:], maxFrameBytes+1)
	if _, err := readFrame(bytes.NewReader(hdr[:])); !errors.Is(err, errFrameTooLarge) {
		t.Fatalf("oversized frame: %v", err)
	}
	binary.BigEndian.PutUint32(hdr[:], math.MaxUint32)
	if _, err := readFrame(bytes.NewReader(hdr[:])); !errors.Is(err, errFrameTooLarge) {
		t.Fatalf("4 GiB frame: %v", err)
	}
	// Exactly at the cap: accepted. {"b": bin32} costs 1+2+5 bytes besides the data.
	const data = maxFrameBytes - 8
	frame := binary.BigEndian.AppendUint32(nil, maxFrameBytes)
	frame = append(frame, 0x81, 0xa1, 'b', 0xc6)
	frame = binary.BigEndian.AppendUint32(frame, data)
	frame = append(frame, make([]byte, data)...)
	if m, err := readFrame(bytes.NewReader(frame)); err != nil || len(m["b"].([]byte)) != data {
		t.Fatalf("frame at the cap: %v", err)
	}
	// The writer refuses to produce an oversized frame.
	if _, err := encodeFrame(map[string]any{"b": make([]byte, maxFrameBytes)}); !errors.Is(err, errFrameTooLarge) {
		t.Fatalf("encoding an oversized frame: %v", err)
	}
	// Truncated body, non-map frames.
	if _, err := readFrame(bytes.NewReader([]byte{0, 0, 0, 5, 0x80})); err != io.ErrUnexpectedEOF {
		t.Fatalf("truncated: %v", err)
	}
	for _, b := range [][]byte{{0, 0, 0, 1, 0x01}, {0, 0, 0, 1, 0x90}, {0, 0, 0, 0}} {
		if m, err := readFrame(bytes.NewReader(b)); err == nil {
			t.Fatalf("% x: decoded %#v", b, m)
		}
	}
}

func TestDecodeBody(t *testing.T) {
	data := []byte("hello, \x00 world \xff")
	enc := base64.StdEncoding.EncodeToString(data)
	for _, line := range []string{`"` + enc + `"`, `"` + strings.ReplaceAll(enc, "+", `\u002b`) + `"`} {
		got, err := decodeBody([]byte(line), int64(len(data)))
		if err != nil || !bytes.Equal(got, data) {
			t.Errorf("%s: %q, %v", line, got, err)
		}
	}
	if _, err := decodeBody([]byte(`"`+enc+`"`), int64(len(data)+1)); err == nil {
		t.Error("size mismatch accepted")
	}
	if _, err := decodeBody([]byte(`"@@@@"`), 3); err == nil {
		t.Error("bad base64 accepted")
	}
}

func TestReadBodyLine(t *testing.T) {
	body := bytes.Repeat([]byte("grid\x00\xff"), 300_000) // base64 longer than the reader's buffer
	enc := `"` + base64.StdEncoding.EncodeToString(body) + `"`
	// as cmd/go writes a put: request, newline, blank line, body line; then a short body line
	// that must not swallow the request after it
	in := "{\"ID\":1}\n\n" + enc + "\n" + `"Z3JpZA=="` + "\n{\"ID\":3}\n"
	r := bufio.NewReaderSize(strings.NewReader(in), 1<<16)
	if line, err := readLine(r); err != nil || string(line) != `{"ID":1}` {
		t.Fatalf("request: %q, %v", line, err)
	}
	line, err := readBodyLine(r, int64(len(body)))
	if err != nil || string(line) != enc {
		t.Fatalf("body line: %d bytes, %v; want %d", len(line), err, len(enc))
	}
	if got, err := decodeBody(line, int64(len(body))); err != nil || !bytes.Equal(got, body) {
		t.Fatalf("decoded: %d bytes, %v", len(got), err)
	}
	line, err = readBodyLine(r, 1000)
	if err != nil || string(line) != `"Z3JpZA=="` {
		t.Fatalf("short body line: %q, %v", line, err)
	}
	if _, err := decodeBody(line, 1000); err == nil {
		t.Fatal("short body accepted")
	}
	if line, err := readLine(r); err != nil || string(line) != `{"ID":3}` {
		t.Fatalf("the request after a short body: %q, %v", line, err)
	}
	if _, err := readBodyLine(r, 10); err != io.EOF {
		t.Fatalf("at end: %v", err)
	}
}

func TestReadLine(t *testing.T) {
	long := strings.Repeat("z", 3<<20) // longer than the reader's buffer
	in := "{\"ID\":1}\n\n\"" + long + "\"\r\n\n{\"ID\":2}"
	r := bufio.NewReaderSize(strings.NewReader(in), 1<<16)
	for _, want := range []string{`{"ID":1}`, `"` + long + `"`, `{"ID":2}`} {
		got, err := readLine(r)
		if err != nil || string(got) != want {
			t.Fatalf("got %d bytes, %v; want %d bytes", len(got), err, len(want))
		}
	}
	if _, err := readLine(r); err != io.EOF {
		t.Fatalf("at end: %v", err)
	}
}

func TestFlagChecks(t *testing.T) {
	for _, c := range []struct {
		args []string
		want bool
	}{
		{[]string{"-o", "x.a", "-p", "main", "-dynlink", "-dwarf=false", "a.go"}, false},
		{[]string{"-json=0,file:///tmp"}, true},
		{[]string{"-cpuprofile", "/tmp/p"}, true},
		{[]string{"--memprofile=/tmp/p"}, true},
		{[]string{"-bench=/tmp/b"}, true},
		{[]string{"-d", "ssa/check/on"}, true},
		{[]string{"-d=checkptr"}, true},
		{[]string{"-d=libfuzzer", "a.go"}, false},
		{[]string{"-d=libfuzzer", "-d=checkptr"}, true},
		{[]string{"-d=libfuzzer,checkptr"}, true},
	} {
		if got := writesExtraFiles(c.args); got != c.want {
			t.Errorf("writesExtraFiles(%q) = %v", c.args, got)
		}
	}
	if !hasFlag([]string{"-V=full"}, "-V") || hasFlag([]string{"-p", "V"}, "-V") {
		t.Error("hasFlag -V")
	}
	if !isCompile("/go/pkg/tool/linux_amd64/compile") || !isCompile("/go/pkg/tool/windows_amd64/compile.exe") ||
		isCompile("/go/pkg/tool/linux_amd64/asm") || isCompile("/go/pkg/tool/linux_amd64/compile2") {
		t.Error("isCompile")
	}
}

// fakeNode listens on a Unix socket in a temp dir, hands the first connection to serve (in a
// goroutine) and returns a connection to it made with dialNode, closed when the test ends.
func fakeNode(t *testing.T, serve func(c net.Conn)) nodeSocket {
	t.Helper()
	path := filepath.Join(t.TempDir(), "s")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		serve(c)
	}()
	conn, err := dialNode(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// A node that takes a request and never answers must not hold up cmd/go: the call gives up
// after callTimeout, fails the connection, and later calls fail at once. It leaves the
// build's stalled mark, so that the build's compiles do not each wait on the node as long.
func TestCallToStalledNode(t *testing.T) {
	mark := filepath.Join(t.TempDir(), "fallbacks")
	t.Setenv("GRID_FALLBACK_LOG", mark)
	conn := fakeNode(t, func(c net.Conn) {
		io.Copy(io.Discard, c) // read everything, answer nothing
	})
	old := callTimeout
	callTimeout = 100 * time.Millisecond
	defer func() { callTimeout = old }()
	n := &nodeConn{conn: conn, nextID: 1, pending: map[int64]chan map[string]any{}}
	go n.readLoop(bufio.NewReader(conn))
	started := time.Now()
	if _, err := n.call(map[string]any{"type": "cache-get"}); err != errNodeStalled {
		t.Fatalf("call to a stalled node: got %v, want errNodeStalled", err)
	}
	if waited := time.Since(started); waited > 5*time.Second {
		t.Fatalf("call waited %v", waited)
	}
	if _, err := n.call(map[string]any{"type": "cache-get"}); err != errNodeGone {
		t.Fatalf("call after the stall: got %v, want errNodeGone", err)
	}
	if !markedStalled(stalledMark()) {
		t.Fatal("the helper found the node hung, but left no stalled mark for the build's compiles")
	}
}

// A compile the node works on for longer than stallLimit is waited for while the node says
// compile-wait; a node that says nothing for stallLimit is given up on, so that the shim runs
// the compile itself (node-stalled) instead of holding up cmd/go.
func TestAskNodeKeepaliveAndStall(t *testing.T) {
	old := stallLimit
	stallLimit = 300 * time.Millisecond
	defer func() { stallLimit = old }()
	for _, tc := range []struct {
		name  string
		waits int // compile-wait frames, 100 ms apart, before the answer
		quiet bool
	}{{"keepalives then a result", 6, false}, {"silence", 0, true}} {
		t.Run(tc.name, func(t *testing.T) {
			conn := fakeNode(t, func(c net.Conn) {
				if _, err := readFrame(c); err != nil {
					return
				}
				for i := 0; i < tc.waits; i++ {
					time.Sleep(100 * time.Millisecond)
					writeFrame(c, map[string]any{"type": "compile-wait", "id": int64(1)})
				}
				if tc.quiet {
					time.Sleep(2 * time.Second)
					return
				}
				writeFrame(c, map[string]any{"type": "compile-result", "id": int64(1), "exitCode": int64(3), "output": []byte("out")})
			})
			started := time.Now()
			reply, err := askNode(conn, "/go/pkg/tool/linux_amd64/compile", []string{"-o", "x.a"})
			waited := time.Since(started)
			if tc.quiet {
				if !errors.Is(err, os.ErrDeadlineExceeded) || waited > 1500*time.Millisecond {
					t.Fatalf("silent node: err %v after %v, want a deadline after ~300 ms", err, waited)
				}
				return
			}
			if err != nil || reply.code != 3 || string(reply.output) != "out" {
				t.Fatalf("after %v of keepalives (beyond stallLimit): reply %+v, err %v", waited, reply, err)
			}
		})
	}
}

// The mark a shim leaves when it finds the node hung: beside grid build's fallback log, else one
// per go command (grid env); honoured while fresh only, so that a node that recovers is asked
// again by later go commands.
func TestStalledMark(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("GRID_FALLBACK_LOG", filepath.Join(dir, "fallbacks"))
	if got := stalledMark(); got != filepath.Join(dir, "fallbacks.stalled") {
		t.Errorf("under grid build: %s", got)
	}
	t.Setenv("GRID_FALLBACK_LOG", "")
	if got, want := stalledMark(), filepath.Join(os.TempDir(), fmt.Sprintf("grid-node-stalled-%d", os.Getppid())); got != want {
		t.Errorf("under grid env: %s, want %s", got, want)
	}
	mark := filepath.Join(dir, "mark")
	if markedStalled(mark) {
		t.Error("no mark, yet marked")
	}
	if err := os.WriteFile(mark, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if !markedStalled(mark) {
		t.Error("a fresh mark not honoured")
	}
	old := time.Now().Add(-stalledFor - time.Minute)
	if err := os.Chtimes(mark, old, old); err != nil {
		t.Fatal(err)
	}
	if markedStalled(mark) {
		t.Error("an expired mark honoured")
	}
}

// dialNode's connection (a plain descriptor, not a net.Conn) must honour deadlines, which bound
// the cache helper's handshake, and must fail at once when nothing listens.
func TestDialNode(t *testing.T) {
	if _, err := dialNode(filepath.Join(t.TempDir(), "absent"), time.Second); err == nil {
		t.Fatal("dialNode to a missing socket succeeded")
	}
	got := make(chan []byte, 1)
	conn := fakeNode(t, func(c net.Conn) {
		b := make([]byte, 5)
		io.ReadFull(c, b)
		got <- b
		io.Copy(io.Discard, c) // then answer nothing
	})
	if _, err := conn.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	if b := <-got; string(b) != "hello" {
		t.Fatalf("the listener read %q", b)
	}
	if err := conn.SetDeadline(time.Now().Add(50 * time.Millisecond)); err != nil {
		t.Fatalf("SetDeadline: %v", err)
	}
	started := time.Now()
	if _, err := conn.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read past the deadline: got %v, want a timeout", err)
	}
	if waited := time.Since(started); waited > 5*time.Second {
		t.Fatalf("read waited %v", waited)
	}
}

// askGrant answers one compile with a compile-here grant carrying fields, and returns what
// askNode made of it.
func askGrant(t *testing.T, fields map[string]any) (nodeReply, error) {
	conn := fakeNode(t, func(c net.Conn) {
		if _, err := readFrame(c); err != nil {
			return
		}
		grant := map[string]any{"type": "compile-here", "id": int64(1)}
		for k, v := range fields {
			grant[k] = v
		}
		writeFrame(c, grant)
	})
	return askNode(conn, "/go/pkg/tool/linux_amd64/compile", []string{"-o", "x.a"})
}

// A grant to run the compile here may carry the priority to run it at, the compiler's starting
// heap and its backend concurrency; out of range is not a reply from a node of ours.
func TestAskNodeCompileHere(t *testing.T) {
	for _, tc := range []struct {
		name        string
		fields      map[string]any
		nice        int
		heapMB      int
		concurrency int
		broken      bool
	}{
		{"nothing", nil, 0, 0, 0, false},
		{"nice 5", map[string]any{"nice": int64(5)}, 5, 0, 0, false},
		{"nice 19", map[string]any{"nice": int64(19)}, 19, 0, 0, false},
		{"nice 40", map[string]any{"nice": int64(40)}, 0, 0, 0, true},
		{"nice -5", map[string]any{"nice": int64(-5)}, 0, 0, 0, true},
		{"heap 512", map[string]any{"heapMB": int64(512)}, 0, 512, 0, false},
		{"heap negative", map[string]any{"heapMB": int64(-1)}, 0, 0, 0, true},
		{"heap absurd", map[string]any{"heapMB": int64(maxHeapMB + 1)}, 0, 0, 0, true},
		{"concurrency 1", map[string]any{"concurrency": int64(1)}, 0, 0, 1, false},
		{"concurrency negative", map[string]any{"concurrency": int64(-1)}, 0, 0, 0, true},
		{"concurrency absurd", map[string]any{"concurrency": int64(maxConcurrency + 1)}, 0, 0, 0, true},
		{"all three", map[string]any{"nice": int64(5), "heapMB": int64(512), "concurrency": int64(2)}, 5, 512, 2, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reply, err := askGrant(t, tc.fields)
			if tc.broken {
				if !errors.Is(err, errMalformed) {
					t.Fatalf("%v: err %v, want errMalformed", tc.fields, err)
				}
				return
			}
			if err != nil || !reply.runHere || reply.nice != tc.nice || reply.heapMB != tc.heapMB || reply.concurrency != tc.concurrency {
				t.Fatalf("reply %+v, err %v; want runHere at nice %d with heap %d and concurrency %d", reply, err, tc.nice, tc.heapMB, tc.concurrency)
			}
		})
	}
}

// The heap goes first among the compiler's arguments, so that cmd/go's own `-d` still wins.
func TestWithStartHeap(t *testing.T) {
	if got := strings.Join(withStartHeap([]string{"-o", "x.a", "-d=ssa/check/on", "x.go"}, 512), " "); got != "-d=gcstart=512 -o x.a -d=ssa/check/on x.go" {
		t.Fatalf("withStartHeap: %q", got)
	}
	if got := strings.Join(withStartHeap([]string{"-o", "x.a"}, 0), " "); got != "-o x.a" {
		t.Fatalf("withStartHeap with no heap: %q", got)
	}
}

// cmd/go's -c is lowered to the node's share, never raised; none is added.
func TestWithConcurrency(t *testing.T) {
	for _, tc := range []struct {
		args []string
		c    int
		want string
	}{
		{[]string{"-p", "p", "-c=4", "x.go"}, 1, "-p p -c=1 x.go"},
		{[]string{"-c=2", "x.go"}, 4, "-c=2 x.go"},
		{[]string{"-p", "p", "x.go"}, 1, "-p p x.go"},
		{[]string{"-c=many", "x.go"}, 1, "-c=many x.go"},
		{[]string{"-c=4", "x.go"}, 0, "-c=4 x.go"},
	} {
		if got := strings.Join(withConcurrency(tc.args, tc.c), " "); got != tc.want {
			t.Errorf("withConcurrency(%q, %d) = %q, want %q", tc.args, tc.c, got, tc.want)
		}
	}
}

// GRID_TEST_STALL_MS only ever shortens the stall limits, and never below two keepalives.
func TestShortenStallForTests(t *testing.T) {
	oldStall, oldCall := stallLimit, callTimeout
	defer func() { stallLimit, callTimeout = oldStall, oldCall }()
	for _, tc := range []struct {
		value string
		want  time.Duration
	}{
		{"", 30 * time.Second}, {"x", 30 * time.Second}, {"-1", 30 * time.Second},
		{"9999", 30 * time.Second}, {"60000", 30 * time.Second}, {"10000", 10 * time.Second}, {"12000", 12 * time.Second},
	} {
		stallLimit, callTimeout = oldStall, oldCall
		shortenStallForTests(tc.value)
		if stallLimit != tc.want || callTimeout != tc.want {
			t.Errorf("GRID_TEST_STALL_MS=%q: stallLimit %v, callTimeout %v, want %v", tc.value, stallLimit, callTimeout, tc.want)
		}
	}
}
