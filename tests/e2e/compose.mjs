// End-to-end test of the composition assistant in headless Chromium.
//
//   node compose.mjs --compose BIN --cloud BIN --shared DIR --out DIR [--chromium PATH]
//
// Starts tandem-cloud (UNGD speeches up to 1970, the demo cloud model) and tandem-compose (the
// demo client model), opens the page and: checks that the draft is the page (diagnostics
// closed), types text and waits for a ghost suggestion, accepts it with Tab, asks a question,
// reads which model answered and inserts the answer into the draft, stops the cloud and waits
// for "offline", types on, starts the cloud again on another port, points the page at it
// through the cloud URL in the top bar and waits for "online" and for memory notes to arrive,
// opens a note's source passage, and opens the diagnostics.
// Screenshots go to --out. Exit 0: passed; 1: a step failed (the message names it).
//
// Chromium is driven through the DevTools protocol over a pipe (--remote-debugging-pipe: JSON
// messages separated by NUL bytes on fds 3 and 4), so the test needs only Node and Chromium:
// no npm package, no WebSocket, nothing from the network.
import { spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import readline from "node:readline";

const args = {};
for (let i = 2; i < process.argv.length; i += 2) args[process.argv[i].replace(/^--/, "")] = process.argv[i + 1];
for (const k of ["compose", "cloud", "shared", "out"])
  if (!args[k]) { console.error(`compose.mjs: --${k} is required`); process.exit(2); }
const chromiumPath = args.chromium || "/usr/bin/chromium";
const workDir = fs.mkdtempSync(path.join(os.tmpdir(), "tandem-e2e-"));
fs.mkdirSync(args.out, { recursive: true });
const children = [];
const t0 = Date.now();
const log = (...m) => console.log(`[${((Date.now() - t0) / 1000).toFixed(1)}s]`, ...m);

function cleanup() {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGTERM");
  try { fs.rmSync(workDir, { recursive: true, force: true }); } catch { /* best effort */ }
}
function fail(msg) {
  console.error("E2E FAILED: " + msg);
  cleanup();
  process.exit(1);
}
setTimeout(() => fail("the test ran past its 170 s limit"), 170_000).unref();
process.on("SIGINT", () => fail("interrupted"));

// ---- child processes -----------------------------------------------------------------

// Spawns a program and resolves with the first stdout line matching `re` (its match).
function startProcess(name, bin, argv, re, timeoutMs) {
  return new Promise((resolve, reject) => {
    const child = spawn(bin, argv, { stdio: ["ignore", "pipe", "pipe"] });
    children.push(child);
    const errLog = fs.createWriteStream(path.join(args.out, `${name}.log`), { flags: "a" });
    child.stderr.pipe(errLog);
    const timer = setTimeout(() => reject(new Error(`${name} printed no address within ${timeoutMs} ms`)), timeoutMs);
    readline.createInterface({ input: child.stdout }).on("line", (line) => {
      errLog.write("stdout: " + line + "\n");
      const m = line.match(re);
      if (m) { clearTimeout(timer); resolve({ child, match: m }); }
    });
    child.on("exit", (code, sig) => {
      clearTimeout(timer);
      reject(new Error(`${name} exited (code ${code}, signal ${sig}); see ${name}.log in ${args.out}`));
    });
  });
}

const stopProcess = (child) => new Promise((resolve) => {
  if (child.exitCode !== null || child.signalCode !== null) return resolve();
  child.once("exit", () => resolve());
  child.kill("SIGTERM");
});

// ---- Chrome DevTools protocol over a pipe --------------------------------------------

class Browser {
  constructor() {
    const userDir = path.join(workDir, "chromium-profile");
    this.proc = spawn(chromiumPath, [
      "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
      "--disable-dev-shm-usage", "--remote-debugging-pipe", `--user-data-dir=${userDir}`,
      "--window-size=1280,900", "about:blank",
    ], { stdio: ["ignore", "ignore", "pipe", "pipe", "pipe"] });
    children.push(this.proc);
    this.proc.stderr.pipe(fs.createWriteStream(path.join(args.out, "chromium.log")));
    this.out = this.proc.stdio[3];
    this.nextId = 1;
    this.pending = new Map();
    this.listeners = [];
    let buf = Buffer.alloc(0);
    this.proc.stdio[4].on("data", (chunk) => {
      buf = Buffer.concat([buf, chunk]);
      let end;
      while ((end = buf.indexOf(0)) >= 0) {
        const msg = JSON.parse(buf.subarray(0, end).toString("utf8"));
        buf = buf.subarray(end + 1);
        if (msg.id && this.pending.has(msg.id)) {
          const { resolve, reject, method } = this.pending.get(msg.id);
          this.pending.delete(msg.id);
          if (msg.error) reject(new Error(`${method}: ${msg.error.message}`));
          else resolve(msg.result);
        } else if (msg.method) {
          for (const l of this.listeners) l(msg);
        }
      }
    });
    this.proc.on("exit", (code) => {
      for (const { reject } of this.pending.values()) reject(new Error(`chromium exited (${code}); see chromium.log`));
    });
  }
  send(method, params = {}, sessionId) {
    const id = this.nextId++;
    const msg = { id, method, params };
    if (sessionId) msg.sessionId = sessionId;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject, method });
      this.out.write(JSON.stringify(msg) + "\0");
    });
  }
  async newPage() {
    const { targetId } = await this.send("Target.createTarget", { url: "about:blank" });
    const { sessionId } = await this.send("Target.attachToTarget", { targetId, flatten: true });
    return new Page(this, sessionId);
  }
}

class Page {
  constructor(browser, sessionId) {
    this.b = browser;
    this.s = sessionId;
    this.consoleErrors = [];
    browser.listeners.push((m) => {
      if (m.sessionId !== sessionId) return;
      if (m.method === "Runtime.exceptionThrown") this.consoleErrors.push(m.params.exceptionDetails.text);
    });
  }
  send(method, params) { return this.b.send(method, params, this.s); }
  async eval(expression) {
    const r = await this.send("Runtime.evaluate", { expression, returnByValue: true, awaitPromise: true });
    if (r.exceptionDetails) throw new Error(`evaluate ${expression}: ${r.exceptionDetails.text}`);
    return r.result.value;
  }
  // Polls `expression` until it is truthy; returns its value or fails naming `what`.
  async waitFor(what, expression, timeoutMs) {
    const until = Date.now() + timeoutMs;
    for (;;) {
      const v = await this.eval(expression);
      if (v) return v;
      if (Date.now() > until) {
        await this.screenshot("failed");
        fail(`${what}: not seen within ${timeoutMs / 1000} s (screenshot failed.png)`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  async typeText(text) {
    await this.send("Input.insertText", { text });
  }
  async pressKey(key, code, keyCode) {
    for (const type of ["keyDown", "keyUp"])
      await this.send("Input.dispatchKeyEvent", { type, key, code, windowsVirtualKeyCode: keyCode });
  }
  async screenshot(name) {
    const { data } = await this.send("Page.captureScreenshot", { format: "png" });
    const file = path.join(args.out, `${name}.png`);
    fs.writeFileSync(file, Buffer.from(data, "base64"));
    log("screenshot", file);
  }
}

// ---- the scenario --------------------------------------------------------------------

const corpus = path.join(args.shared, "corpus", "ungd.jsonl.xz");
const clientModel = path.join(args.shared, "models", "tandem-demo-client-q8_0.gguf");
const cloudModel = path.join(args.shared, "models", "tandem-demo-cloud-q8_0.gguf");
for (const f of [corpus, clientModel, cloudModel]) if (!fs.existsSync(f)) fail(`missing test data ${f}`);
// The speeches up to 1970 (about 1,600; the demo uses all up to 2020) keep the first run's corpus
// load short. The loaded corpus is kept in --out (cloud-corpus.db, made once) and each run's
// cloud starts from a copy of it: an empty memory feed, and no corpus load after the first run.
const corpusDb = path.join(args.out, "cloud-corpus.db"), cloudDb = path.join(workDir, "cloud.db");
const cloudArgs = (port, db = cloudDb) => ["--port", String(port), "--corpus", corpus, "--max-year", "1970",
  "--db", db, "--model", cloudModel];

try {
  if (!fs.existsSync(corpusDb)) {
    log("loading the corpus into", corpusDb, "(first run only)");
    const tmp = corpusDb + ".tmp";
    fs.rmSync(tmp, { force: true });
    const loader = await startProcess("tandem-cloud", args.cloud, cloudArgs(0, tmp), /listening on/, 150_000);
    await stopProcess(loader.child);
    fs.renameSync(tmp, corpusDb);
  }
  fs.copyFileSync(corpusDb, cloudDb);
  log("starting tandem-cloud");
  let cloud = await startProcess("tandem-cloud", args.cloud, cloudArgs(0), /listening on (http:\/\/[\d.]+:(\d+))/, 150_000);
  const cloudUrl = cloud.match[1], cloudPort = +cloud.match[2];
  log("cloud at", cloudUrl);

  const compose = await startProcess("tandem-compose", args.compose,
    ["--model", clientModel, "--cloud", cloudUrl, "--db", path.join(workDir, "memory.db"), "--threads", "2"],
    /^open (http:\/\/127\.0\.0\.1:\d+\/\?token=[0-9a-f]+)$/, 60_000);
  const url = compose.match[1];
  log("app at", url);

  // The token is required: without it the page is refused.
  const bare = await fetch(url.replace(/\?token=.*/, ""));
  if (bare.status !== 403) fail(`the page without its token answered ${bare.status}, not 403`);

  const browser = new Browser();
  const page = await browser.newPage();
  await page.send("Page.enable");
  await page.send("Runtime.enable");
  await page.send("Emulation.setDeviceMetricsOverride", { width: 1280, height: 900, deviceScaleFactor: 1, mobile: false });
  await page.send("Page.navigate", { url });
  await page.waitFor("the editor", "document.readyState === 'complete' && !!document.getElementById('editor')", 20_000);
  await page.waitFor("the online indicator", "document.getElementById('online').textContent === 'online'", 30_000);
  log("page loaded, online");
  const shownUrl = await page.eval("document.getElementById('cloud').textContent");
  if (shownUrl !== cloudUrl) fail(`the top bar shows the cloud URL ${JSON.stringify(shownUrl)}, not ${cloudUrl}`);

  // 0. The draft is the page: the editor takes most of the width, the diagnostics (router knob,
  // usage, events) are closed, and the Ask box says what the demo models can do.
  const layout = await page.eval(`({ editor: document.getElementById('editor').getBoundingClientRect().width,
    height: document.getElementById('editor').getBoundingClientRect().height,
    diagnostics: document.getElementById('diagnostics').hidden,
    knobShown: document.getElementById('knob').offsetParent !== null })`);
  if (layout.editor < 0.6 * 1280 || layout.height < 0.7 * 900)
    fail(`the editor is ${layout.editor} x ${layout.height} px of a 1280 x 900 page`);
  if (!layout.diagnostics || layout.knobShown) fail("the diagnostics are open on a fresh page");
  await page.waitFor("the Ask box's note on the demo models",
    "/continue text; they do not follow instructions/.test(document.getElementById('ask-about').textContent) && " +
    "document.getElementById('ask-about').textContent.includes('tandem-demo-client')", 10_000);

  // 1. Type, see a ghost suggestion.
  const opening = "The General Assembly meets at a time when the peoples of the world look to the United Nations for peace,";
  await page.eval("document.getElementById('editor').focus()");
  await page.typeText(opening);
  const ghost = await page.waitFor("a ghost suggestion",
    "document.body.dataset.suggest === 'done' && document.getElementById('ghost') && document.getElementById('ghost').textContent", 60_000);
  log("suggestion:", JSON.stringify(ghost));
  await page.screenshot("01-suggestion");

  // 2. Tab accepts it.
  await page.pressKey("Tab", "Tab", 9);
  const accepted = await page.eval("document.getElementById('editor').value");
  if (accepted !== opening + ghost) fail(`after Tab the text is ${JSON.stringify(accepted)}, not the opening + the suggestion`);
  log("accepted with Tab");
  await page.waitFor("a suggestion after the accepted one", "document.body.dataset.suggest === 'done'", 60_000);
  await page.screenshot("02-accepted");

  // 3. Ask; the answer names the model that wrote it and why it was routed there; Insert puts
  // it into the draft at the cursor.
  // The demo models are base models sampled with a fresh seed: one may stop before its first
  // word. The page must then say so; the test asks again (up to 3 times).
  let answerText = "";
  for (let attempt = 1; attempt <= 3 && !answerText; attempt++) {
    await page.eval(`document.getElementById('ask-input').value = 'Suggest a stronger closing sentence for this paragraph.';
                     document.getElementById('ask-button').click()`);
    const who = await page.waitFor("who answered", "document.getElementById('ask-who').dataset.by", 90_000);
    const whyText = await page.eval("document.getElementById('ask-who').textContent");
    if (who !== "local" && who !== "cloud") fail(`answered_by is ${who}`);
    const model = await page.eval("document.getElementById('ask-model').textContent");
    const wantModel = who === "cloud" ? "tandem-demo-cloud" : "tandem-demo-client";
    if (model !== wantModel) fail(`the ${who} answer names the model ${JSON.stringify(model)}, not ${wantModel}`);
    log("asked:", whyText);
    answerText = (await page.eval("document.getElementById('ask-answer').textContent")).trim();
    if (!answerText) {
      if (!whyText.includes("returned no text")) fail("the answer is empty and the page does not say so");
      if (!(await page.eval("document.getElementById('ask-insert').disabled"))) fail("Insert is enabled for an empty answer");
      log(`attempt ${attempt}: the model returned no text, and the page says so`);
    }
  }
  if (!answerText) fail("the answer is empty three times");
  await page.waitFor("the Insert button", "!document.getElementById('ask-insert').disabled", 10_000);
  await page.screenshot("03-ask");
  const draftBefore = await page.eval("document.getElementById('editor').value");
  await page.eval("document.getElementById('ask-insert').click()");
  const draftAfter = await page.eval("document.getElementById('editor').value");
  if (!draftAfter.startsWith(draftBefore) || !draftAfter.endsWith(answerText))
    fail(`after Insert the draft does not end with the answer: ${JSON.stringify(draftAfter.slice(-120))}`);
  if (!(await page.eval("document.getElementById('ask-result').hidden"))) fail("the answer stays open after Insert");
  log("inserted the answer into the draft");
  await page.waitFor("a suggestion after the insert", "document.body.dataset.suggest === 'done'", 60_000);

  // 4. Stop the cloud: the page shows offline.
  await stopProcess(cloud.child);
  log("cloud stopped");
  await page.waitFor("the offline indicator", "document.getElementById('online').textContent === 'offline'", 45_000);
  // Read once offline (plus one state refresh): from here on, only the restarted cloud can add notes.
  await new Promise((r) => setTimeout(r, 1500));
  const notesBefore = +(await page.eval("document.getElementById('usage-notes-stored').textContent"));
  log("notes stored before the restart:", notesBefore);
  // Writing goes on offline: suggestions still come (the local model never waits for the cloud).
  await page.eval("const e = document.getElementById('editor'); e.focus(); e.setSelectionRange(e.value.length, e.value.length)");
  await page.typeText("\n\nClimate change threatens the small island developing States, whose coasts and fisheries " +
    "are disappearing under rising seas, and the international community must finance adaptation now.");
  await page.waitFor("a suggestion while offline",
    "document.body.dataset.suggest === 'done' && document.getElementById('ghost') && document.getElementById('ghost').textContent", 60_000);
  await page.screenshot("04-offline");
  log("offline, suggestions still work");

  // 5. The cloud comes back on another port (its database kept): the writer clicks the cloud
  // URL in the top bar and types the new one; a malformed URL is refused and says why.
  cloud = await startProcess("tandem-cloud", args.cloud, cloudArgs(0), /listening on (http:\/\/[\d.]+:(\d+))/, 60_000);
  const movedUrl = cloud.match[1];
  if (+cloud.match[2] === cloudPort) fail("the restarted cloud got the same port");
  log("cloud restarted at", movedUrl);
  await page.eval("document.getElementById('cloud').click()");
  await page.eval(`document.getElementById('cloud-input').value = 'ftp://nowhere';
                   document.getElementById('cloud-form').requestSubmit()`);
  const refused = await page.waitFor("the refusal of a malformed URL",
    "!document.getElementById('cloud-error').hidden && document.getElementById('cloud-error').textContent", 10_000);
  if (!/http:\/\/ or https:\/\//.test(refused)) fail(`a malformed cloud URL was refused with ${JSON.stringify(refused)}`);
  await page.eval(`document.getElementById('cloud-input').value = ${JSON.stringify(movedUrl)};
                   document.getElementById('cloud-form').requestSubmit()`);
  await page.waitFor("the new cloud URL in the top bar",
    `document.getElementById('cloud').textContent === ${JSON.stringify(movedUrl)} && !document.getElementById('cloud').hidden &&
     document.getElementById('cloud-error').hidden`, 10_000);
  await page.waitFor("the online indicator after the move", "document.getElementById('online').textContent === 'online'", 45_000);
  await page.screenshot("04b-moved");
  await page.waitFor(`new memory notes (more than the ${notesBefore} stored while offline)`,
    `+document.getElementById('usage-notes-stored').textContent > ${notesBefore} &&
     document.querySelector('#notes li .src-open') !== null`, 60_000);
  const notes = await page.eval("[...document.querySelectorAll('#notes li .text')].map(t => t.textContent).slice(0, 3)");
  log("memory notes:", JSON.stringify(notes));
  // Notes are shown whole, not cut to a few lines.
  const clipped = await page.eval("[...document.querySelectorAll('#notes li .text')].some(t => t.scrollHeight > t.clientHeight + 1)");
  if (clipped) fail("a note's text is cut off");

  // 6. Open the first note's source: the passage it came from, under the note.
  await page.eval("document.querySelector('#notes li .src-open').click()");
  const passage = await page.waitFor("the first note's source passage",
    "document.querySelector('#notes li .passage') && document.querySelector('#notes li .passage').textContent", 30_000);
  if (!/passage \d+ of \d+$/.test(passage)) fail(`the source passage is ${JSON.stringify(passage.slice(0, 200))}`);
  log("source passage:", JSON.stringify(passage.slice(0, 120)) + "…");
  await page.screenshot("05-memory");

  // 7. The diagnostics open from the top bar: router knob, usage, events.
  await page.eval("document.getElementById('diag-toggle').click()");
  const diag = await page.eval(`({ open: !document.getElementById('diagnostics').hidden,
    knob: document.getElementById('knob').offsetParent !== null,
    events: document.querySelectorAll('#events li').length })`);
  if (!diag.open || !diag.knob || diag.events === 0) fail(`the diagnostics drawer: ${JSON.stringify(diag)}`);
  await page.screenshot("06-diagnostics");

  if (page.consoleErrors.length) fail("the page threw: " + page.consoleErrors.join("; "));
  await stopProcess(compose.child);
  if (compose.child.exitCode !== 0) fail(`tandem-compose exited with ${compose.child.exitCode} after SIGTERM`);
  log("E2E PASSED");
  cleanup();
  process.exit(0);
} catch (e) {
  fail(e.message);
}
