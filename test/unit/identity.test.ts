// The node's identity: its key in the cache dir, and the PeerId kept beside it.
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { readFile, rename, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { loadIdentity, signer, verifier } from '@grid/node/server'
import { errorCode, type GridError } from '@grid/protocol'
import { tempDir } from '../helpers/index.js'

describe('identity', () => {
  it('keeps its PeerId across loads, read from peer.id without loading the key', async (t) => {
    const dir = await tempDir(t)
    const first = await loadIdentity(dir)
    assert.match(first.peerId, /^12D3KooW/)
    const idFile = await readFile(join(dir, 'peer.id'), 'utf8')
    assert.ok(idFile.includes(first.peerId))
    const second = await loadIdentity(dir)
    assert.equal(second.peerId, first.peerId)
    const key = await second.privateKey()
    assert.equal(key.type, 'Ed25519')
  })

  it('ignores a peer.id written for another key, and rewrites it', async (t) => {
    const dir = await tempDir(t)
    const { peerId } = await loadIdentity(dir)
    await writeFile(join(dir, 'peer.id'), `${'0'.repeat(64)} 12D3KooWsomeoneelse\n`)
    assert.equal((await loadIdentity(dir)).peerId, peerId)
    assert.ok((await readFile(join(dir, 'peer.id'), 'utf8')).includes(peerId))
  })

  it('a peer.key that is not a key is GRID_ERR_CACHE_OPEN naming the file, at once or when the mesh loads it; moved aside, a new key is made', async (t) => {
    const dir = await tempDir(t)
    const keyFile = join(dir, 'peer.key')
    const garbage = Buffer.from('garbage\n')
    await writeFile(keyFile, garbage)
    const refused = (err: unknown): boolean => {
      const e = err as GridError
      assert.equal(e.code, 'GRID_ERR_CACHE_OPEN')
      assert.ok(e.message.includes(`the node's key ${keyFile} is not a key`), e.message)
      assert.ok(e.hint?.includes(`mv ${keyFile} ${keyFile}.bad`), e.hint)
      return true
    }
    // no peer.id: the key is decoded as the node starts
    await assert.rejects(loadIdentity(dir), refused)
    // a peer.id that names this file: the PeerId is read from it, the key decoded for the mesh
    await writeFile(join(dir, 'peer.id'), `${createHash('sha256').update(garbage).digest('hex')} 12D3KooWsomeone\n`)
    const lazy = await loadIdentity(dir)
    await assert.rejects(lazy.privateKey(), refused)
    // what the hint says to do
    await rename(keyFile, `${keyFile}.bad`)
    const fresh = await loadIdentity(dir)
    assert.match(fresh.peerId, /^12D3KooW/)
    assert.equal((await fresh.privateKey()).type, 'Ed25519')
  })

  it('refuses the key when peer.id names the key file but another PeerId', async (t) => {
    const dir = await tempDir(t)
    await loadIdentity(dir)
    const [sum] = (await readFile(join(dir, 'peer.id'), 'utf8')).split(' ')
    await writeFile(join(dir, 'peer.id'), `${sum} 12D3KooWsomeoneelse\n`)
    const forged = await loadIdentity(dir)
    assert.equal(forged.peerId, '12D3KooWsomeoneelse')
    await assert.rejects(forged.privateKey(), (err: unknown) => errorCode(err) === 'GRID_ERR_MESH_START')
  })

  it('signs and checks claims with the key imported once: the same signatures as libp2p, and the same verdicts', async (t) => {
    const key = await (await loadIdentity(await tempDir(t))).privateKey()
    const other = await generateKeyPair('Ed25519')
    const data = new TextEncoder().encode('action → output, toolchain')
    const sig = await signer(key)(data)
    assert.deepEqual(Buffer.from(sig), Buffer.from(await key.sign(data)), 'Ed25519 signatures are deterministic')
    const check = verifier(key.publicKey)
    assert.equal(await check(data, sig), true)
    const flipped = Uint8Array.from(sig)
    flipped[10] = (flipped[10] as number) ^ 1
    assert.equal(await check(data, flipped), false)
    assert.equal(await key.publicKey.verify(data, flipped), false)
    assert.equal(await check(data.subarray(1), sig), false, 'other bytes')
    assert.equal(await check(data, sig.subarray(0, 63)), false, 'a short signature')
    assert.equal(await check(data, await signer(other)(data)), false, 'another key')
    // a key of another type goes through libp2p
    const secp = await generateKeyPair('secp256k1')
    const secpSig = await signer(secp)(data)
    assert.equal(await verifier(secp.publicKey)(data, secpSig), true)
    assert.equal(await verifier(secp.publicKey)(data, sig), false)
  })
})
