// The composition assistant's page: plain JS, no framework, nothing loaded from the network.
// The API is described in examples/composition_assistant/api.h; every call carries the
// per-run token from this page's URL.
//
// The page is the draft. Beside it: Ask (an answer can be inserted into the draft) and the
// memory notes, each with its source passage one click away. Router knob, token counts and
// the event log are diagnostics, in a drawer that the top bar's button opens.
"use strict";

const TOKEN = new URLSearchParams(location.search).get("token") || "";
const $ = (id) => document.getElementById(id);
const editor = $("editor"), mirror = $("mirror");

// ---- API helpers ---------------------------------------------------------------------

async function api(path, body) {
  const init = { headers: { "X-Tandem-Token": TOKEN } };
  if (body !== undefined) {
    init.method = "POST";
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const res = await fetch(path, init);
  const data = await res.json();
  if (!res.ok) throw new Error((data.error && data.error.message) || res.statusText);
  return data;
}

// POSTs `body` and calls onEvent(name, data) for each server-sent event until the stream ends.
async function stream(path, body, signal, onEvent) {
  const res = await fetch(path, {
    method: "POST", signal,
    headers: { "X-Tandem-Token": TOKEN, "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  if (!res.ok) {
    let msg = res.statusText;
    try { msg = (await res.json()).error.message; } catch (e) { /* keep statusText */ }
    throw new Error(msg);
  }
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += decoder.decode(value, { stream: true });
    let end;
    while ((end = buf.indexOf("\n\n")) >= 0) {
      const block = buf.slice(0, end);
      buf = buf.slice(end + 2);
      let name = "message", data = "";
      for (const line of block.split("\n")) {
        if (line.startsWith("event: ")) name = line.slice(7);
        else if (line.startsWith("data: ")) data += line.slice(6);
      }
      if (data) onEvent(name, JSON.parse(data));
    }
  }
}

// This page's document: a stable id kept in the browser and sent with every suggestion, so
// that memory requests carry it and the notes made for it come first.
const DOCUMENT_ID = (() => {
  const key = "tandem-document-id";
  let id = localStorage.getItem(key);
  if (!id) {
    id = "doc-" + Array.from(crypto.getRandomValues(new Uint8Array(12)), (b) => b.toString(16).padStart(2, "0")).join("");
    localStorage.setItem(key, id);
  }
  return id;
})();

const utf8Length = (s) => new TextEncoder().encode(s).length;
const fmt = (x, digits) => (typeof x === "number" ? x.toFixed(digits) : "-");
const el = (tag, className, text) => {
  const e = document.createElement(tag);
  if (className) e.className = className;
  if (text !== undefined) e.textContent = text;
  return e;
};

// ---- notes and their sources ---------------------------------------------------------
// One list: the stored notes most relevant to the draft (from /api/state), those in the last
// suggestion's prompt marked. "Source" fetches the passage the note came from and shows it
// under the note, the note's own words highlighted when the passage holds them. The list is
// rebuilt only when its notes change, so an open source stays open.

const sources = new Map();  // note id -> {passage, title, index, count} or {error}
const openSources = new Set();  // note ids whose source is shown
let notesKey = "", usedIds = new Set(), lastNotes = [];

function uniqueNotes(notes) {
  const seen = new Set();  // two requests can bring back the same passage: show it once
  return notes.filter((n) => !seen.has(n.text) && seen.add(n.text));
}

function passageBlock(n, s) {
  const box = el("blockquote", "passage");
  if (s.error) {
    box.append(el("span", "where", s.error));
    return box;
  }
  // Highlight the note's sentence in the passage (extractive notes are copied from it).
  const quote = n.text.replace(/\.\.\.$/, "");
  const at = quote ? s.passage.indexOf(quote) : -1;
  if (at >= 0) {
    box.append(s.passage.slice(0, at), el("mark", "", quote), s.passage.slice(at + quote.length));
  } else {
    box.append(s.passage);
  }
  box.append(el("span", "where", `${s.title}, passage ${s.index + 1} of ${s.count}`));
  return box;
}

function noteItem(n) {
  const li = el("li");
  li.dataset.id = n.id;
  li.append(el("div", "text", n.text));
  const meta = el("div", "meta");
  const title = el("span", "src-title", "— " + (n.title || n.doc_id || "unknown source"));
  title.title = n.title || n.doc_id || "";
  const open = el("button", "link src-open", openSources.has(n.id) ? "Hide source" : "Source");
  open.type = "button";
  open.setAttribute("aria-expanded", String(openSources.has(n.id)));
  open.addEventListener("click", () => toggleSource(n, li));
  meta.append(title, open);
  if (usedIds.has(n.id)) {
    const used = el("span", "used", "in the last suggestion");
    meta.append(used);
  }
  li.append(meta);
  if (openSources.has(n.id) && sources.has(n.id)) li.append(passageBlock(n, sources.get(n.id)));
  return li;
}

async function toggleSource(n, li) {
  if (openSources.has(n.id)) {
    openSources.delete(n.id);
  } else {
    openSources.add(n.id);
    if (!sources.has(n.id) || sources.get(n.id).error) {
      li.querySelector(".src-open").textContent = "Opening…";
      try {
        const q = `?doc_id=${encodeURIComponent(n.doc_id)}&note=${encodeURIComponent(n.text)}`;
        sources.set(n.id, await api("/api/source" + q));
      } catch (e) {
        sources.set(n.id, { error: "The source cannot be shown: " + e.message });
      }
    }
  }
  // The list may have been rebuilt while the passage was fetched: replace the note's current item.
  const current = [...$("notes").children].find((x) => x.dataset.id === n.id);
  if (!current) return;
  const item = noteItem(n);
  current.replaceWith(item);
  if (openSources.has(n.id)) item.scrollIntoView({ block: "nearest" });
}

function renderNotes(notes) {
  notes = uniqueNotes(notes);
  const key = notes.map((n) => n.id + (usedIds.has(n.id) ? "*" : "")).join(" ");
  $("notes-count").textContent = notes.length;
  if (key === notesKey) return;
  notesKey = key;
  lastNotes = notes;
  const list = $("notes");
  list.replaceChildren();
  if (!notes.length) list.append(el("li", "empty", "None yet: notes arrive from the cloud as you write."));
  for (const n of notes) list.append(noteItem(n));
}

function setUsedNotes(notes) {
  usedIds = new Set(notes.map((n) => n.id));
  const list = $("notes-used");
  list.replaceChildren();
  if (!notes.length) list.append(el("li", "empty", "No memory notes were in this suggestion's prompt."));
  for (const n of uniqueNotes(notes)) list.append(el("li", "", `${n.text} (${n.title || n.doc_id})`));
  notesKey = "";  // the "in the last suggestion" marks changed
  renderNotes(lastNotes);
}

// ---- ghost text ----------------------------------------------------------------------
// The textarea is transparent over a mirror div holding the same text, with the suggestion
// in a grey span at the cursor. Suggestions are asked for when the cursor is at the end of
// a line, so the ghost never hides text that follows it.

const ghost = { text: "", at: -1, ctrl: null, timer: 0 };

function renderMirror() {
  const v = editor.value;
  mirror.replaceChildren();
  if (ghost.text && ghost.at >= 0) {
    mirror.append(v.slice(0, ghost.at));
    const span = el("span", "ghost", ghost.text);
    span.id = "ghost";
    mirror.append(span, v.slice(ghost.at));
  } else {
    mirror.append(v);
  }
  mirror.append("\n");
  // A suggestion that wraps below the visible text scrolls into view (the editor's bottom
  // padding leaves room for it).
  const span = document.getElementById("ghost");
  if (span) {
    const below = span.offsetTop + span.offsetHeight + 12 - (editor.scrollTop + editor.clientHeight);
    if (below > 0) editor.scrollTop += below;
  }
  mirror.scrollTop = editor.scrollTop;
}

function countWords() {
  const n = (editor.value.match(/\S+/g) || []).length;
  $("word-count").textContent = n === 1 ? "1 word" : `${n} words`;
}

function setHint(text) { $("suggest-status").textContent = text; }

function clearGhost() {
  if (ghost.ctrl) ghost.ctrl.abort();
  ghost.ctrl = null;
  ghost.text = "";
  ghost.at = -1;
  document.body.dataset.suggest = "idle";
  renderMirror();
}

function atLineEnd() {
  const p = editor.selectionStart;
  return p === editor.selectionEnd && (p === editor.value.length || editor.value[p] === "\n");
}

function scheduleSuggest() {
  clearTimeout(ghost.timer);
  ghost.timer = setTimeout(requestSuggestion, 150);
}

let askBusy = false;  // the local model answers one request at a time: no ghost text during an ask

async function requestSuggestion() {
  clearGhost();
  const text = editor.value, pos = editor.selectionStart;
  if (askBusy || !text.trim() || !atLineEnd()) return;
  const ctrl = new AbortController();
  ghost.ctrl = ctrl;
  ghost.at = pos;
  document.body.dataset.suggest = "streaming";
  const current = () => ghost.ctrl === ctrl && editor.value === text && editor.selectionStart === pos;
  try {
    await stream("/api/suggest", { document: text, cursor: utf8Length(text.slice(0, pos)), document_id: DOCUMENT_ID }, ctrl.signal,
      (name, data) => {
        if (!current()) return;
        if (name === "piece") {
          ghost.text += data.text;
          renderMirror();
        } else if (name === "done") {
          document.body.dataset.suggest = "done";
          setUsedNotes(data.memory);
          const s = data.stats;
          $("suggest-stats").textContent = data.cancelled ? "cancelled" :
            `${s.completion_tokens} tokens, first token ${fmt(s.ttft_ms, 1)} ms, ` +
            `${fmt(s.tokens_per_s, 0)} tok/s, ${s.reused_tokens} of ${s.prompt_tokens} prompt tokens reused, ` +
            `${data.memory.length} memory note(s)`;
          setHint(ghost.text ? "Tab takes the grey suggestion; Esc dismisses it." : "No suggestion here.");
        } else if (name === "error") {
          setHint("Suggestion failed: " + data.message);
        }
      });
  } catch (e) {
    if (e.name !== "AbortError") setHint("Suggestion failed: " + e.message);
  }
}

function acceptGhost() {
  const text = ghost.text, at = ghost.at;
  clearGhost();
  editor.setRangeText(text, at, at, "end");
  renderMirror();
  countWords();
  scheduleSuggest();
}

editor.addEventListener("keydown", (e) => {
  if (e.key === "Tab" && ghost.text && editor.selectionStart === ghost.at) {
    e.preventDefault();
    acceptGhost();
  } else if (e.key === "Escape") {
    clearTimeout(ghost.timer);
    clearGhost();
    api("/api/cancel", {}).catch(() => {});
  }
});
editor.addEventListener("input", () => { clearGhost(); countWords(); scheduleSuggest(); });
editor.addEventListener("scroll", () => { mirror.scrollTop = editor.scrollTop; });
document.addEventListener("selectionchange", () => {
  if (document.activeElement === editor && ghost.at >= 0 && editor.selectionStart !== ghost.at) clearGhost();
});

// ---- ask -----------------------------------------------------------------------------
// The answer streams into the panel; "Insert into draft" puts it at the draft's cursor (the
// textarea keeps its selection while the panel has focus) and closes the answer.

let askCtrl = null;

let modelsKey = "";
function describeModels(usage) {
  const key = `${usage.model} ${usage.model_is_chat}`;
  if (key === modelsKey) return;
  modelsKey = key;
  const about = $("ask-about");
  about.replaceChildren();
  const model = usage.model || "the local model";
  if (usage.model_is_chat) {
    about.append("Ask gives a model your request with the selected text (or the paragraph at the cursor). " +
      "Each answer names the model that wrote it.");
  } else {
    about.append("The demo models continue text; they do not follow instructions: an answer reads as more of " +
      "the selected text (or the paragraph at the cursor), not as a reply. Each answer names its model; the local one is ",
      el("b", "", model), ".");
  }
}

function insertIntoDraft(text) {
  const start = editor.selectionStart, end = editor.selectionEnd;
  const before = editor.value.slice(0, start);
  // Keep words apart: a space when the answer would run into the word before the cursor.
  const glue = before && !/\s$/.test(before) && !/^\s/.test(text) ? " " : "";
  clearGhost();
  editor.focus();
  editor.setSelectionRange(start, end);
  editor.setRangeText(glue + text, start, end, "end");
  renderMirror();
  countWords();
  scheduleSuggest();
}

$("ask-insert").addEventListener("click", () => {  // the answer goes into the draft; the panel closes
  const text = $("ask-answer").textContent;
  if (!text) return;
  insertIntoDraft(text.trim());
  $("ask-result").hidden = true;
});
$("ask-discard").addEventListener("click", () => {
  if (askCtrl) askCtrl.abort();
  $("ask-result").hidden = true;
  $("ask-answer").textContent = "";
});
$("ask-input").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey) {
    e.preventDefault();
    $("ask-form").requestSubmit();
  }
});

$("ask-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  if (askBusy && askCtrl) {  // the button reads "Stop" while an answer streams
    askCtrl.abort();
    return;
  }
  const instruction = $("ask-input").value.trim();
  if (!instruction) return;
  // The selection, or else the paragraph the cursor is in.
  let selection = editor.value.slice(editor.selectionStart, editor.selectionEnd);
  if (!selection) {
    const v = editor.value, p = editor.selectionStart;
    const from = v.lastIndexOf("\n\n", p - 1), to = v.indexOf("\n\n", p);
    selection = v.slice(from < 0 ? 0 : from + 2, to < 0 ? v.length : to);
  }
  const ctrl = askCtrl = new AbortController();
  const answer = $("ask-answer"), who = $("ask-who");
  $("ask-result").hidden = false;
  answer.textContent = "";
  who.textContent = "writing…";
  delete who.dataset.by;
  $("ask-insert").disabled = true;
  $("ask-button").textContent = "Stop";
  clearTimeout(ghost.timer);
  clearGhost();
  askBusy = true;
  try {
    await stream("/api/ask", { instruction, selection, private: $("ask-private").checked }, ctrl.signal,
      (name, data) => {
        if (name === "progress")  // the local model reading a long prompt
          who.textContent = data.done < data.total ? `reading: ${data.done} of ${data.total} prompt tokens` : "writing…";
        else if (name === "piece") answer.textContent += data.text;
        else if (name === "error") who.textContent = "failed: " + data.message;
        else if (name === "done") {
          who.replaceChildren();
          answer.textContent = data.text.trimStart();
          const by = el("span", "by " + data.answered_by, data.model || data.answered_by);
          by.id = "ask-model";
          who.append(by, data.answered_by === "cloud" ? " in the cloud" : " on this computer");
          if (data.cancelled) who.append(" (stopped)");
          // A base model can stop before its first word: say so rather than show a blank answer.
          else if (!data.text.trim()) who.append(el("span", "empty", " returned no text; ask again"));
          who.append(el("span", "why", "Why: " + data.reason));
          who.dataset.by = data.answered_by;
          refreshState();
        }
      });
  } catch (err) {
    if (err.name === "AbortError") who.textContent = "stopped";
    else who.textContent = "failed: " + err.message;
  } finally {
    if (askCtrl === ctrl) {
      askBusy = false;
      $("ask-button").textContent = "Ask";
      $("ask-insert").disabled = !answer.textContent.trim();
      scheduleSuggest();
    }
  }
});

// ---- diagnostics ---------------------------------------------------------------------

function setDiagnostics(open) {
  $("diagnostics").hidden = !open;
  $("diag-toggle").setAttribute("aria-expanded", String(open));
}
$("diag-toggle").addEventListener("click", () => setDiagnostics($("diagnostics").hidden));
$("diag-close").addEventListener("click", () => setDiagnostics(false));

let knobTouched = false;
const knob = $("knob");
knob.addEventListener("input", () => { knobTouched = true; $("knob-value").textContent = fmt(+knob.value, 2); });
knob.addEventListener("change", () => {
  api("/api/knob", { threshold: +knob.value })
    .then((r) => { $("knob-value").textContent = fmt(r.threshold, 2); })
    .catch((e) => { $("knob-value").textContent = "knob: " + e.message; });
});

function fillUsage(u) {
  const rows = [  // [id, label, value]
    ["suggestions", "suggestions", u.suggestions],
    ["asks", "asks: local / cloud", `${u.local_asks} / ${u.cloud_asks}`],
    ["tokens", "local tokens: prompt / completion", `${u.prompt_tokens} / ${u.completion_tokens}`],
    ["cloud-tokens", "cloud tokens: prompt / completion", `${u.cloud_prompt_tokens} / ${u.cloud_completion_tokens}`],
    ["ttft", "last first-token latency", fmt(u.last_ttft_ms, 1) + " ms"],
    ["speed", "last decode speed", fmt(u.last_tokens_per_s, 0) + " tok/s"],
    ["notes-stored", "memory notes stored", u.memory_notes],
  ];
  const t = $("usage");
  t.replaceChildren();
  for (const [id, k, v] of rows) {
    const tr = t.insertRow();
    tr.insertCell().textContent = k;
    const td = tr.insertCell();
    td.id = "usage-" + id;
    td.textContent = v;
  }
}

// Event kinds as a writer would name them (the API's names stay in the tooltip).
const EVENT_LABELS = {
  model_loaded: "Model loaded", gpu_not_used: "GPU not used", online: "Cloud online", offline: "Cloud offline",
  memory_updated: "Notes arrived", memory_unavailable: "Notes unavailable", memory_requested: "Notes requested",
  error: "Error", memory_applied: "Notes ready", memory_reset: "Notes replaced",
};

function addEvent(e) {
  const kind = e.kind.toLowerCase();
  const li = el("li");
  li.title = e.kind;
  li.append(el("span", "time", new Date().toLocaleTimeString()), el("span", "kind", EVENT_LABELS[kind] || e.kind),
    e.message);
  $("events").prepend(li);
  while ($("events").children.length > 50) $("events").lastChild.remove();
  if (kind === "online") setOnline(true);
  if (kind === "offline") setOnline(false);
  if (kind === "memory_updated" || kind === "memory_reset") refreshState();
}

// ---- state: online, model, usage, notes, knob ----------------------------------------

function setOnline(on) {
  const b = $("online");
  b.textContent = on ? "online" : "offline";
  b.className = "badge " + (on ? "online" : "offline");
}

// ---- the cloud's URL: shown in the top bar; click it to connect to a cloud that moved ----

function setCloud(url) {
  $("cloud").textContent = url || "no cloud";
  $("cloud").dataset.url = url || "";
}

function closeCloudForm() {
  $("cloud-form").hidden = true;
  $("cloud-error").hidden = true;
  $("cloud").hidden = false;
}

$("cloud").addEventListener("click", () => {
  $("cloud-input").value = $("cloud").dataset.url || "";
  $("cloud").hidden = true;
  $("cloud-error").hidden = true;
  $("cloud-form").hidden = false;
  $("cloud-input").focus();
  $("cloud-input").select();
});
$("cloud-input").addEventListener("keydown", (e) => { if (e.key === "Escape") closeCloudForm(); });
$("cloud-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  try {
    const r = await api("/api/cloud", { url: $("cloud-input").value.trim() });
    setCloud(r.cloud_url);
    closeCloudForm();
  } catch (err) {  // a malformed URL: the form stays open with the reason beside it
    $("cloud-error").textContent = err.message;
    $("cloud-error").title = err.message;
    $("cloud-error").hidden = false;
  }
});

async function refreshState() {
  try {
    const s = await api("/api/state");
    setOnline(s.online);
    setCloud(s.cloud_url);
    const u = s.usage;
    $("model-info").textContent = `${u.model || "?"} on the ${s.backend || "?"}` +
      (u.model_is_chat ? ", with a chat template" : ", a text-continuation model (no chat template)") +
      (s.privacy ? "; privacy mode: the cloud is never contacted" : "");
    describeModels(u);
    fillUsage(u);
    renderNotes(s.memory);
    knob.disabled = s.threshold < 0;  // no router: every ask goes to the cloud when it can
    if (s.threshold < 0) $("knob-value").textContent = "no router (--router)";
    if (!knobTouched && s.threshold >= 0) {
      knob.value = s.threshold;
      $("knob-value").textContent = fmt(s.threshold, 2);
    }
  } catch (e) {
    $("online").textContent = "tandem-compose is not answering";
    $("online").className = "badge offline";
  }
}

const events = new EventSource("/api/events?token=" + encodeURIComponent(TOKEN));
events.addEventListener("event", (m) => addEvent(JSON.parse(m.data)));

renderMirror();
countWords();
refreshState();
setInterval(refreshState, 1000);
editor.focus();
