// The composition assistant's page: plain JS, no framework, nothing loaded from the network.
// The API is described in examples/composition_assistant/api.h; every call carries the
// per-run token from this page's URL.
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

const utf8Length = (s) => new TextEncoder().encode(s).length;
const fmt = (x, digits) => (typeof x === "number" ? x.toFixed(digits) : "-");

function noteItem(n) {
  const li = document.createElement("li");
  const text = document.createElement("span");
  text.className = "text";
  text.textContent = n.text;
  text.title = n.text;
  li.appendChild(text);
  const src = document.createElement("span");
  src.className = "src";
  src.textContent = "source: " + (n.title || n.doc_id || "unknown");
  li.appendChild(src);
  return li;
}

function fillNotes(list, notes, emptyText) {
  const seen = new Set();  // two requests can bring back the same passage: show it once
  notes = notes.filter((n) => !seen.has(n.text) && seen.add(n.text));
  list.replaceChildren();
  if (!notes.length) {
    const li = document.createElement("li");
    li.className = "empty";
    li.textContent = emptyText;
    list.appendChild(li);
  }
  for (const n of notes) list.appendChild(noteItem(n));
  return notes.length;
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
    const span = document.createElement("span");
    span.id = "ghost";
    span.className = "ghost";
    span.textContent = ghost.text;
    mirror.append(span, v.slice(ghost.at));
  } else {
    mirror.append(v);
  }
  mirror.append("\n");
  mirror.scrollTop = editor.scrollTop;
}

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
    await stream("/api/suggest", { document: text, cursor: utf8Length(text.slice(0, pos)) }, ctrl.signal,
      (name, data) => {
        if (!current()) return;
        if (name === "piece") {
          ghost.text += data.text;
          renderMirror();
        } else if (name === "done") {
          document.body.dataset.suggest = "done";
          fillNotes($("notes-used"), data.memory, "No memory notes were in this suggestion's prompt.");
          const s = data.stats;
          $("suggest-status").textContent = data.cancelled ? "suggestion cancelled" :
            `suggestion: ${s.completion_tokens} tokens, first token ${fmt(s.ttft_ms, 1)} ms, ` +
            `${fmt(s.tokens_per_s, 0)} tok/s, ${s.reused_tokens}/${s.prompt_tokens} prompt tokens reused, ` +
            `${data.memory.length} memory note(s) — Tab accepts`;
        } else if (name === "error") {
          $("suggest-status").textContent = "suggestion failed: " + data.message;
        }
      });
  } catch (e) {
    if (e.name !== "AbortError") $("suggest-status").textContent = "suggestion failed: " + e.message;
  }
}

function acceptGhost() {
  const text = ghost.text, at = ghost.at;
  clearGhost();
  editor.setRangeText(text, at, at, "end");
  renderMirror();
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
editor.addEventListener("input", () => { clearGhost(); scheduleSuggest(); });
editor.addEventListener("scroll", () => { mirror.scrollTop = editor.scrollTop; });
document.addEventListener("selectionchange", () => {
  if (document.activeElement === editor && ghost.at >= 0 && editor.selectionStart !== ghost.at) clearGhost();
});

// ---- ask -----------------------------------------------------------------------------

let askCtrl = null;
$("ask-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const instruction = $("ask-input").value.trim();
  if (!instruction) return;
  // The selection, or else the paragraph the cursor is in.
  let selection = editor.value.slice(editor.selectionStart, editor.selectionEnd);
  if (!selection) {
    const v = editor.value, p = editor.selectionStart;
    const from = v.lastIndexOf("\n\n", p - 1), to = v.indexOf("\n\n", p);
    selection = v.slice(from < 0 ? 0 : from + 2, to < 0 ? v.length : to);
  }
  if (askCtrl) askCtrl.abort();
  const ctrl = askCtrl = new AbortController();
  const answer = $("ask-answer"), who = $("ask-who");
  answer.textContent = "";
  who.textContent = "thinking…";
  delete who.dataset.by;
  clearTimeout(ghost.timer);
  clearGhost();
  askBusy = true;
  try {
    await stream("/api/ask", { instruction, selection, private: $("ask-private").checked }, ctrl.signal,
      (name, data) => {
        if (name === "piece") answer.textContent += data.text;
        else if (name === "error") who.textContent = "failed: " + data.message;
        else if (name === "done") {
          answer.textContent = data.text;
          who.replaceChildren();
          const by = document.createElement("span");
          by.className = "by " + data.answered_by;
          by.textContent = data.answered_by === "cloud" ? "answered by the cloud" : "answered locally";
          who.append(by, ": " + data.reason);
          if (data.cancelled) who.append(" (interrupted)");
          if (data.score >= 0) who.append(` (router score ${fmt(data.score, 2)} vs threshold ${fmt(data.threshold, 2)})`);
          who.dataset.by = data.answered_by;
          refreshState();
        }
      });
  } catch (err) {
    if (err.name !== "AbortError") who.textContent = "failed: " + err.message;
  } finally {
    if (askCtrl === ctrl) {
      askBusy = false;
      scheduleSuggest();
    }
  }
});

// ---- state: online, usage, memory, knob ----------------------------------------------

function setOnline(on) {
  const b = $("online");
  b.textContent = on ? "online" : "offline";
  b.className = "badge " + (on ? "online" : "offline");
}

let knobTouched = false;
const knob = $("knob");
knob.addEventListener("input", () => { knobTouched = true; $("knob-value").textContent = fmt(+knob.value, 2); });
knob.addEventListener("change", () => {
  api("/api/knob", { threshold: +knob.value })
    .then((r) => { $("knob-value").textContent = fmt(r.threshold, 2); })
    .catch((e) => { $("suggest-status").textContent = "knob: " + e.message; });
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

async function refreshState() {
  try {
    const s = await api("/api/state");
    setOnline(s.online);
    $("backend").textContent = "local model on " + (s.backend || "?") + (s.privacy ? " · private" : "");
    fillUsage(s.usage);
    $("notes-count").textContent =
      fillNotes($("notes-all"), s.memory, "None yet: notes arrive from the cloud as you write.");
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

function addEvent(e) {
  const li = document.createElement("li");
  const k = document.createElement("span");
  k.className = "kind";
  k.textContent = e.kind;
  li.append(k, e.message);
  $("events").prepend(li);
  while ($("events").children.length > 30) $("events").lastChild.remove();
  const kind = e.kind.toLowerCase().replace(/[_ -]/g, "");  // "MemoryUpdated", "memory_updated"
  if (kind === "online") setOnline(true);
  if (kind === "offline") setOnline(false);
  if (kind === "memoryupdated") refreshState();
}

const events = new EventSource("/api/events?token=" + encodeURIComponent(TOKEN));
events.addEventListener("event", (m) => addEvent(JSON.parse(m.data)));

renderMirror();
refreshState();
setInterval(refreshState, 1000);
editor.focus();
