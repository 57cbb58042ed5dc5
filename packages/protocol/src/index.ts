/**
 * @grid/protocol: what every part of grid agrees on, with no I/O. Message types and their
 * validation, the frame codec of the node socket, error codes, limits, size helpers, the
 * remote compile task with its key, and the msgpack codec every part of grid uses.
 */
export * from './constants.js'
export * from './errors.js'
export * from './messages.js'
export * from './frame.js'
export * from './size.js'
export * from './advert.js'
export * from './swarm.js'
export * from './peer-cache.js'
export * from './spawner.js'
export * from './task.js'
export * from './msgpack.js'
