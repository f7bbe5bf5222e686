// tandem-cloud's OpenAI API through the official `openai` npm client: list and retrieve
// models, a completion, text content parts, stop, a streamed completion with its usage chunk,
// the stream helper, and errors (a bad parameter, a bad key) as the client's error classes.
// Starts tandem-cloud (stories260K, a token) on a free port; run by run.sh.
//   node client.mjs --cloud BIN --model GGUF --packages DIR   (DIR/node_modules/openai)
import { spawn } from "node:child_process";
import assert from "node:assert/strict";
import { mkdtempSync, mkdirSync, readFileSync, writeFileSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

const arg = (name) => {
  const i = process.argv.indexOf(name);
  if (i < 0 || i + 1 >= process.argv.length) throw new Error(`missing ${name}`);
  return process.argv[i + 1];
};
const require = createRequire(resolve(arg("--packages"), "package.json"));
const OpenAI = require("openai");
const version = JSON.parse(readFileSync(join(arg("--packages"), "node_modules", "openai", "package.json"))).version;

// ---- the server ----------------------------------------------------------------------------

const dir = mkdtempSync(join(tmpdir(), "tandem-openai-"));
mkdirSync(join(dir, "corpus"));
writeFileSync(join(dir, "corpus", "lily.txt"), "Lily and the park.\n\nLily loved to play in the park with her dog.\n");
const token = "openai-client-token-0123456789";
const server = spawn(arg("--cloud"), ["--port", "0", "--corpus", join(dir, "corpus"), "--db", join(dir, "c.db"),
                                      "--model", arg("--model"), "--token", token], { stdio: ["ignore", "pipe", "inherit"] });
const stop = () => {
  server.kill("SIGTERM");
  rmSync(dir, { recursive: true, force: true });
};
const baseURL = await new Promise((resolve, reject) => {
  let out = "";
  const timer = setTimeout(() => reject(new Error("tandem-cloud did not start in 60 s")), 60000);
  server.stdout.on("data", (d) => {
    out += d;
    const m = out.match(/listening on (http:\/\/\S+)/);
    if (m) {
      clearTimeout(timer);
      resolve(m[1] + "/v1");
    }
  });
  server.on("exit", (code) => reject(new Error(`tandem-cloud exited with ${code}`)));
});

// ---- the checks ------------------------------------------------------------------------------

const client = new OpenAI({ baseURL, apiKey: token, maxRetries: 0 });
const messages = [{ role: "user", content: "Once upon a time" }];
const ok = (what) => console.log(`ok: ${what}`);

async function main() {
  const models = [];
  for await (const m of client.models.list()) models.push(m);
  assert.equal(models.length, 1);
  const [model] = models;
  assert.equal(model.object, "model");
  assert.equal(typeof model.created, "number");
  assert.equal(model.owned_by, "tandem-cloud");
  assert.deepEqual(await client.models.retrieve(model.id), model);
  ok(`models.list and models.retrieve: ${model.id}`);

  const plain = await client.chat.completions.create({ model: model.id, messages, max_completion_tokens: 12, temperature: 0 });
  assert.match(plain.id, /^chatcmpl-/);
  assert.equal(plain.object, "chat.completion");
  assert.equal(plain.model, model.id);
  assert.ok(Math.abs(plain.created - Date.now() / 1000) < 60, `created ${plain.created}`);
  const text = plain.choices[0].message.content;
  assert.ok(text.length > 0);
  assert.equal(plain.choices[0].finish_reason, "length");
  assert.equal(plain.usage.completion_tokens, 12);
  ok(`chat.completions.create: ${JSON.stringify(text)}`);

  const parts = await client.chat.completions.create({
    model: model.id, max_tokens: 12, temperature: 0,
    messages: [{ role: "user", content: [{ type: "text", text: "Once upon " }, { type: "text", text: "a time" }] }],
  });
  assert.equal(parts.choices[0].message.content, text);
  ok("content as text parts");

  const word = text.trim().split(" ")[2];
  const stopped = await client.chat.completions.create({ model: model.id, messages, max_tokens: 12, temperature: 0, stop: [word] });
  assert.equal(stopped.choices[0].message.content, text.slice(0, text.indexOf(word)));
  assert.equal(stopped.choices[0].finish_reason, "stop");
  ok(`stop ${JSON.stringify(word)}`);

  const stream = await client.chat.completions.create({
    model: model.id, messages, max_completion_tokens: 12, temperature: 0, stream: true, stream_options: { include_usage: true },
  });
  let joined = "", usage = null, finish = null;
  for await (const chunk of stream) {
    assert.equal(chunk.object, "chat.completion.chunk");
    if (chunk.choices.length) {
      joined += chunk.choices[0].delta.content ?? "";
      finish = chunk.choices[0].finish_reason ?? finish;
    }
    if (chunk.usage) usage = chunk.usage;
  }
  assert.equal(joined, text);
  assert.equal(finish, "length");
  assert.equal(usage.completion_tokens, 12);
  ok("a streamed completion with stream_options.include_usage");

  const runner = client.chat.completions.stream({ model: model.id, messages, max_tokens: 12, temperature: 0 });
  const final = await runner.finalChatCompletion();
  assert.equal(final.choices[0].message.content, text);
  ok("the chat.completions.stream helper");

  await assert.rejects(client.chat.completions.create({ model: model.id, messages, n: 2 }), (e) => {
    assert.ok(e instanceof OpenAI.BadRequestError, `got ${e.constructor.name}`);
    assert.equal(e.status, 400);
    assert.equal(e.param, "n");
    assert.equal(e.type, "invalid_request_error");
    assert.match(e.message, /'n' must be 1/);
    return true;
  });
  ok("n: 2 is a BadRequestError naming param n");

  const stranger = new OpenAI({ baseURL, apiKey: "not-the-token", maxRetries: 0 });
  await assert.rejects(stranger.models.list(), (e) => {
    assert.ok(e instanceof OpenAI.AuthenticationError, `got ${e.constructor.name}`);
    assert.equal(e.status, 401);
    assert.equal(e.code, "invalid_api_key");
    return true;
  });
  ok("a wrong key is an AuthenticationError");
}

try {
  await main();
  console.log(`openai ${version} client: all checks passed`);
} finally {
  stop();
}
