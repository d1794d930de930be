// Reads a Durable Stream with the real TypeScript client (@durable-streams/client): live
// from the start until it holds at least CUT messages that are streamnb "output" frames, then
// cancels (a reader cut off mid-stream), then resumes from the offset it had reached until the
// stream is closed. Used by tests/test_durable_clients.py.
//
//   node read_cut_resume.mjs URL LIVE CUT [TOKEN]      (LIVE: sse | long-poll)
//
// Prints one JSON line: {"first": [...], "offset": "...", "second": [...], "closed": true}.
import { stream } from "@durable-streams/client"

const [url, live, cutText, token] = process.argv.slice(2)
const cut = Number(cutText)
const headers = token ? { Authorization: `Bearer ${token}` } : {}
const TIMEOUT_MS = 30000

function read(offset, done) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no end within ${TIMEOUT_MS} ms`)), TIMEOUT_MS)
    stream({ url, offset, live, headers, warnOnHttp: false })
      .then((res) => {
        const items = []
        const unsubscribe = res.subscribeJson(async (batch) => {
          items.push(...batch.items)
          if (done(items, batch)) {
            clearTimeout(timer)
            unsubscribe()
            res.cancel()
            resolve({ items, offset: batch.offset, closed: batch.streamClosed })
          }
        })
        // The session's `closed` promise can settle before the subscriber got the last
        // batch, so the end is the batch that says streamClosed; `closed` reports errors.
        res.closed.catch((error) => {
          clearTimeout(timer)
          reject(error)
        })
      })
      .catch(reject)
  })
}

const outputs = (items) => items.filter((frame) => frame.kind === `output`).length
const first = await read(`-1`, (items) => outputs(items) >= cut)
const second = await read(first.offset, (_items, batch) => batch.streamClosed)
console.log(
  JSON.stringify({
    first: first.items,
    offset: first.offset,
    second: second.items,
    closed: second.closed,
  }),
)
