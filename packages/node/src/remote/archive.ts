/**
 * Go package archives (`!<arch>\n`, Unix ar format): a dependency needs only its export data,
 * the `__.PKGDEF` member (~5 % of the bytes; shared/DESIGN.md §3). `exportDataOnly` returns an
 * archive holding just that member, which the compiler reads like the full one.
 */
const MAGIC = '!<arch>\n'
const HEADER = 60

export function exportDataOnly (archive: Buffer): Buffer | undefined {
  if (archive.length < MAGIC.length || archive.toString('latin1', 0, MAGIC.length) !== MAGIC) return undefined
  let off = MAGIC.length
  while (off + HEADER <= archive.length) {
    const name = archive.toString('latin1', off, off + 16).trimEnd()
    const size = Number(archive.toString('latin1', off + 48, off + 58).trim())
    if (!Number.isSafeInteger(size) || size < 0 || off + HEADER + size > archive.length) return undefined
    if (name === '__.PKGDEF' || name === '__.PKGDEF/') {
      const end = off + HEADER + size
      const member = archive.subarray(off, end)
      return Buffer.concat([Buffer.from(MAGIC, 'latin1'), member, size % 2 === 1 ? Buffer.from('\n') : Buffer.alloc(0)])
    }
    off += HEADER + size + (size % 2)
  }
  return undefined
}

/** A compile output must at least be an archive with export data and a Go object. */
export function isGoArchive (archive: Buffer): boolean {
  if (archive.length < MAGIC.length || archive.toString('latin1', 0, MAGIC.length) !== MAGIC) return false
  let off = MAGIC.length
  const names: string[] = []
  while (off + HEADER <= archive.length) {
    const size = Number(archive.toString('latin1', off + 48, off + 58).trim())
    if (!Number.isSafeInteger(size) || size < 0 || off + HEADER + size > archive.length) return false
    names.push(archive.toString('latin1', off, off + 16).trimEnd())
    off += HEADER + size + (size % 2)
  }
  return off === archive.length && names[0] === '__.PKGDEF' && names.includes('_go_.o')
}
