/** Small files the node keeps (its id, its peers, its compile history), written whole or not at all; directories made so that it ends. */
import { randomBytes } from 'node:crypto'
import { mkdir, rename, stat, unlink, writeFile } from 'node:fs/promises'
import { dirname } from 'node:path'

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

/**
 * `mkdir -p` that always ends. Node's `mkdir(path, { recursive: true })` never settles (it spins
 * a core) when the file system answers ENOENT for a child of a directory that exists, as /proc
 * and /sys do: a --cache, --control or --swarm-key path under them hung grid. Here an ENOENT once
 * the parent exists is the answer. The paths a user gives go through this; the ones grid makes
 * inside its cache dir, a real directory by then, need not.
 */
export async function makeDirs (path: string, mode?: number): Promise<void> {
  const options = mode === undefined ? {} : { mode }
  try {
    await mkdir(path, options)
    return
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    if (code === 'EEXIST') { await mustBeDir(path, err); return }
    const parent = dirname(path)
    if (code !== 'ENOENT' || parent === path) throw err
    await makeDirs(parent, mode)
  }
  try {
    await mkdir(path, options)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
    await mustBeDir(path, err) // made by another process meanwhile
  }
}

/** `mkdir -p` leaves a directory that is there as it is; anything else there is its EEXIST. */
async function mustBeDir (path: string, err: unknown): Promise<void> {
  if (!(await stat(path).catch(() => undefined))?.isDirectory()) throw err
}
