#!/usr/bin/env node
/**
 * Generates a Go module of many small packages (not a test, not a benchmark): what the cold
 * build of `std` hides, grid's cost per action, shows in a module of small compiles.
 *
 *   node scripts/gen-module.js DIR [--layers 20] [--width 40] [--files 20] [--embeds 20]
 *
 * LAYERS × WIDTH packages `lN/pM`, each importing up to three of the layer below; one package
 * `big` of FILES files, one `emb` embedding EMBEDS files, and a command `cmd/app` importing the
 * top layer, `big` and `emb`. The defaults make the 803 packages of docs/benchmarks/cold.md
 * ("Many small packages"), measured with `node scripts/bench.js --target ./...` run in DIR.
 * Node builtins only; DIR must not exist yet.
 */
import { existsSync, mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { parseArgs } from 'node:util'

const USAGE = 'usage: node scripts/gen-module.js DIR [--layers N] [--width N] [--files N] [--embeds N]'

function count (value, name) {
  const n = Number(value)
  if (!Number.isInteger(n) || n < 1) throw new Error(`--${name} must be a positive integer, got ${value}`)
  return n
}

function options () {
  const { values, positionals } = parseArgs({
    args: process.argv.slice(2),
    allowPositionals: true,
    options: { layers: { type: 'string', default: '20' }, width: { type: 'string', default: '40' }, files: { type: 'string', default: '20' }, embeds: { type: 'string', default: '20' } }
  })
  if (positionals.length !== 1) throw new Error('one DIR, the module\'s directory')
  const dir = positionals[0]
  if (existsSync(dir)) throw new Error(`${dir} exists already: name a new directory`)
  return { dir, layers: count(values.layers, 'layers'), width: count(values.width, 'width'), files: count(values.files, 'files'), embeds: count(values.embeds, 'embeds') }
}

function write (path, text) {
  mkdirSync(join(path, '..'), { recursive: true })
  writeFileSync(path, text)
}

function generate ({ dir, layers, width, files, embeds }) {
  write(join(dir, 'go.mod'), 'module example.com/big\n\ngo 1.22\n')
  for (let l = 0; l < layers; l++) {
    for (let w = 0; w < width; w++) {
      const deps = l === 0 ? [] : [...new Set([w, (w + 1) % width, (w * 7 + 3) % width])].map(x => `l${l - 1}/p${x}`)
      const imports = deps.map((d, i) => `import d${i} "example.com/big/${d}"\n`).join('')
      const calls = deps.map((_, i) => `\ts += d${i}.F(x + ${i})\n`).join('')
      write(join(dir, `l${l}`, `p${w}`, 'p.go'), `package p${w}\n\n${imports}\nfunc F(x int) int {\n\ts := x * ${l * width + w}\n${calls}\treturn s\n}\n\n` +
        `type T${w} struct {\n\tA, B int\n\tC    string\n}\n\nfunc (t T${w}) M() string { return t.C + "${l}/${w}" }\n`)
    }
  }
  for (let i = 0; i < files; i++) write(join(dir, 'big', `f${i}.go`), `package big\n\nfunc G${i}(x int) int { return x + ${i} }\n\nvar V${i} = G${i}(${i})\n`)
  for (let i = 0; i < embeds; i++) write(join(dir, 'emb', 'data', `d${i % 50}`, `x${i}.txt`), `data ${i}\n`.repeat(50))
  write(join(dir, 'emb', 'e.go'), 'package emb\n\nimport "embed"\n\n//go:embed data\nvar FS embed.FS\n')
  const top = Array.from({ length: width }, (_, w) => `\tt${w} "example.com/big/l${layers - 1}/p${w}"\n`).join('')
  const sum = Array.from({ length: width }, (_, w) => ` + t${w}.F(1)`).join('')
  write(join(dir, 'cmd', 'app', 'main.go'), `package main\n\nimport (\n\t"fmt"\n\n\t"example.com/big/big"\n\t"example.com/big/emb"\n${top})\n\n` +
    `func main() {\n\te, _ := emb.FS.ReadDir("data")\n\tfmt.Println(len(e), big.V0${sum})\n}\n`)
  return layers * width + 3
}

try {
  const o = options()
  process.stderr.write(`generated ${generate(o)} packages in ${o.dir}\n`)
} catch (err) {
  process.stderr.write(`${err.message}\n${USAGE}\n`)
  process.exit(2)
}
