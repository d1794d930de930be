// A chat with the real `ai` package whose reply is cut off by a dropped connection, then
// resumed with chat.resumeStream() (GET <api>/<chat id>/stream), as useChat does.
//
//   node resume_chat.mjs <api url> <chat id> <user text>
//
// AbstractChat is the class behind useChat (@ai-sdk/react) and the other framework
// bindings; here it keeps its messages in a plain object. Prints one JSON line:
// {"partial": <messages after the drop>, "sendError": <error text or null>,
//  "final": <messages after the resume>, "status": <chat status>, "errors": [...]}.
import { AbstractChat, DefaultChatTransport } from "ai";

const [api, chatId, text] = process.argv.slice(2);

class PlainState {
  constructor() {
    this.status = "ready";
    this.error = undefined;
    this.messages = [];
  }
  pushMessage(message) {
    this.messages = this.messages.concat([message]);
  }
  popMessage() {
    this.messages = this.messages.slice(0, -1);
  }
  replaceMessage(index, message) {
    this.messages = this.messages.map((m, i) => (i === index ? message : m));
  }
  snapshot(thing) {
    return structuredClone(thing);
  }
}

class Chat extends AbstractChat {
  constructor(options) {
    super({ ...options, state: new PlainState() });
  }
}

const errors = [];
const chat = new Chat({
  id: chatId,
  transport: new DefaultChatTransport({ api }),
  onError: (error) => errors.push(String(error)),
});

await chat.sendMessage({ text });
const partial = structuredClone(chat.messages);
const sendError = chat.error ? String(chat.error) : null;
await chat.resumeStream();
console.log(
  JSON.stringify({ partial, sendError, final: chat.messages, status: chat.status, errors }),
);
