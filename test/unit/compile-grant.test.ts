// The local slots a node grants shims (`compile-here`): a slot granted on a connection is freed
// when that connection closes, whatever its client sent. A real node (no mesh) on a real Unix
// socket; the frames sent raw, as a shim (or a buggy client) would.
import assert from 'node:assert/strict'
import { createConnection, type Socket } from 'node:net'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { GridNode } from '@grid/node/server'
import { encodeFrame, FrameDecoder, type Message } from '@grid/protocol'
import { defer, run, tempDir, waitFor } from '../helpers/index.js'

/** A raw connection to the node: what it sends, frame by frame. */
async function connect (path: string): Promise<{ socket: Socket, next: () => Promise<Message> }> {
  const socket = createConnection(path)
  await new Promise<void>((resolve, reject) => { socket.once('connect', resolve); socket.once('error', reject) })
  socket.on('error', () => {})
  const decoder = new FrameDecoder()
  const frames: Message[] = []
  let wake = (): void => {}
  socket.on('data', chunk => { frames.push(...decoder.push(chunk)); wake() })
  socket.on('close', () => { wake() })
  const next = async (): Promise<Message> => {
    while (frames.length === 0) {
      if (socket.destroyed) throw new Error('the node closed the connection')
      await new Promise<void>(resolve => { wake = resolve })
    }
    return frames.shift() as Message
  }
  return { socket, next }
}

describe('compile-here grants', () => {
  it('a connection that sends two compiles gets one slot, not two of which it frees one as it closes', async (t) => {
    const dir = await tempDir(t)
    const control = join(dir, 'g.sock')
    const node = new GridNode({ cacheDir: join(dir, 'cache'), control, mode: 'daemon', slots: 2 })
    await node.start()
    defer(t, async () => { await node.stop() })
    const tool = join((await run('go', ['env', 'GOTOOLDIR'])).stdout.trim(), 'compile')
    const compile = (id: number): Buffer => encodeFrame({
      type: 'compile', id, build: '', tool, args: ['-o', join(dir, 'x.a'), '-p', 'x', join(dir, 'x.go')], cwd: dir, env: {}, importPath: 'x', canRunHere: true
    })
    const client = await connect(control)
    client.socket.write(Buffer.concat([compile(1), compile(2)]))
    const replies = [await client.next(), await client.next()].sort((a, b) => a.id - b.id)
    assert.equal(replies[0]?.type, 'compile-here', 'the first compile gets its slot')
    assert.equal(replies[1]?.type, 'error', 'the second one, on a connection that holds a slot, is refused')
    assert.equal((replies[1] as { code?: string }).code, 'GRID_ERR_MESSAGE_INVALID')
    assert.equal(node.pool.running, 1)
    client.socket.destroy() // the compiler it became has exited
    // Before, the second grant took the first one's place on the connection: its close freed
    // one slot, and the other stayed taken for good (after `slots` such connections every
    // compile waited for ever, kept alive by compile-wait).
    await waitFor(() => node.pool.running === 0, 10_000, () => `every slot free again (${node.pool.running} taken)`)
    // and both slots serve shims again, one connection each
    const a = await connect(control)
    const b = await connect(control)
    defer(t, () => { a.socket.destroy(); b.socket.destroy() })
    a.socket.write(compile(1))
    b.socket.write(compile(1))
    assert.equal((await a.next()).type, 'compile-here')
    assert.equal((await b.next()).type, 'compile-here')
  })
})
