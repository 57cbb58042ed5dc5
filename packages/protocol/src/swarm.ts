/**
 * Swarm keys: the shared secret that makes a set of grid nodes one mesh. The file format is the
 * one IPFS uses for private networks, so tools that know it can read it:
 *
 *   /key/swarm/psk/1.0.0/
 *   /base16/
 *   <64 hex digits>
 *
 * The key never travels. Nodes mix a hash of it into the Noise handshake (its prologue), so two
 * nodes complete a handshake only if both hold the same key (or both hold none).
 */
import { createHash, randomBytes } from 'node:crypto'
import { GridError } from './errors.js'

const HEADER = '/key/swarm/psk/1.0.0/'
const ENCODING = '/base16/'
export const SWARM_KEY_BYTES = 32

export function generateSwarmKey (): Uint8Array {
  return randomBytes(SWARM_KEY_BYTES)
}

export function formatSwarmKey (key: Uint8Array): string {
  return `${HEADER}\n${ENCODING}\n${Buffer.from(key).toString('hex')}\n`
}

export function parseSwarmKey (text: string, source = 'swarm key'): Uint8Array {
  const lines = text.split(/\r?\n/).map(l => l.trim()).filter(l => l !== '')
  if (lines.length !== 3 || lines[0] !== HEADER || lines[1] !== ENCODING || !/^[0-9a-fA-F]{64}$/.test(lines[2] as string)) {
    throw new GridError('GRID_ERR_SWARM_KEY', `${source} is not a swarm key file (expected ${HEADER}, ${ENCODING} and 64 hex digits)`, {
      hint: 'create one with `grid init`, then copy that file to every member'
    })
  }
  return Buffer.from(lines[2] as string, 'hex')
}

/** The Noise prologue of a swarm: members share it, outsiders cannot compute it. */
export function swarmPrologue (key: Uint8Array | undefined): Uint8Array {
  const hash = createHash('sha256')
  if (key === undefined) hash.update('grid/open-mesh/v1')
  else hash.update('grid/swarm/v1\n').update(key)
  return hash.digest()
}

/** A short public name for a key (safe to log and show): first 8 bytes of a hash of it. */
export function swarmFingerprint (key: Uint8Array | undefined): string {
  if (key === undefined) return 'open'
  return createHash('sha256').update('grid/swarm-fingerprint/v1\n').update(key).digest('hex').slice(0, 16)
}
