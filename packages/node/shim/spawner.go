package main

// Spawner mode (`grid-shim spawner`): the node starts this once and runs the compiles it starts
// itself (a peer's tasks, races) through it. Node forks its whole address space for every child
// it spawns, so the cost grows with the node's heap: ~8 ms of a helper's event loop per compile
// at a ~200 MB heap. Go starts a child with clone(CLONE_VM|CLONE_VFORK), whose cost does not grow
// with anything (docs/protocol.md, "The spawner").
//
// Frames (frame.go) on stdin, one per request, and on stdout, one per answer:
//
//	node → spawner  {type: "spawn", id, file, args, cwd, env: ["K=V", …], nice?, outputCap}
//	                {type: "spawn-kill", id, signal: "SIGTERM" | "SIGKILL"}
//	spawner → node  {type: "spawn-exit", id, exitCode, signal?, output}
//	                {type: "spawn-failed", id, message}
//
// The node builds every command line itself (pool.ts); this process checks only that each
// frame is well formed. Standard error is the node's log. When stdin ends (the node stopped or
// died), every child still running is killed before this process exits; if this process dies,
// the kernel kills them (Linux, the only place the node uses it). A stop signal sent to the
// node's whole process group (a terminal's Ctrl-C or hang-up, systemd's stop) is the node's to
// act on: this process outlives it, so that the node, as it stops, closes it like any other time.

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"sync"
	"syscall"
)

// spawnRequest is a checked "spawn" frame.
type spawnRequest struct {
	id        int64
	file      string
	args      []string
	cwd       string
	env       []string
	nice      *int64
	outputCap int
}

// parseSpawn checks a "spawn" frame field by field.
func parseSpawn(msg map[string]any) (spawnRequest, error) {
	var req spawnRequest
	var ok bool
	if req.id, ok = asInt(msg["id"]); !ok {
		return req, errors.New("spawn: id is not an integer")
	}
	if req.file, ok = msg["file"].(string); !ok || req.file == "" {
		return req, errors.New("spawn: file is not a string")
	}
	if req.cwd, ok = msg["cwd"].(string); !ok || req.cwd == "" {
		return req, errors.New("spawn: cwd is not a string")
	}
	var err error
	if req.args, err = stringList(msg["args"], "args"); err != nil {
		return req, err
	}
	if req.env, err = stringList(msg["env"], "env"); err != nil {
		return req, err
	}
	if v, present := msg["nice"]; present && v != nil {
		n, ok := asInt(v)
		if !ok {
			return req, errors.New("spawn: nice is not an integer")
		}
		req.nice = &n
	}
	limit, ok := asInt(msg["outputCap"])
	if !ok || limit < 0 || limit > maxFrameBytes/2 {
		return req, errors.New("spawn: outputCap is not an integer in range")
	}
	req.outputCap = int(limit)
	return req, nil
}

func stringList(v any, name string) ([]string, error) {
	items, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("spawn: %s is not a list", name)
	}
	out := make([]string, len(items))
	for i, item := range items {
		if out[i], ok = item.(string); !ok {
			return nil, fmt.Errorf("spawn: %s[%d] is not a string", name, i)
		}
	}
	return out, nil
}

// cappedOutput keeps the first limit bytes written to it and drops the rest, so that a child
// that prints without end neither blocks nor grows the spawner. One value serves as both the
// child's stdout and stderr: os/exec then gives them one pipe, merged in the order written.
type cappedOutput struct {
	limit int
	buf   []byte
}

func (c *cappedOutput) Write(p []byte) (int, error) {
	if room := c.limit - len(c.buf); room > 0 {
		c.buf = append(c.buf, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

// spawner holds the children running and serialises the frames written to the node.
type spawner struct {
	out      io.Writer
	outMu    sync.Mutex
	runMu    sync.Mutex
	running  map[int64]*os.Process
	children sync.WaitGroup
}

func (s *spawner) send(msg map[string]any) {
	s.outMu.Lock()
	defer s.outMu.Unlock()
	if err := writeFrame(s.out, msg); err != nil {
		fmt.Fprintf(os.Stderr, "grid-shim spawner: writing %s for %v: %v\n", msg["type"], msg["id"], err)
	}
}

func (s *spawner) failed(id int64, err error) {
	s.send(map[string]any{"type": "spawn-failed", "id": id, "message": err.Error()})
}

// start runs one child and reports its end from a goroutine of its own.
func (s *spawner) start(req spawnRequest) {
	cmd := exec.Command(req.file, req.args...)
	cmd.Dir = req.cwd
	cmd.Env = req.env
	cmd.SysProcAttr = childAttr()
	output := &cappedOutput{limit: req.outputCap}
	cmd.Stdout = output
	cmd.Stderr = output
	if err := cmd.Start(); err != nil {
		s.failed(req.id, err)
		return
	}
	if req.nice != nil {
		setNice(cmd.Process.Pid, int(*req.nice))
	}
	s.runMu.Lock()
	s.running[req.id] = cmd.Process
	s.runMu.Unlock()
	s.children.Add(1)
	go func() {
		defer s.children.Done()
		err := cmd.Wait()
		s.runMu.Lock()
		delete(s.running, req.id)
		s.runMu.Unlock()
		var exit *exec.ExitError
		if err != nil && !errors.As(err, &exit) {
			s.failed(req.id, err) // the output could not be read; the child has ended
			return
		}
		msg := map[string]any{"type": "spawn-exit", "id": req.id, "exitCode": int64(cmd.ProcessState.ExitCode()), "output": output.buf}
		if sig := exitSignal(cmd.ProcessState); sig != "" {
			msg["signal"] = sig
		}
		s.send(msg)
	}()
}

func (s *spawner) kill(msg map[string]any) {
	id, _ := asInt(msg["id"])
	sig := syscall.SIGTERM
	if msg["signal"] == "SIGKILL" {
		sig = syscall.SIGKILL
	}
	s.runMu.Lock()
	p := s.running[id]
	s.runMu.Unlock()
	if p != nil {
		p.Signal(sig)
	}
}

// killAll ends every child still running: the node that asked for them is gone.
func (s *spawner) killAll() {
	s.runMu.Lock()
	for _, p := range s.running {
		p.Kill()
	}
	s.runMu.Unlock()
}

func runSpawner() int {
	// Caught, not ignored: an ignored signal stays ignored through exec, and the children must
	// keep the default action (spawn-kill sends them SIGTERM).
	signal.Notify(make(chan os.Signal, 1), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	s := &spawner{out: os.Stdout, running: map[int64]*os.Process{}}
	in := bufio.NewReaderSize(os.Stdin, 64<<10)
	for {
		msg, err := readFrame(in)
		if err != nil {
			if err != io.EOF {
				fmt.Fprintf(os.Stderr, "grid-shim spawner: reading a request: %v\n", err)
			}
			break
		}
		switch msg["type"] {
		case "spawn":
			req, err := parseSpawn(msg)
			if err != nil {
				id, _ := asInt(msg["id"])
				s.failed(id, err)
				continue
			}
			s.start(req)
		case "spawn-kill":
			s.kill(msg)
		default:
			fmt.Fprintf(os.Stderr, "grid-shim spawner: unknown request %v\n", msg["type"])
		}
	}
	s.killAll()
	s.children.Wait()
	return 0
}
