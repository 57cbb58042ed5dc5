/**
 * The node's identity: an Ed25519 key kept in the cache dir (mode 0600), so a node keeps its
 * PeerId across restarts. Its PeerId is the producer recorded on every cache entry it writes.
 *
 * Beside the key, `peer.id` holds its PeerId with the sha256 of the key file it was derived
 * from. A node needs its PeerId at once (the cache records it) but the key only for the mesh,
 * and libp2p's key code takes ~85 ms to load: an embedded node in a no-op `grid build` never
 * joins the mesh, so it reads the PeerId from `peer.id` and leaves the key for later. A
 * `peer.id` that does not name the key file's hash is ignored and rewritten; when the key is
 * loaded, the PeerId derived from it must be the one the node has been using.
 */
import { createHash } from 'node:crypto'
import { link, mkdir, readFile, unlink, writeFile } from 'node:fs/promises'
import { writeFileAtomic } from '../files.js'
import { join } from 'node:path'
import { GridError, errorCode } from '@grid/protocol'
import type { PrivateKey } from '@libp2p/interface'

export const KEY_FILE = 'peer.key'
export const ID_FILE = 'peer.id'

export interface Identity {
  peerId: string
  /** The key, loaded on first call (the mesh needs it; nothing else does). */
  privateKey: () => Promise<PrivateKey>
}

/**
 * The node's identity, from the key in the cache dir or a new one written there. A key that
 * cannot be read or written (a full disk, a `peer.key` that is not a file), or that is not a key
 * (whether read now, or when the mesh starts), is GRID_ERR_CACHE_OPEN, as for the rest of the
 * cache: `grid build` then runs as plain go.
 */
export async function loadIdentity (cacheDir: string): Promise<Identity> {
  try {
    return await loadOrCreate(cacheDir)
  } catch (err) {
    // a file system's refusal (errno codes), not grid's own errors nor a key that does not decode
    const code = errorCode(err)
    if (code === undefined || code.startsWith('GRID_ERR_') || !/^E[A-Z]+$/.test(code)) throw err
    throw new GridError('GRID_ERR_CACHE_OPEN', `cannot read or write the node's key ${join(cacheDir, KEY_FILE)}: ${(err as Error).message}`, {
      cause: err,
      hint: `free some space on the cache dir's disk; if ${KEY_FILE} is not a file, remove it (the node makes a new key, and so a new PeerId)`
    })
  }
}

async function loadOrCreate (cacheDir: string): Promise<Identity> {
  const keyBytes = await readFile(join(cacheDir, KEY_FILE)).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return undefined
    throw err
  })
  if (keyBytes !== undefined) {
    const [sum, peerId] = (await readFile(join(cacheDir, ID_FILE), 'utf8').catch(() => '')).trim().split(' ')
    if (peerId !== undefined && peerId !== '' && sum === sha256(keyBytes)) {
      let loaded: Promise<PrivateKey> | undefined
      return { peerId, privateKey: async () => await (loaded ??= checkedKey(cacheDir, keyBytes, peerId)) }
    }
  }
  const { privateKey, bytes } = keyBytes === undefined ? await createKey(cacheDir) : { privateKey: await decodeKey(cacheDir, keyBytes), bytes: keyBytes }
  const peerId = await peerIdOf(privateKey)
  await writeIdFile(cacheDir, bytes, peerId).catch(() => {}) // only a shortcut for next time
  return { peerId, privateKey: async () => privateKey }
}

async function checkedKey (cacheDir: string, keyBytes: Uint8Array, peerId: string): Promise<PrivateKey> {
  const privateKey = await decodeKey(cacheDir, keyBytes)
  const derived = await peerIdOf(privateKey)
  if (derived !== peerId) {
    throw new GridError('GRID_ERR_MESH_START', `${ID_FILE} names ${peerId}, but ${KEY_FILE} is the key of ${derived}`, {
      hint: `remove ${ID_FILE} from the cache dir; the node writes it again from the key`
    })
  }
  return privateKey
}

/** The key in `cacheDir`'s key file, whose `bytes` are given; one that does not decode names the file. */
async function decodeKey (cacheDir: string, bytes: Uint8Array): Promise<PrivateKey> {
  const { privateKeyFromProtobuf } = await import('@libp2p/crypto/keys')
  try {
    return privateKeyFromProtobuf(bytes)
  } catch (err) {
    const path = join(cacheDir, KEY_FILE)
    throw new GridError('GRID_ERR_CACHE_OPEN', `the node's key ${path} is not a key grid can read (${bytes.length} bytes: ${(err as Error).message})`, {
      cause: err,
      hint: `move it aside (mv ${path} ${path}.bad): the node then makes a new key, and so has a new PeerId`
    })
  }
}

async function peerIdOf (privateKey: PrivateKey): Promise<string> {
  const { peerIdFromPrivateKey } = await import('@libp2p/peer-id')
  return peerIdFromPrivateKey(privateKey).toString()
}

/** A new key, unless another process wrote one first: then that one. */
async function createKey (cacheDir: string): Promise<{ privateKey: PrivateKey, bytes: Uint8Array }> {
  const { generateKeyPair, privateKeyToProtobuf } = await import('@libp2p/crypto/keys')
  const path = join(cacheDir, KEY_FILE)
  const privateKey = await generateKeyPair('Ed25519')
  const bytes = privateKeyToProtobuf(privateKey)
  await mkdir(cacheDir, { recursive: true })
  // Written whole to a temp file, then linked into place: link never replaces an existing
  // file, so when two processes start at once both end up with the key that got there first,
  // and nobody ever reads a half-written one.
  const tmp = `${path}.${process.pid}.${Date.now()}.tmp`
  try {
    await writeFile(tmp, bytes, { mode: 0o600 })
    await link(tmp, path)
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e
    const theirs = await readFile(path)
    return { privateKey: await decodeKey(cacheDir, theirs), bytes: theirs }
  } finally {
    await unlink(tmp).catch(() => {})
  }
  return { privateKey, bytes }
}

async function writeIdFile (cacheDir: string, keyBytes: Uint8Array, peerId: string): Promise<void> {
  await writeFileAtomic(join(cacheDir, ID_FILE), `${sha256(keyBytes)} ${peerId}\n`)
}

function sha256 (bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex')
}
