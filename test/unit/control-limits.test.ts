// The control socket's limits on unfinished frames: a connection that stalls in the middle of
// one is closed, and so is the one whose bytes would take what the node holds for all of them
// past its cap; the others, and new ones, are served. A real server on a real Unix socket, with
// the limits made small.
import assert from 'node:assert/strict'
import { createConnection, type Socket } from 'node:net'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { encodeFrame, FrameDecoder, type Message } from '@grid/protocol'
import { ControlServer } from '@grid/node/server'
import { tempDir, waitFor } from '../helpers/index.js'

interface Client { socket: Socket, replies: Message[], closed: () => boolean }

async function connect (path: string): Promise<Client> {
  const socket = createConnection(path)
  await new Promise<void>((resolve, reject) => { socket.once('connect', resolve); socket.once('error', reject) })
  const decoder = new FrameDecoder({ validate: v => v as Message })
  const replies: Message[] = []
  let closed = false
  socket.on('data', chunk => { replies.push(...decoder.push(chunk)) })
  socket.on('error', () => {})
  socket.on('close', () => { closed = true })
  return { socket, replies, closed: () => closed }
}

describe('control socket limits', () => {
  it('closes a connection stalled mid-frame, and the one that would pass the cap on unfinished frames; serves the rest', async (t) => {
    const dir = await tempDir(t, 'control')
    const dropped: string[] = []
    const server = new ControlServer({
      path: join(dir, 'grid.sock'),
      handler: async request => ({ type: 'cache-miss', id: request.id }),
      onBadFrame: reason => dropped.push(reason),
      partialFrameMs: 300,
      maxPendingBytes: 1024 * 1024
    })
    await server.start()
    t.after(async () => { await server.stop() })

    // a frame announced, ten bytes of it sent, then nothing
    const stalls = await connect(server.path)
    stalls.socket.write(Buffer.concat([Buffer.from([0, 0, 0, 100]), Buffer.alloc(10)]))
    await waitFor(() => stalls.closed(), 5_000, () => 'the stalled connection to be closed')
    assert.match(dropped[0] ?? '', /sent part of a frame \(14 bytes\) and nothing for 0\.3 s/)

    // 600 kB of a big frame held, then another connection's 600 kB would make 1.2 MB
    const big = encodeFrame({ type: 'status', id: 7, future: 'x'.repeat(900_000) } as unknown as Message)
    const patient = await connect(server.path)
    patient.socket.write(big.subarray(0, 600_000))
    const greedy = await connect(server.path)
    greedy.socket.write(Buffer.concat([big.subarray(0, 4), Buffer.alloc(600_000)]))
    await waitFor(() => greedy.closed(), 5_000, () => 'the connection over the cap to be closed')
    assert.match(dropped[1] ?? '', /would take the unfinished frames the node holds past 1048576 bytes/)
    assert.equal(patient.closed(), false, 'the first one keeps its place')
    patient.socket.write(big.subarray(600_000))
    await waitFor(() => patient.replies.length === 1, 5_000, () => 'the whole frame to be answered')
    assert.deepEqual(patient.replies[0], { type: 'cache-miss', id: 7 })

    // what the closed connections held is released: a new one may send as much again
    const fresh = await connect(server.path)
    fresh.socket.write(big)
    await waitFor(() => fresh.replies.length === 1, 5_000, () => 'a new connection to be served')
    assert.equal(dropped.length, 2)
    for (const c of [patient, fresh]) c.socket.destroy()
  })
})
