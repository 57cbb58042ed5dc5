/** Small files the node keeps (its id, its peers, its compile history), written whole or not at all. */
import { randomBytes } from 'node:crypto'
import { rename, unlink, writeFile } from 'node:fs/promises'

/**
 * Writes `data` to a temp file beside `path`, then renames it into place: a reader sees the old
 * file or the new one, never half of one. If either step fails (a full disk), the temp file is
 * removed and the error thrown; the old file stays as it was.
 */
export async function writeFileAtomic (path: string, data: string | Uint8Array): Promise<void> {
  const tmp = `${path}.${randomBytes(4).toString('hex')}.tmp`
  try {
    await writeFile(tmp, data)
    await rename(tmp, path)
  } catch (err) {
    await unlink(tmp).catch(() => {})
    throw err
  }
}
