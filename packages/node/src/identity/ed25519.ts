/**
 * Ed25519 signatures with the key imported once. libp2p's own `sign` and `verify` import the
 * key afresh for every call (a JWK parse each time); a node that serves or checks the claims of
 * a whole build (docs/cache.md, "Shared cache") makes about a thousand of them. Same keys, same
 * deterministic signatures; keys of another type go through libp2p as before.
 */
import { createPrivateKey, createPublicKey, sign, verify, type KeyObject } from 'node:crypto'
import type { PrivateKey, PublicKey } from '@libp2p/interface'

export type Sign = (data: Uint8Array) => Promise<Uint8Array>
export type Verify = (data: Uint8Array, sig: Uint8Array) => Promise<boolean>

const b64 = (bytes: Uint8Array): string => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64url')

export function signer (key: PrivateKey): Sign {
  if (key.type !== 'Ed25519' || key.raw.byteLength !== 64) return async data => await key.sign(data)
  // libp2p's raw Ed25519 private key is the 32-byte seed followed by the 32-byte public key
  const obj: KeyObject = createPrivateKey({ format: 'jwk', key: { kty: 'OKP', crv: 'Ed25519', d: b64(key.raw.subarray(0, 32)), x: b64(key.raw.subarray(32)) } })
  return async data => sign(null, data, obj)
}

export function verifier (key: PublicKey): Verify {
  if (key.type !== 'Ed25519' || key.raw.byteLength !== 32) return async (data, sig) => await key.verify(data, sig)
  const obj: KeyObject = createPublicKey({ format: 'jwk', key: { kty: 'OKP', crv: 'Ed25519', x: b64(key.raw) } })
  return async (data, sig) => sig.byteLength === 64 && verify(null, data, obj, sig)
}
