// The Durable Streams reference server (@durable-streams/server, pinned in package.json),
// started the way tests/test_durable_conformance.py starts `streamnb serve`, so the
// conformance suite can be run against both and their failures compared.
//
//   node reference_server.mjs [--port 0] [--long-poll-timeout-ms 2000]
//
// Prints one line, `listening <url>`, then serves until SIGTERM or SIGINT.
import { DurableStreamTestServer } from "@durable-streams/server"

function option(name, fallback) {
  const i = process.argv.indexOf(name)
  return i >= 0 ? Number(process.argv[i + 1]) : fallback
}

const server = new DurableStreamTestServer({
  host: `127.0.0.1`,
  port: option(`--port`, 0),
  longPollTimeout: option(`--long-poll-timeout-ms`, 2000),
})
await server.start()
console.log(`listening ${server.url}`)

let stopping = false
async function stop() {
  if (stopping) return
  stopping = true
  await server.stop()
  process.exit(0)
}
process.on(`SIGTERM`, stop)
process.on(`SIGINT`, stop)
