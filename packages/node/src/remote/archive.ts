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

/** The members of an archive, by name, or undefined if it is not a well-formed one. */
function members (archive: Buffer): Array<{ name: string, data: Buffer }> | undefined {
  if (archive.length < MAGIC.length || archive.toString('latin1', 0, MAGIC.length) !== MAGIC) return undefined
  let off = MAGIC.length
  const out: Array<{ name: string, data: Buffer }> = []
  while (off + HEADER <= archive.length) {
    const size = Number(archive.toString('latin1', off + 48, off + 58).trim())
    if (!Number.isSafeInteger(size) || size < 0 || off + HEADER + size > archive.length) return undefined
    out.push({ name: archive.toString('latin1', off, off + 16).trimEnd(), data: archive.subarray(off + HEADER, off + HEADER + size) })
    off += HEADER + size + (size % 2)
  }
  return off === archive.length ? out : undefined
}

const CGO_SECTION = '\n$$  // cgo'

/**
 * Why a compile output a peer returned is not what its task can produce, or undefined. It must
 * be the archive the compiler writes: `__.PKGDEF` then `_go_.o`, nothing else, each headed by
 * the build ID the task gave; and its object's cgo section (the `//go:cgo_*` directives, which
 * the linker acts on: `cgo_ldflag` goes to the host linker's command line) may hold only
 * directives the task's own sources carry (`pragmas`, their `//go:cgo_` lines). A directive
 * a peer made up would otherwise run commands here when the package is linked.
 */
export function peerArchiveProblem (archive: Buffer, buildId: string | undefined, pragmas: readonly string[]): string | undefined {
  const list = members(archive)
  if (list === undefined) return 'not an archive'
  if (list.length !== 2 || list[0]?.name !== '__.PKGDEF' || list[1]?.name !== '_go_.o') return `members ${list.map(m => m.name).join(', ')}, not __.PKGDEF and _go_.o`
  for (const { name, data } of list) {
    const header = objectHeader(data)
    if (header === undefined) return `${name} has no Go object header`
    if (buildId !== undefined && !header.includes(`build id ${JSON.stringify(buildId)}`)) return `${name} was not compiled with the task's build ID`
  }
  const pkgdef = (list[0] as { data: Buffer }).data
  if (pkgdef.includes(CGO_SECTION, 0, 'latin1')) return '__.PKGDEF has a cgo section'
  const text = linkerText((list[1] as { data: Buffer }).data)
  if (text === undefined) return '_go_.o has no end to its text part'
  const at = text.indexOf(CGO_SECTION)
  if (at < 0) return undefined
  const start = text.indexOf('\n', at + 1)
  const end = text.indexOf('\n$$', start)
  let directives: unknown
  try {
    directives = JSON.parse(text.slice(start + 1, end < 0 ? undefined : end))
  } catch {
    return 'its cgo section is not JSON'
  }
  if (!Array.isArray(directives)) return 'its cgo section is not a list'
  for (const d of directives) {
    if (!Array.isArray(d) || d.length === 0 || !d.every(f => typeof f === 'string')) return 'its cgo section has a malformed directive'
    const [verb, ...args] = d as string[]
    const shown = compilerAdded(verb as string, args)
    const carried = pragmas.some(line => line.startsWith(`//go:${verb as string}`) && /\s/.test(line.charAt(5 + (verb as string).length)) && shown.every(a => line.includes(a)))
    if (!carried) return `its cgo section has a directive the task's sources do not: ${JSON.stringify(d).slice(0, 200)}`
  }
  return undefined
}

/** The ABIs cmd/compile names (cmd/internal/obj.ABI's String). */
const ABIS: ReadonlySet<string> = new Set(['ABI0', 'ABIInternal'])

/**
 * A directive's arguments as its source line has them. cmd/compile expands the export directive
 * of a Go function, `//go:cgo_export_static local [remote]` (and `_dynamic`), to `local remote
 * ABI`, remote defaulting to local (cmd/compile/internal/ssagen/abi.go, GenABIWrappers): the
 * ABI it adds is not in the line. runtime/cgo's `_cgo_panic` and every cgo `//export` are such.
 */
function compilerAdded (verb: string, args: string[]): string[] {
  if ((verb === 'cgo_export_static' || verb === 'cgo_export_dynamic') && args.length === 3 && ABIS.has(args[2] as string)) return args.slice(0, 2)
  return args
}

/** The header lines of a Go object member (`go object …` up to the blank line), or undefined. */
function objectHeader (data: Buffer): string | undefined {
  const end = data.indexOf('\n\n', 0, 'latin1')
  const head = data.toString('latin1', 0, end < 0 ? Math.min(data.length, 4096) : end + 1)
  return head.startsWith('go object ') ? head : undefined
}

/**
 * The text part of an object member that cmd/link reads for a cgo section: from after the
 * first line to the `\n!\n` that ends it outside any `$$` pair, scanned as the linker does
 * (cmd/link/internal/ld/lib.go, ldobj), so that no section can hide from this check.
 */
function linkerText (data: Buffer): string | undefined {
  const first = data.indexOf(0x0a)
  if (first < 0) return undefined
  let markers = 0
  let c1 = 0x0a
  for (let j = first + 1; j + 1 < data.length; j++) {
    const c2 = data[j] as number
    const c3 = data[j + 1] as number
    if (c1 === 0x0a) {
      if (markers % 2 === 0 && c2 === 0x21 && c3 === 0x0a) return data.toString('latin1', first, j)
      if (c2 === 0x24 && c3 === 0x24) markers++
    }
    c1 = c2
  }
  return undefined
}

/**
 * The archive with a cgo section of `directives` added to its object, as the compiler would
 * write it for sources that carry them: what a lying peer could return (tests, and the
 * worker's GRID_TEST_FAULT=worker-cgo-ldflag).
 */
export function withCgoSection (archive: Buffer, directives: string[][]): Buffer {
  const list = members(archive)
  const obj = list?.find(m => m.name === '_go_.o')
  if (list === undefined || obj === undefined) throw new Error('not a Go archive')
  const headerEnd = obj.data.indexOf('\n\n', 0, 'latin1') + 2
  const section = `\n$$\n\n$$\n\n${CGO_SECTION}\n${JSON.stringify(directives)}\n\n$$\n\n`
  const data = Buffer.concat([obj.data.subarray(0, headerEnd), Buffer.from(section, 'latin1'), obj.data.subarray(headerEnd)])
  return Buffer.concat([Buffer.from(MAGIC, 'latin1'), ...list.map(m => {
    const body = m === obj ? data : m.data
    const header = Buffer.from(`${m.name.padEnd(16)}${'0'.padEnd(12)}${'0'.padEnd(6)}${'0'.padEnd(6)}${'644'.padEnd(8)}${String(body.length).padEnd(10)}\x60\n`, 'latin1')
    return Buffer.concat([header, body, body.length % 2 === 1 ? Buffer.from('\n') : Buffer.alloc(0)])
  })])
}

/**
 * Why a go_asm.h a peer returned is not one the compiler writes, or undefined. The compiler's
 * (cmd/compile/internal/gc dumpasmhdr) holds `//` comment lines and `#define NAME VALUE` lines
 * only. cmd/go hands the file to the assembler, whose preprocessor acts on every directive in
 * it: a peer's `#include "/dev/tty"` would hold the build waiting on the terminal, and the
 * `#include` of any local file failed the build, printing that file's first line.
 */
export function asmHeaderProblem (header: Buffer): string | undefined {
  const text = header.toString('utf8')
  if (text.length > 0 && !text.endsWith('\n')) return 'its go_asm.h does not end with a line break'
  for (const line of text.slice(0, -1).split('\n')) {
    const ok = line === '' || (/^(\/\/|#define [^\s()\\]+ )[^\x00-\x1f\x7f]*$/.test(line) && !line.endsWith('\\'))
    if (!ok) return `its go_asm.h has a line the compiler does not write: ${JSON.stringify(line.slice(0, 80))}`
  }
  return undefined
}
