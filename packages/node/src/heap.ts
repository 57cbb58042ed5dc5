/**
 * The V8 heap of a node in a mesh. Such a node keeps ~20 MB of live objects (libp2p, the build's
 * package graph) and, while it ships compiles, allocates fast (streams, frames, archives of
 * ~0.5 MB). V8 sized the old generation's limit at about 1.5 times the live heap, which left
 * less room than its young generation holds, so it began a full mark-compact after nearly every
 * scavenge: 32–37 per cold `std` build with one helper, against 3 for the same build compiled
 * locally, and a quarter of the requester node's CPU (docs/benchmarks/remote-timeline.md).
 *
 * Letting the old generation grow to four times its live size before the next full collection
 * (V8's `--heap-growing-percent`, read each time the limit is computed, so it takes effect at the
 * next collection) costs a few tens of MB of memory for a daemon and took those collections to 4.
 */
import { setFlagsFromString } from 'node:v8'

const HEAP_GROWING_PERCENT = 300

let tuned = false

/** Sets the heap's growth for this process once; a node calls it when it joins a mesh. */
export function growHeapForMesh (): void {
  if (tuned) return
  tuned = true
  setFlagsFromString(`--heap-growing-percent=${HEAP_GROWING_PERCENT}`)
}
