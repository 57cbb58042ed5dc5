// The task key: invariant to the requester's own paths ($WORK, checkout, GOCACHE), sensitive to
// everything that changes a compile's output; and the config parsers it shares with the worker.
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { describe, it } from 'node:test'
import {
  errorCode, formatImportcfg, lineDirectiveNames, parseEmbedcfg, parseImportcfg, recordedPath, taskKey, taskKeyLines, taskOfferKey,
  validateTask, TASK_VERSION, type CompileTask, type TaskFile
} from '@grid/protocol'

const GOROOT = '/usr/local/go'
const sha = (s: string): string => createHash('sha256').update(s).digest('hex')

interface Layout { task: CompileTask, contents: Map<string, string> }

/**
 * One requester's compile of example.com/m as cmd/go -trimpath hands it over: sources in the
 * checkout, a cgo-generated one in $WORK/b001, configs in $WORK/b001, export data in GOCACHE.
 */
function layout (at: { work: string, checkout: string, gocache: string }): Layout {
  const contents = new Map<string, string>()
  const files: TaskFile[] = []
  const add = (path: string, content: string): string => {
    contents.set(sha(content), content)
    files.push({ path, sha256: sha(content), size: Buffer.byteLength(content) })
    return path
  }
  const b001 = `${at.work}/b001`
  const sources = [
    add(`${at.checkout}/a.go`, 'package m\n\nimport "example.com/dep"\n\nvar X = dep.Y\n'),
    // cgo output: same bytes for every requester when the //line names a GOROOT file
    add(`${b001}/_cgo_gotypes.go`, 'package m\n\n//line /usr/local/go/src/runtime/cgo/cgo.go:1:1\nvar _ = 0\n')
  ]
  const importcfg = add(`${b001}/importcfg`, `# import config\npackagefile example.com/dep=${at.gocache}/aa/aa01-d\npackagefile fmt=${at.gocache}/bb/bb02-d\nimportmap old/dep=example.com/dep\n`)
  add(`${at.gocache}/aa/aa01-d`, '!<arch>\n__.PKGDEF dep export data')
  add(`${at.gocache}/bb/bb02-d`, '!<arch>\n__.PKGDEF fmt export data')
  const embedcfg = add(`${b001}/embedcfg`, JSON.stringify({ Patterns: { 'static/*': ['static/a.txt'] }, Files: { 'static/a.txt': `${at.checkout}/static/a.txt` } }))
  add(`${at.checkout}/static/a.txt`, 'hello\n')
  const symabis = add(`${b001}/symabis`, 'def example.com/m.f ABI0\n')
  const task: CompileTask = {
    v: TASK_VERSION,
    compiler: 'compile version go1.26.8',
    goroot: GOROOT,
    env: { GOOS: 'linux', GOARCH: 'amd64' },
    flags: ['-p=example.com/m', '-lang=go1.24', '-buildid=abc/abc', '-complete', '-nolocalimports', '-pack'],
    trimpath: `${at.checkout}=>example.com/m;${b001}=>`,
    inputFlags: { '-importcfg': importcfg, '-embedcfg': embedcfg, '-symabis': symabis },
    sources,
    files,
    asmhdr: true,
    importPath: 'example.com/m'
  }
  validateTask(task)
  return { task, contents }
}

const alice = (): Layout => layout({ work: '/tmp/go-build111', checkout: '/home/alice/src/m', gocache: '/home/alice/.cache/go-build' })
const bob = (): Layout => layout({ work: '/var/tmp/go-build999', checkout: '/srv/ci/checkouts/7/m', gocache: '/srv/ci/gocache' })

const keyOf = (l: Layout): string => taskKey(l.task, f => l.contents.get(f.sha256))

/** `l` with the file at `path` holding `content` instead. */
function withContent (l: Layout, path: string, content: string): Layout {
  const contents = new Map(l.contents).set(sha(content), content)
  const files = l.task.files.map(f => (f.path === path ? { path, sha256: sha(content), size: Buffer.byteLength(content) } : f))
  return { task: { ...l.task, files }, contents }
}
const contentAt = (l: Layout, path: string): string => l.contents.get((l.task.files.find(f => f.path === path) as TaskFile).sha256) as string

describe('task key', () => {
  it('records paths as the compiler does: first rule wins, whole elements, $GOROOT, empty replacement', () => {
    const rules = '/src/m=>example.com/m;/src=>other;/tmp/w/b001=>'
    assert.deepEqual(recordedPath('/src/m/a.go', rules, GOROOT), { path: 'example.com/m/a.go', rewritten: true })
    assert.deepEqual(recordedPath('/src/mm/a.go', rules, GOROOT), { path: 'other/mm/a.go', rewritten: true })
    assert.deepEqual(recordedPath('/tmp/w/b001/x.cgo1.go', rules, GOROOT), { path: 'x.cgo1.go', rewritten: true })
    assert.deepEqual(recordedPath('/tmp/w/b0012/x.go', rules, GOROOT), { path: '/tmp/w/b0012/x.go', rewritten: false })
    assert.deepEqual(recordedPath('/usr/local/go/src/fmt/print.go', rules, GOROOT), { path: '$GOROOT/src/fmt/print.go', rewritten: true })
    assert.deepEqual(recordedPath('/usr/local/gofer/a.go', '', GOROOT), { path: '/usr/local/gofer/a.go', rewritten: false })
    // as cmd/internal/objabi: ASCII case and \ are ignored, a whole-path match takes the replacement
    assert.equal(recordedPath('/SRC/M/a.go', rules, GOROOT).path, 'example.com/m/a.go')
    assert.equal(recordedPath('/src/m', rules, GOROOT).path, 'example.com/m')
    assert.equal(recordedPath('/tmp/w/b001', rules, GOROOT).path, '??')
    assert.equal(recordedPath('/x/a.go', '=>evil;/x', GOROOT).path, 'a.go')
  })

  it('is the same for two requesters whose $WORK, checkout and GOCACHE differ', () => {
    const a = alice()
    const b = bob()
    assert.notDeepEqual(a.task.files.map(f => f.path), b.task.files.map(f => f.path))
    assert.deepEqual(taskKeyLines(a.task, f => a.contents.get(f.sha256)), taskKeyLines(b.task, f => b.contents.get(f.sha256)))
    assert.equal(keyOf(a), keyOf(b))
    assert.equal(taskOfferKey(a.task), taskOfferKey(b.task))
  })

  it('is the same whatever backend threads (-c) each requester\'s go asked for', () => {
    const a = alice()
    const withC = (c: string): Layout => ({ ...a, task: { ...a.task, flags: [...a.task.flags, c] } })
    assert.equal(keyOf(withC('-c=4')), keyOf(withC('-c=2')))
    assert.equal(keyOf(withC('-c=4')), keyOf(a))
  })

  it('pins its lines and hash (a change here changes every key: bump TASK_KEY_VERSION)', () => {
    const a = alice()
    assert.deepEqual(taskKeyLines(a.task, f => a.contents.get(f.sha256)), [
      'key "grid-task-key/2"',
      'compiler "compile version go1.26.8"',
      'env "GOARCH" "amd64"',
      'env "GOOS" "linux"',
      'flag "-p=example.com/m"',
      'flag "-lang=go1.24"',
      'flag "-buildid=abc/abc"',
      'flag "-complete"',
      'flag "-nolocalimports"',
      'flag "-pack"',
      'asmhdr yes',
      `source "example.com/m/a.go" ${sha(contentAt(a, '/home/alice/src/m/a.go'))}`,
      `source "_cgo_gotypes.go" ${sha(contentAt(a, '/tmp/go-build111/b001/_cgo_gotypes.go'))}`,
      'input "-embedcfg"',
      'input "-importcfg"',
      `input "-symabis" ${sha('def example.com/m.f ABI0\n')}`,
      'importmap "old/dep" "example.com/dep"',
      `packagefile "example.com/dep" ${sha('!<arch>\n__.PKGDEF dep export data')}`,
      `packagefile "fmt" ${sha('!<arch>\n__.PKGDEF fmt export data')}`,
      'embed pattern "static/*" ["static/a.txt"]',
      `embed file "static/a.txt" ${sha('hello\n')}`,
      'line 1 "$GOROOT/src/runtime/cgo/cgo.go:1" rewritten',
      'line 1 "$GOROOT/src/runtime/cgo/cgo.go" rewritten'
    ])
    // the key is the sha256 of those lines, each ended by \n
    assert.equal(keyOf(a), sha(taskKeyLines(a.task, f => a.contents.get(f.sha256)).map(l => l + '\n').join('')))
    assert.equal(keyOf(a), '6c69a6862a4082b520b5b13255e6cd16b04392083d75cb5556f1d164926602d6')
  })

  it('changes with every influence on the output', () => {
    const base = keyOf(alice())
    const a = alice()
    const src = '/home/alice/src/m/a.go'
    const cases: Array<[string, Layout]> = [
      ['a source byte', withContent(a, src, contentAt(a, src).replace('X', 'Z'))],
      ['dependency export data', withContent(a, '/home/alice/.cache/go-build/aa/aa01-d', '!<arch>\n__.PKGDEF dep export data, v2')],
      ['an embedded file', withContent(a, '/home/alice/src/m/static/a.txt', 'hello!\n')],
      ['symabis', withContent(a, '/tmp/go-build111/b001/symabis', 'def example.com/m.g ABI0\n')],
      ['an importmap', withContent(a, '/tmp/go-build111/b001/importcfg', contentAt(a, '/tmp/go-build111/b001/importcfg').replace('old/dep', 'older/dep'))],
      ['which package a file is', withContent(a, '/tmp/go-build111/b001/importcfg', contentAt(a, '/tmp/go-build111/b001/importcfg').replace('fmt=', 'fmt2='))],
      ['an embed pattern', withContent(a, '/tmp/go-build111/b001/embedcfg', contentAt(a, '/tmp/go-build111/b001/embedcfg').replace('static/*', 'static/a*'))],
      ['a flag value', { ...a, task: { ...a.task, flags: a.task.flags.map(f => f.replace('-lang=go1.24', '-lang=go1.23')) } }],
      ['the build ID', { ...a, task: { ...a.task, flags: a.task.flags.map(f => f.replace('abc/abc', 'abd/abd')) } }],
      ['an added flag', { ...a, task: { ...a.task, flags: [...a.task.flags, '-race'] } }],
      ['the order of flags', { ...a, task: { ...a.task, flags: [...a.task.flags].reverse() } }],
      ['an env var', { ...a, task: { ...a.task, env: { ...a.task.env, GOAMD64: 'v3' } } }],
      ['an env value', { ...a, task: { ...a.task, env: { ...a.task.env, GOARCH: 'arm64' } } }],
      ['the compiler', { ...a, task: { ...a.task, compiler: 'compile version go1.26.9' } }],
      ['asmhdr', { ...a, task: { ...a.task, asmhdr: false } }],
      ['the order of sources', { ...a, task: { ...a.task, sources: [...a.task.sources].reverse() } }],
      ['the recorded import path', { ...a, task: { ...a.task, trimpath: a.task.trimpath.replace('=>example.com/m', '=>example.com/n') } }],
      ['no -trimpath for the checkout', { ...a, task: { ...a.task, trimpath: '/tmp/go-build111/b001=>' } }],
      ['another GOROOT (a //line name no longer under it)', { ...a, task: { ...a.task, goroot: '/opt/go' } }],
      ['no symabis', { ...a, task: { ...a.task, inputFlags: { '-importcfg': a.task.inputFlags['-importcfg'] as string, '-embedcfg': a.task.inputFlags['-embedcfg'] as string } } }]
    ]
    const seen = new Map<string, string>([[base, 'the base task']])
    for (const [what, changed] of cases) {
      const key = keyOf(changed)
      assert.ok(!seen.has(key), `${what}: same key as ${seen.get(key)}`)
      seen.set(key, what)
    }
  })

  it('keys what line directives record: equal source bytes under other rules are other compiles', () => {
    // cgo's //line names the requester's checkout: bytes alike only for the same checkout path
    const cgo = 'package m\n//line /home/alice/src/m/x.go:1:1\nvar _ = 0\n'
    const a = withContent(alice(), '/tmp/go-build111/b001/_cgo_gotypes.go', cgo)
    const b = withContent(bob(), '/var/tmp/go-build999/b001/_cgo_gotypes.go', cgo)
    // bob's rules do not rewrite alice's path: his compile records it as is
    assert.notEqual(keyOf(a), keyOf(b))
    assert.equal(taskOfferKey(a.task), taskOfferKey(b.task))
    assert.deepEqual(lineDirectiveNames('//line a.go:10\n/*line b:c.go:3:4*/ x //line d.go\n"//line e.go:1"'), ['a.go', 'b:c.go:3', 'b:c.go', 'e.go'])
  })

  it('refuses configs the compiler would reject or that name files the task lacks', () => {
    const a = alice()
    const cfg = '/tmp/go-build111/b001/importcfg'
    const refused = (l: Layout, re: RegExp): void => {
      assert.throws(() => keyOf(l), (err: unknown) => errorCode(err) === 'GRID_ERR_TASK_REFUSED' && re.test((err as Error).message))
    }
    refused(withContent(a, cfg, 'packagefile fmt=/etc/passwd\n'), /importcfg names \/etc\/passwd/)
    refused(withContent(a, cfg, 'modinfo x\n'), /unknown directive "modinfo"/)
    refused(withContent(a, cfg, 'packagefile fmt\n'), /invalid packagefile/)
    refused(withContent(a, '/tmp/go-build111/b001/embedcfg', '{"Patterns":{},"Files":{},"files":{"a":"/etc/passwd"}}'), /exactly the keys/)
  })

  it('refuses a task whose key would take unbounded work: overlapping line directives, paths against many rules', () => {
    const refused = (l: Layout, re: RegExp): void => {
      assert.throws(() => keyOf(l), (err: unknown) => errorCode(err) === 'GRID_ERR_TASK_REFUSED' && re.test((err as Error).message))
    }
    // every `//line ` names the rest of the line up to its last colon: names of ~n² bytes in all
    const a = alice()
    const hostile = 'package m\n' + '//line '.repeat(60_000) + ':1\n'
    refused(withContent(a, '/home/alice/src/m/a.go', hostile), /line directives name over 100000 files or 4194304 bytes/)
    assert.equal(lineDirectiveNames(hostile, { names: 1000, bytes: Infinity }), undefined)
    assert.equal(lineDirectiveNames('//line a.go:1\n//line b.go:1\n', { names: 2, bytes: 8 })?.length, 2, 'within the budget')
    assert.equal(lineDirectiveNames('//line a.go:1\n//line b.go:1\n', { names: 2, bytes: 7 }), undefined, '8 bytes of names against 7')
    // a legitimate cgo file keeps its directives within it
    const cgo = 'package m\n' + Array.from({ length: 5000 }, (_, i) => `//line /home/alice/src/m/x.go:${i}:1\nvar _ = ${i}\n`).join('')
    assert.match(keyOf(withContent(a, '/tmp/go-build111/b001/_cgo_gotypes.go', cgo)), /^[0-9a-f]{64}$/)
    // thousands of rules sharing a long prefix with every recorded path
    const long = '/home/alice/src/m'
    const rules = Array.from({ length: 3000 }, (_, i) => `${long}/${'d'.repeat(2)}${i}=>x`).join(';')
    const many = '//line /home/alice/src/m/dd.go:1\n'.repeat(2000)
    refused(withContent({ ...a, task: { ...a.task, trimpath: `${rules};${a.task.trimpath}`.slice(0, 64 * 1024) } }, '/home/alice/src/m/a.go', `package m\n${many}`), /trimpath rules is over \d+ steps/)
  })
})

describe('configs as the compiler reads them', () => {
  it('trims Go whitespace, not JavaScript whitespace, so no line hides from the worker', () => {
    // U+0085 is space to Go (the compiler would read this line), not to String.prototype.trim
    const cfg = parseImportcfg('\u0085packagefile fmt=/w/fmt.a\n#comment\n  importmap a =b=c\npackagefile fmt=/w/fmt2.a')
    assert.deepEqual([...cfg.packagefile], [['fmt', '/w/fmt2.a']])
    assert.deepEqual([...cfg.importmap], [['a ', 'b=c']])
    assert.equal(formatImportcfg(cfg, p => `/S${p}`), '# import config\nimportmap a =b=c\npackagefile fmt=/S/w/fmt2.a\n')
    assert.deepEqual(parseImportcfg(formatImportcfg(cfg)), cfg)
  })

  it('reads an embedcfg with exactly Patterns and Files', () => {
    const cfg = parseEmbedcfg('{"Patterns":{"*.txt":["a.txt"]},"Files":{"a.txt":"/m/a.txt"}}')
    assert.deepEqual([...cfg.files], [['a.txt', '/m/a.txt']])
    for (const bad of ['[]', '{"Patterns":{}}', '{"Patterns":{"x":[1]},"Files":{}}', '{"Patterns":{},"Files":{"a":null}}', 'nope']) {
      assert.throws(() => parseEmbedcfg(bad), (err: unknown) => errorCode(err) === 'GRID_ERR_TASK_REFUSED', bad)
    }
  })
})
