export { ControlServer, type ControlServerInit, type RequestContext, type RequestHandler } from './server.js'
export { ControlClient, type ReplyTo } from './client.js'
export { CONNECT_TIMEOUT_MS } from './constants.js'
