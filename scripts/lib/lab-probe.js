#!/usr/bin/env node
/**
 * Small network and CPU probes for the lab (scripts/lab, docs/lab.md). Node builtins only; run
 * inside a lab host with `scripts/lab run hN -- node scripts/lib/lab-probe.js …`. Every command
 * prints one JSON line on stdout with its result (and `{"ready":true}` first for the servers,
 * so a caller can wait for it before starting the other side). Exit 0 on success, 1 on failure
 * or timeout, 2 on bad usage.
 *
 *   udp-echo   [--port 7] [--timeout S] [--count N]     answer datagrams (ping target); exit
 *                                                       after N answers or S seconds
 *   udp-ping   --to IP[,IP…] [--port 7] [--count 5]     round trips to each echo server (one
 *                                                       warm-up datagram, then COUNT timed)
 *   mcast-listen [--group 224.0.0.251] [--port 5353] [--count 1] [--timeout S] [--from IP]
 *                                                       join the group, wait for COUNT datagrams
 *                                                       (only from IP if given: a host hears its
 *                                                       own multicast too)
 *   mcast-send [--group 224.0.0.251] [--port 5353] [--count 5] [--interval MS] [--message M]
 *                                                       send to the group (no interface chosen:
 *                                                       the route picks it, as mDNS libraries do)
 *   tcp-sink   [--port 5201] [--timeout S]              accept one connection, count its bytes
 *   tcp-send   --to IP [--port 5201] [--mib 256]        send MIB MiB as fast as TCP allows
 *   spin       [--seconds 2]                            busy loop; CPU seconds against wall
 */
import { createSocket } from 'node:dgram'
import { createConnection, createServer } from 'node:net'
import { hostname } from 'node:os'

const [command, ...rest] = process.argv.slice(2)
const flags = parse(rest)

function parse (args) {
  const out = {}
  for (let i = 0; i < args.length; i++) {
    const a = args[i]
    if (!a.startsWith('--')) usage(`unexpected argument ${a}`)
    const value = args[i + 1]
    if (value === undefined) usage(`${a} needs a value`)
    out[a.slice(2)] = value
    i++
  }
  return out
}

function usage (message) {
  process.stderr.write(`lab-probe: ${message}\n`)
  process.exit(2)
}

function num (name, dflt) {
  if (flags[name] === undefined) return dflt
  const n = Number(flags[name])
  if (!Number.isFinite(n) || n < 0) usage(`--${name} must be a number, got ${flags[name]}`)
  return n
}

function emit (obj) { process.stdout.write(JSON.stringify(obj) + '\n') }

function deadline (seconds, what) {
  if (seconds <= 0) return
  setTimeout(() => {
    emit({ ok: false, error: `timeout after ${seconds}s: ${what}` })
    process.exit(1)
  }, seconds * 1000).unref()
}

const now = () => Number(process.hrtime.bigint()) / 1e6 // ms

switch (command) {
  case 'udp-echo': {
    const sock = createSocket({ type: 'udp4', reuseAddr: true })
    const count = num('count', 0)
    let answered = 0
    sock.on('message', (msg, rinfo) => {
      sock.send(msg, rinfo.port, rinfo.address, () => {
        if (++answered === count) { emit({ ok: true, answered }); process.exit(0) }
      })
    })
    sock.bind(num('port', 7), () => emit({ ready: true, host: hostname() }))
    const t = num('timeout', 0)
    if (t > 0) setTimeout(() => { emit({ ok: count === 0, answered }); process.exit(count === 0 ? 0 : 1) }, t * 1000)
    break
  }
  case 'udp-ping': {
    if (flags.to === undefined) usage('udp-ping needs --to IP[,IP…]')
    const targets = flags.to.split(',').filter(Boolean)
    const port = num('port', 7)
    const count = num('count', 5)
    const sock = createSocket('udp4')
    const results = {}
    let pending
    sock.on('message', (msg) => { if (pending !== undefined && msg.toString() === pending.token) pending.done(now() - pending.sent) })
    const once = (ip, token) => new Promise(resolve => {
      const timer = setTimeout(() => { pending = undefined; resolve(undefined) }, 1000)
      pending = { token, sent: now(), done: (ms) => { clearTimeout(timer); pending = undefined; resolve(ms) } }
      sock.send(token, port, ip)
    })
    sock.bind(0, async () => {
      let ok = true
      for (const ip of targets) {
        const rtts = []
        // a first datagram to warm ARP, then the timed ones; retried a few times while the
        // echo server on the other side is still starting
        for (let i = 0; i < 10 && (await once(ip, `warm-${i}`)) === undefined; i++);
        for (let i = 0; i < count; i++) {
          const ms = await once(ip, `${process.pid}-${i}`)
          if (ms !== undefined) rtts.push(ms)
        }
        rtts.sort((a, b) => a - b)
        results[ip] = {
          sent: count,
          received: rtts.length,
          minMs: rtts.length ? +rtts[0].toFixed(3) : null,
          medianMs: rtts.length ? +rtts[Math.floor(rtts.length / 2)].toFixed(3) : null
        }
        if (rtts.length === 0) ok = false
      }
      emit({ ok, from: hostname(), results })
      process.exit(ok ? 0 : 1)
    })
    break
  }
  case 'mcast-listen': {
    const group = flags.group ?? '224.0.0.251'
    const count = num('count', 1)
    const sock = createSocket({ type: 'udp4', reuseAddr: true })
    const got = []
    deadline(num('timeout', 10), `waiting for ${count} datagram(s) on ${group}`)
    sock.on('error', (err) => { emit({ ok: false, error: String(err) }); process.exit(1) })
    sock.on('message', (msg, rinfo) => {
      if (flags.from !== undefined && rinfo.address !== flags.from) return
      got.push({ from: rinfo.address, message: msg.toString() })
      if (got.length >= count) { emit({ ok: true, group, received: got }); process.exit(0) }
    })
    sock.bind(num('port', 5353), () => {
      sock.addMembership(group)
      emit({ ready: true, group })
    })
    break
  }
  case 'mcast-send': {
    const group = flags.group ?? '224.0.0.251'
    const port = num('port', 5353)
    const count = num('count', 5)
    const interval = num('interval', 100)
    const message = flags.message ?? `lab-probe ${process.pid}`
    const sock = createSocket({ type: 'udp4', reuseAddr: true })
    sock.on('error', (err) => { emit({ ok: false, error: String(err) }); process.exit(1) })
    sock.bind(0, async () => {
      sock.setMulticastTTL(255)
      for (let i = 0; i < count; i++) {
        await new Promise((resolve, reject) => sock.send(message, port, group, (err) => err ? reject(err) : resolve()))
          .catch((err) => { emit({ ok: false, error: String(err) }); process.exit(1) })
        if (i + 1 < count) await new Promise(resolve => setTimeout(resolve, interval))
      }
      emit({ ok: true, group, sent: count })
      sock.close()
    })
    break
  }
  case 'tcp-sink': {
    deadline(num('timeout', 60), 'waiting for the sender')
    const server = createServer((conn) => {
      let bytes = 0
      let first
      conn.on('data', (b) => { if (first === undefined) first = now(); bytes += b.length })
      conn.on('end', () => {
        const seconds = (now() - (first ?? now())) / 1000
        emit({ ok: true, bytes, seconds: +seconds.toFixed(3), mibPerSecond: +(bytes / 1048576 / seconds).toFixed(1) })
        conn.end()
        server.close()
        process.exit(0)
      })
    })
    server.listen(num('port', 5201), () => emit({ ready: true }))
    break
  }
  case 'tcp-send': {
    if (flags.to === undefined) usage('tcp-send needs --to IP')
    const total = num('mib', 256) * 1048576
    const chunk = Buffer.alloc(1 << 20, 0x5a)
    const start = now()
    const conn = createConnection({ host: flags.to, port: num('port', 5201) })
    conn.on('error', (err) => { emit({ ok: false, error: String(err) }); process.exit(1) })
    conn.on('connect', () => {
      let sent = 0
      const pump = () => {
        while (sent < total) {
          const n = Math.min(chunk.length, total - sent)
          sent += n
          if (!conn.write(n === chunk.length ? chunk : chunk.subarray(0, n))) { conn.once('drain', pump); return }
        }
        conn.end()
      }
      pump()
    })
    conn.on('close', () => {
      const seconds = (now() - start) / 1000
      emit({ ok: true, bytes: total, seconds: +seconds.toFixed(3), mibPerSecond: +(total / 1048576 / seconds).toFixed(1) })
    })
    conn.resume()
    break
  }
  case 'spin': {
    const seconds = num('seconds', 2)
    const c0 = process.cpuUsage()
    const t0 = now()
    let x = 0
    while (now() - t0 < seconds * 1000) for (let i = 0; i < 1e5; i++) x += i
    const wall = (now() - t0) / 1000
    const c = process.cpuUsage(c0)
    const cpu = (c.user + c.system) / 1e6
    emit({ ok: true, wallSeconds: +wall.toFixed(3), cpuSeconds: +cpu.toFixed(3), cores: +(cpu / wall).toFixed(3), x: x > 0 })
    break
  }
  default:
    usage(`unknown command ${command ?? '(none)'}; see the comment at the top of scripts/lib/lab-probe.js`)
}
