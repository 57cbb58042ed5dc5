import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { Packr } from 'msgpackr'
import { encodeFrame, FrameDecoder, MAX_FRAME_BYTES, MAX_RECALL, MAX_INDEX_BATCH, parseSize, formatBytes, validateMessage, errorCode } from '@grid/protocol'

const raw = new Packr({ useRecords: false })
function frameOf (value: unknown): Buffer {
  const body = raw.pack(value)
  const head = Buffer.alloc(4)
  head.writeUInt32BE(body.length)
  return Buffer.concat([head, body])
}

describe('frames', () => {
  it('round-trips a message split at every byte boundary', () => {
    const msg = { type: 'cache-get', id: 7, build: 'b1', actionId: new Uint8Array(32).fill(9) } as const
    const frame = encodeFrame(msg)
    for (let cut = 0; cut <= frame.length; cut++) {
      const d = new FrameDecoder()
      const out = [...d.push(frame.subarray(0, cut)), ...d.push(frame.subarray(cut))]
      assert.equal(out.length, 1)
      assert.equal(out[0]?.type, 'cache-get')
      assert.deepEqual(Buffer.from((out[0] as { actionId: Uint8Array }).actionId), Buffer.alloc(32, 9))
    }
  })

  it('decodes several frames from one chunk', () => {
    const a = encodeFrame({ type: 'status', id: 1 })
    const b = encodeFrame({ type: 'shutdown', id: 2 })
    assert.deepEqual(new FrameDecoder().push(Buffer.concat([a, b])).map(m => m.id), [1, 2])
  })

  it('refuses an oversized length before buffering the body', () => {
    const head = Buffer.alloc(4)
    head.writeUInt32BE(MAX_FRAME_BYTES + 1)
    assert.throws(() => new FrameDecoder().push(head), (err: unknown) => errorCode(err) === 'GRID_ERR_FRAME_TOO_LARGE')
  })

  it('refuses bytes that are not msgpack', () => {
    const garbage = Buffer.concat([Buffer.from([0, 0, 0, 3]), Buffer.from([0xc1, 0xc1, 0xc1])])
    assert.throws(() => new FrameDecoder().push(garbage), (err: unknown) => errorCode(err) === 'GRID_ERR_FRAME_MALFORMED')
  })

  it('refuses unknown types, missing fields and wrong widths', () => {
    const bad = [
      [1, 2, 3],
      { type: 'rm-rf', id: 1 },
      { type: 'cache-get', id: 1, build: 'x' },
      { type: 'cache-get', id: 1, build: 'x', actionId: new Uint8Array(31) },
      { type: 'cache-index', id: 1, build: 'x', entries: new Uint8Array(0) },
      { type: 'cache-index', id: 1, build: 'x', entries: new Uint8Array(73) },
      { type: 'cache-index', id: 1, build: 'x', entries: new Uint8Array((MAX_INDEX_BATCH + 1) * 72) },
      { type: 'cache-recalled', id: 1, build: 'x', actionIds: new Uint8Array(33) },
      { type: 'cache-recalled', id: 1, build: 'x', actionIds: new Uint8Array((MAX_RECALL + 1) * 32) },
      { type: 'compile', id: 1, build: '', tool: '/t', args: ['a', 3], cwd: '/', env: {}, importPath: 'p' },
      { type: 'compile', id: 1, build: '', tool: '/t', args: [], cwd: '/', env: { A: 1 }, importPath: 'p' },
      { type: 'status', id: -1 },
      { type: 'status', id: 1.5 }
    ]
    for (const value of bad) {
      assert.throws(() => new FrameDecoder().push(frameOf(value)), (err: unknown) => errorCode(err) === 'GRID_ERR_MESSAGE_INVALID', JSON.stringify(value))
    }
  })

  it('takes a whole number of ActionIDs in cache-recalled', () => {
    const m = validateMessage({ type: 'cache-recalled', id: 2, build: 'b', actionIds: new Uint8Array(64) })
    assert.equal(m.type, 'cache-recalled')
  })

  it('takes build-begun with or without the node\'s protocol version (nodes of version 1 send none) and mode, and refuses a mode it does not know', () => {
    const begun = { type: 'build-begun', id: 1, build: 'b', parallelism: 2, remoteSlots: 0 }
    assert.equal(validateMessage(begun).type, 'build-begun')
    assert.equal(validateMessage({ ...begun, protocol: 2 }).type, 'build-begun')
    assert.equal(validateMessage({ ...begun, protocol: 2, offload: true }).type, 'build-begun')
    assert.throws(() => validateMessage({ ...begun, offload: 'yes' }), /offload/)
    for (const mode of ['daemon', 'embedded']) assert.equal(validateMessage({ ...begun, mode }).type, 'build-begun')
    for (const mode of ['Daemon', 'other', 1, null]) assert.throws(() => validateMessage({ ...begun, mode }), /field mode/)
    assert.throws(() => validateMessage({ ...begun, protocol: 'two' }), (err: unknown) => errorCode(err) === 'GRID_ERR_MESSAGE_INVALID')
  })

  it('takes build-stats with or without why the node\'s mesh did not start, and refuses a malformed one', () => {
    const stats = { type: 'build-stats', id: 1, stats: { build: 'b' } }
    assert.equal(validateMessage(stats).type, 'build-stats')
    const meshFailure = { code: 'GRID_ERR_MESH_START', message: 'the mesh could not listen', hint: 'pick another port' }
    assert.deepEqual(validateMessage({ ...stats, meshFailure }), { ...stats, meshFailure })
    const { hint: _, ...noHint } = meshFailure
    assert.equal(validateMessage({ ...stats, meshFailure: noHint }).type, 'build-stats')
    for (const bad of ['down', { ...meshFailure, code: 7 }, { code: meshFailure.code }, { ...meshFailure, hint: null }, [meshFailure]]) {
      assert.throws(() => validateMessage({ ...stats, meshFailure: bad }), (err: unknown) => errorCode(err) === 'GRID_ERR_MESSAGE_INVALID' && /meshFailure/.test((err as Error).message))
    }
  })

  it('takes cache-open with or without the go command of a helper under grid env, and names its build in cache-opened', () => {
    const open = { type: 'cache-open', id: 1, build: '' }
    assert.equal(validateMessage(open).type, 'cache-open')
    assert.equal(validateMessage({ ...open, command: ['go', 'build', './...'], cwd: '/src', goPid: 4242 }).type, 'cache-open')
    assert.throws(() => validateMessage({ ...open, command: 'go build' }), /command/)
    assert.throws(() => validateMessage({ ...open, command: ['go', 1] }), /command/)
    assert.throws(() => validateMessage({ ...open, cwd: 7 }), /cwd/)
    assert.throws(() => validateMessage({ ...open, goPid: -1 }), /goPid/)
    const opened = { type: 'cache-opened', id: 1, blobDir: '/b', recalled: new Uint8Array(0) }
    assert.equal(validateMessage({ ...opened, build: 'b1' }).type, 'cache-opened')
    assert.throws(() => validateMessage({ ...opened, build: 1 }), /build/)
  })

  it('takes compile-here with or without the priority and the concurrency the compiler is to run with', () => {
    assert.equal(validateMessage({ type: 'compile-here', id: 1 }).type, 'compile-here')
    assert.equal((validateMessage({ type: 'compile-here', id: 1, nice: 5 }) as { nice?: number }).nice, 5)
    assert.throws(() => validateMessage({ type: 'compile-here', id: 1, nice: -1 }), /nice/)
    assert.throws(() => validateMessage({ type: 'compile-here', id: 1, nice: 'low' }), /nice/)
    assert.equal((validateMessage({ type: 'compile-here', id: 1, concurrency: 1 }) as { concurrency?: number }).concurrency, 1)
    assert.throws(() => validateMessage({ type: 'compile-here', id: 1, concurrency: -1 }), /concurrency/)
  })

  it('takes whole index records in cache-index, up to a full batch', () => {
    for (const n of [1, MAX_INDEX_BATCH]) {
      const m = validateMessage({ type: 'cache-index', id: 3, build: 'b', entries: new Uint8Array(n * 72) })
      assert.equal(m.type, 'cache-index')
    }
  })

  it('accepts extra fields from newer senders', () => {
    const m = validateMessage({ type: 'status', id: 3, future: true })
    assert.equal(m.type, 'status')
  })

  it('survives a fuzz loop of random frames without throwing anything but grid errors', () => {
    let seed = 42
    const rand = (): number => { seed = (seed * 1103515245 + 12345) & 0x7fffffff; return seed }
    for (let i = 0; i < 2000; i++) {
      const len = rand() % 64
      const body = Buffer.alloc(len)
      for (let j = 0; j < len; j++) body[j] = rand() & 0xff
      const head = Buffer.alloc(4)
      head.writeUInt32BE(len)
      try {
        new FrameDecoder().push(Buffer.concat([head, body]))
      } catch (err) {
        assert.match(String(errorCode(err)), /^GRID_ERR_(FRAME_MALFORMED|MESSAGE_INVALID)$/)
      }
    }
  })
})

describe('sizes', () => {
  it('parses units', () => {
    assert.equal(parseSize('10G'), 10 * 2 ** 30)
    assert.equal(parseSize('500mb'), 500 * 2 ** 20)
    assert.equal(parseSize('1.5K'), 1536)
    assert.equal(parseSize('42'), 42)
    assert.throws(() => parseSize('ten'), (err: unknown) => errorCode(err) === 'GRID_ERR_USAGE')
    assert.throws(() => parseSize('5X'), (err: unknown) => errorCode(err) === 'GRID_ERR_USAGE')
  })
  it('formats bytes', () => {
    assert.equal(formatBytes(512), '512 B')
    assert.equal(formatBytes(1536), '1.5 KiB')
    assert.equal(formatBytes(3 * 2 ** 30), '3.0 GiB')
  })
})

describe('adverts', async () => {
  const { encodeAdvert, decodeAdvert, MAX_ADVERT_BYTES } = await import('@grid/protocol')
  const good = {
    v: 1,
    peerId: '12D3KooWGRE7oQjg6XR8vkxKpYwMdidLejtAiVM1VQxJey3FcRU4',
    addrs: ['/ip4/10.0.0.2/tcp/4770/p2p/12D3KooWGRE7oQjg6XR8vkxKpYwMdidLejtAiVM1VQxJey3FcRU4'],
    version: '0.1.0',
    toolchains: [{ go: 'go1.26.8', compiler: 'compile version go1.26.8', canary: 'ab'.repeat(32), experiment: '' }],
    targets: ['*'],
    slots: { total: 4, free: 3 },
    load: 0.25,
    policy: 'idle' as const,
    accepting: true,
    seq: 7
  }

  it('round-trips a valid advert', () => {
    assert.deepEqual(decodeAdvert(encodeAdvert(good)), good)
    // what its worker unpacks: absent from members before it was added, kept as it came
    const unpacking = { ...good, unpacks: ['br', 'zstd'] }
    assert.deepEqual(decodeAdvert(encodeAdvert(unpacking)), unpacking)
  })

  it('refuses bad fields, naming them', () => {
    const cases: Array<[string, Record<string, unknown>]> = [
      ['slots', { slots: { total: 2, free: 3 } }],
      ['slots', { slots: { total: -1, free: 0 } }],
      ['policy', { policy: 'sometimes' }],
      ['toolchains', { toolchains: [{ go: 'go1.26', compiler: 'x', canary: 'not-hex', experiment: '' }] }],
      ['addrs', { addrs: ['not a multiaddr'] }],
      ['addrs', { addrs: Array(17).fill('/ip4/1.2.3.4/tcp/1') }],
      ['targets', { targets: ['linux/amd64; rm -rf /'] }],
      ['load', { load: Number.NaN }],
      ['peerId', { peerId: 42 }],
      ['version 2', { v: 2 }],
      ['accepting', { accepting: 'yes' }],
      ['seq', { seq: -1 }],
      ['unpacks', { unpacks: 'br' }],
      ['unpacks', { unpacks: ['x'.repeat(17)] }],
      ['unpacks', { unpacks: Array(9).fill('br') }],
      // printed by other members (grid peers, logs): no terminal escape sequences
      ['version', { version: '0.1.0\x1b]0;owned\x07' }],
      ['toolchains', { toolchains: [{ ...good.toolchains[0], compiler: 'compile version go1.26\n\x1b[2J' }] }],
      ['addrs', { addrs: ['/ip4/1.2.3.4/tcp/1\x9b2J'] }]
    ]
    for (const [field, change] of cases) {
      const bytes = new Packr({ useRecords: false }).pack({ ...good, ...change })
      assert.throws(() => decodeAdvert(bytes, 'peerX'), (err: unknown) => errorCode(err) === 'GRID_ERR_ADVERT_INVALID' && (err as Error).message.includes(field), field)
    }
  })

  it('refuses an oversized advert before decoding it', () => {
    assert.throws(() => decodeAdvert(new Uint8Array(MAX_ADVERT_BYTES + 1)), (err: unknown) => errorCode(err) === 'GRID_ERR_ADVERT_INVALID' && /over the cap/.test((err as Error).message))
  })

  it('survives a fuzz loop: random bytes and mutated adverts only ever give GRID_ERR_ADVERT_INVALID', () => {
    let seed = 7
    const rand = (): number => { seed = (seed * 1103515245 + 12345) & 0x7fffffff; return seed }
    const valid = Buffer.from(encodeAdvert(good))
    let accepted = 0
    for (let i = 0; i < 5000; i++) {
      let bytes: Buffer
      if (i % 2 === 0) {
        bytes = Buffer.alloc(rand() % 200)
        for (let j = 0; j < bytes.length; j++) bytes[j] = rand() & 0xff
      } else {
        bytes = Buffer.from(valid)
        for (let k = 0; k < 1 + (rand() % 4); k++) bytes[rand() % bytes.length] = rand() & 0xff
      }
      try {
        decodeAdvert(bytes)
        accepted++
      } catch (err) {
        assert.equal(errorCode(err), 'GRID_ERR_ADVERT_INVALID', String(err))
      }
    }
    assert.ok(accepted < 2500, 'most mutations are refused')
  })
})

describe('peer cache messages', async () => {
  const { validatePeerCacheMessage, INLINE_BODY_BYTES, INLINE_BUDGET_BYTES, MAX_LOOKUP_KEYS } = await import('@grid/protocol')
  const claim = (size: number, fill = 1): Record<string, unknown> => ({
    actionId: new Uint8Array(32).fill(fill),
    outputId: new Uint8Array(32).fill(fill + 1),
    size,
    time: 1_700_000_000_000,
    producer: '12D3KooWGRE7oQjg6XR8vkxKpYwMdidLejtAiVM1VQxJey3FcRU4',
    toolchain: 'compile version go1.26.8',
    sig: new Uint8Array(64)
  })
  // as a peer's message arrives: packed and unpacked by the channel's msgpack settings
  const packr = new Packr({ useRecords: false, mapsAsObjects: true, moreTypes: false })
  const received = (msg: Record<string, unknown>): unknown => packr.unpack(packr.pack(msg))
  const found = (entries: unknown[]): unknown => received({ type: 'found', id: 3, entries })
  const refused = (value: unknown, field: string): void => {
    assert.throws(() => validatePeerCacheMessage(value, 'peerX'), (err: unknown) => errorCode(err) === 'GRID_ERR_MESSAGE_INVALID' && (err as Error).message.includes(field))
  }

  it('takes claims with and without their bodies, and nulls, in a lookup reply', () => {
    const small = { ...claim(5), body: new Uint8Array([1, 2, 3, 4, 5]) }
    const msg = validatePeerCacheMessage(found([claim(100_000), small, null, { ...claim(0), body: new Uint8Array(0) }]), 'peerX')
    assert.equal(msg.type, 'found')
    const entries = (msg as { entries: Array<{ body?: Uint8Array } | null> }).entries
    assert.equal(entries[0]?.body, undefined)
    assert.deepEqual([...(entries[1]?.body ?? [])], [1, 2, 3, 4, 5])
    assert.equal(entries[2], null)
    assert.equal(entries[3]?.body?.length, 0)
  })

  it('refuses an inline body that is not the claimed size, over the inline limit, or over the reply\'s budget', () => {
    refused(found([{ ...claim(5), body: new Uint8Array(4) }]), 'entries')
    refused(found([{ ...claim(INLINE_BODY_BYTES + 1), body: new Uint8Array(INLINE_BODY_BYTES + 1) }]), 'entries')
    refused(found([{ ...claim(5), body: 'bytes' }]), 'entries')
    const full = Array.from({ length: INLINE_BUDGET_BYTES / INLINE_BODY_BYTES }, (_, i) => ({ ...claim(INLINE_BODY_BYTES, i), body: new Uint8Array(INLINE_BODY_BYTES) }))
    assert.equal(validatePeerCacheMessage(found(full), 'peerX').type, 'found', 'a reply at the budget')
    refused(found([...full, { ...claim(1, 200), body: new Uint8Array(1) }]), 'entries')
  })

  it('takes a claim\'s age (ms since its put, by the answering clock) and dates it by this clock; refuses a bad one', async () => {
    const { foundTime } = await import('@grid/protocol')
    const now = 1_800_000_000_000
    const msg = validatePeerCacheMessage(found([{ ...claim(5), time: now + 7_200_000, age: 60_000 }]), 'peerX') as { entries: Array<Parameters<typeof foundTime>[0]> }
    assert.equal(foundTime(msg.entries[0] as Parameters<typeof foundTime>[0], now), now - 60_000, 'the age, not a time two hours ahead')
    assert.equal(foundTime({ ...claim(5), time: now + 7_200_000 } as unknown as Parameters<typeof foundTime>[0], now), now, 'no age: never later than now')
    assert.equal(foundTime({ ...claim(5), time: now - 5 } as unknown as Parameters<typeof foundTime>[0], now), now - 5)
    refused(found([{ ...claim(5), age: -1 }]), 'entries')
    refused(found([{ ...claim(5), age: 'old' }]), 'entries')
  })

  it('refuses lookups of other than 32-byte keys or over the batch limit', () => {
    assert.equal(validatePeerCacheMessage(received({ type: 'lookup', id: 1, keys: [new Uint8Array(32)] }), 'peerX').type, 'lookup')
    refused(received({ type: 'lookup', id: 1, keys: [new Uint8Array(31)] }), 'keys')
    refused(received({ type: 'lookup', id: 1, keys: Array.from({ length: MAX_LOOKUP_KEYS + 1 }, () => new Uint8Array(32)) }), 'keys')
  })
})
