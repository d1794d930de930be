// Reads streamnb's /api/chat with the real `ai` package and prints the assistant message.
//
//   node read_ui_stream.mjs send   <api url> <chat id> <user text> [token]
//   node read_ui_stream.mjs resume <api url> <chat id> [token]
//
// DefaultChatTransport makes the request and validates every chunk against the
// SDK's own UI message chunk schema; readUIMessageStream folds the chunks into a
// UIMessage. Prints one JSON line: {"message": <last UIMessage or null>, "errors": [...]}.
import { DefaultChatTransport, readUIMessageStream } from "ai";

const [mode, api, chatId, ...rest] = process.argv.slice(2);
const text = mode === "send" ? rest[0] : undefined;
const token = mode === "send" ? rest[1] : rest[0];
const transport = new DefaultChatTransport({
  api,
  headers: token ? { Authorization: `Bearer ${token}` } : {},
});

let stream;
if (mode === "send") {
  stream = await transport.sendMessages({
    chatId,
    trigger: "submit-message",
    messageId: undefined,
    messages: [{ id: "user-1", role: "user", parts: [{ type: "text", text }] }],
    abortSignal: undefined,
  });
} else {
  stream = await transport.reconnectToStream({ chatId });
}

const errors = [];
let message = null;
if (stream !== null) {
  for await (const snapshot of readUIMessageStream({
    stream,
    onError: (error) => errors.push(String(error)),
  })) {
    message = snapshot;
  }
}
console.log(JSON.stringify({ message, errors }));
