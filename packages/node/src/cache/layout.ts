/**
 * The on-disk blob layout. The Go helper (packages/node/shim/cacheprog.go) writes the same
 * paths: change both together.
 */
import { join } from 'node:path'

/** `<blobDir>/<first two hex digits>/<64 hex digits>` */
export function blobPathFor (blobDir: string, outputHex: string): string {
  return join(blobDir, outputHex.slice(0, 2), outputHex)
}
