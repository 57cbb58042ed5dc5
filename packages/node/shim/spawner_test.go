package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestParseSpawnRejectsMalformedRequests(t *testing.T) {
	good := func() map[string]any {
		return map[string]any{"type": "spawn", "id": int64(7), "file": "/bin/true", "args": []any{"a"},
			"cwd": "/", "env": []any{"K=V"}, "nice": int64(5), "outputCap": int64(100)}
	}
	req, err := parseSpawn(good())
	if err != nil || req.id != 7 || req.file != "/bin/true" || len(req.args) != 1 || req.env[0] != "K=V" || *req.nice != 5 || req.outputCap != 100 {
		t.Fatalf("good request: %+v, %v", req, err)
	}
	for field, bad := range map[string]any{
		"id": "7", "file": int64(1), "cwd": nil, "args": "a", "env": []any{int64(1)}, "nice": "low",
		"outputCap": int64(maxFrameBytes),
	} {
		m := good()
		m[field] = bad
		if _, err := parseSpawn(m); err == nil || !strings.Contains(err.Error(), field) {
			t.Errorf("%s = %#v: got %v, want an error naming %s", field, bad, err, field)
		}
	}
	m := good()
	delete(m, "nice")
	if req, err := parseSpawn(m); err != nil || req.nice != nil {
		t.Errorf("no nice: %+v, %v", req, err)
	}
}

func TestCappedOutputKeepsTheFirstBytes(t *testing.T) {
	c := &cappedOutput{limit: 5}
	for _, s := range []string{"abc", "def", "ghi"} {
		if n, err := c.Write([]byte(s)); n != len(s) || err != nil {
			t.Fatalf("Write(%q) = %d, %v: a full pipe would block the child", s, n, err)
		}
	}
	if !bytes.Equal(c.buf, []byte("abcde")) {
		t.Errorf("kept %q, want %q", c.buf, "abcde")
	}
}
