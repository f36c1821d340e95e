// fastsmtpd's web UI: a view over the capture API (/api/v1), nothing more.
//
// What it does: lists kept messages newest first, paged on the server (`next` cursors) and
// virtualised (only the rows in sight exist in the DOM); inserts new mail live from the event
// stream (/api/v1/events), coalesced into one update per animation frame and never a refetch;
// searches in the API's query language; shows one message (HTML in a sandboxed iframe that
// cannot run script and loads nothing remote, text, headers, raw, envelope,
// attachments, links and codes, the SMTP transcript); a status strip from /api/v1/stats; a
// sidebar of per-test mailboxes with counts (/api/v1/mailboxes: the first page, newest
// first, more on request, a filter box; refreshed at most twice a second while mail arrives,
// only the mailboxes shown), clicking one filters the list to its mail.
//
// What it does not do: parse mail (the server does), keep state across reloads, or fetch a
// link found in a message. It needs no network beyond this origin: every asset is served by
// fastsmtpd from the binary.
"use strict";

const ROW = 52; // px, the height of one list row (app.css --row)
const PAGE = 100; // messages per list request (the API allows up to 500)
const OVERSCAN = 8; // rows rendered beyond the visible ones, each side
const RAW_SHOWN = 1 << 20; // octets of a raw message shown inline; the rest is a download

const $ = (id) => document.getElementById(id);

// An API token, if the server wants one: `?token=` once, then kept for this tab only.
const token = (() => {
  const url = new URL(location.href);
  const given = url.searchParams.get("token");
  if (given) {
    sessionStorage.setItem("fastsmtpd-token", given);
    url.searchParams.delete("token");
    history.replaceState(null, "", url);
  }
  return sessionStorage.getItem("fastsmtpd-token");
})();

function headers(extra) {
  const h = Object.assign({}, extra || {});
  if (token) h.Authorization = "Bearer " + token;
  return h;
}

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function api(path, options) {
  const opts = Object.assign({}, options || {});
  opts.headers = headers(opts.headers);
  const response = await fetch(path, opts);
  const type = response.headers.get("content-type") || "";
  const body = type.includes("json") ? await response.json() : await response.text();
  if (!response.ok) {
    const message = body && body.error ? body.error.message : String(body || response.statusText);
    throw new ApiError(response.status, message);
  }
  return body;
}

function say(text) {
  $("status").textContent = text || "";
  $("status").title = text || "";
}

// ---------------------------------------------------------------------------------------
// The list: what is loaded (newest first), and the window of it that is rendered.

const state = {
  query: "", // the search in force ("" = all mail)
  mailbox: "", // the mailbox shown ("" = all mail)
  mailboxLabel: "", // its label or id, for the title
  items: [], // summaries loaded, newest first
  next: null, // cursor for the next older page, null when all are loaded
  total: 0, // how many match in all (the server's count)
  loading: false,
  selected: null, // id of the message shown
  head: "0", // the newest cursor seen (events resume after it)
  generation: 0, // bumped on every reload, so a late page of an old list is dropped
  unseen: 0, // live arrivals not shown because a search is in force
};

function listPath(before) {
  const params = new URLSearchParams({ limit: String(PAGE) });
  if (before) params.set("before", before);
  if (state.query) {
    params.set("q", (state.mailbox ? `mailbox:${state.mailbox} ` : "") + state.query);
    return "/api/v1/search?" + params;
  }
  if (state.mailbox) params.set("mailbox", state.mailbox);
  return "/api/v1/messages?" + params;
}

async function reload() {
  const generation = ++state.generation;
  state.loading = true;
  try {
    const page = await api(listPath(null));
    if (generation !== state.generation) return;
    state.items = page.messages;
    state.next = page.next;
    state.total = page.total ?? page.messages.length;
    state.unseen = 0;
    $("q").classList.remove("bad");
    say("");
    if (!state.query && page.messages.length) noteHead(page.messages[0].seq);
  } catch (error) {
    if (generation !== state.generation) return;
    if (state.mailbox && (error.status === 404 || error.status === 410)) {
      // The mailbox expired or was deleted: back to all mail.
      showMailbox("", "");
      say(error.message);
      return;
    }
    if (error.status === 400) $("q").classList.add("bad");
    say(error.message);
    state.items = [];
    state.next = null;
    state.total = 0;
  } finally {
    if (generation === state.generation) state.loading = false;
  }
  $("list").scrollTop = 0;
  renderList(true);
}

async function loadMore() {
  if (state.loading || !state.next) return;
  const generation = state.generation;
  state.loading = true;
  try {
    const page = await api(listPath(state.next));
    if (generation !== state.generation) return;
    const last = state.items.length ? state.items[state.items.length - 1].seq : Infinity;
    // Pages never shift, but a deletion between two requests must not duplicate a row.
    state.items.push(...page.messages.filter((m) => Number(m.seq) < Number(last)));
    state.next = page.next;
  } catch (error) {
    say(error.message);
  } finally {
    if (generation === state.generation) state.loading = false;
  }
  renderList(true);
}

function when(iso) {
  const at = new Date(iso);
  const today = new Date();
  return at.toDateString() === today.toDateString()
    ? at.toLocaleTimeString()
    : at.toLocaleDateString() + " " + at.toLocaleTimeString();
}

function firstRecipient(m) {
  const rcpt = m.rcpt_to || (m.envelope && m.envelope.rcpt_to) || [];
  return rcpt.length ? rcpt[0] : "";
}

function rowFor(m, index, fresh) {
  const row = document.createElement("div");
  row.className = "row" + (m.id === state.selected ? " selected" : "") + (fresh ? " fresh" : "");
  row.style.top = index * ROW + "px";
  row.setAttribute("role", "option");
  row.dataset.id = m.id;
  const who = document.createElement("div");
  who.className = "who";
  const from = document.createElement("span");
  from.textContent = (m.from || m.mail_from || "<>") + " → " + (m.to || firstRecipient(m));
  const at = document.createElement("span");
  at.className = "when";
  at.textContent = when(m.received_at);
  who.append(from, at);
  const subject = document.createElement("div");
  subject.className = "subj";
  subject.textContent = m.subject || "(no subject)";
  row.append(who, subject);
  return row;
}

let freshSeqs = new Set();

function renderList() {
  const list = $("list");
  const spacer = $("list-spacer");
  spacer.style.height = (state.items.length + (state.next ? 1 : 0)) * ROW + "px";
  const first = Math.max(0, Math.floor(list.scrollTop / ROW) - OVERSCAN);
  const last = Math.min(
    state.items.length,
    Math.ceil((list.scrollTop + list.clientHeight) / ROW) + OVERSCAN
  );
  for (const row of list.querySelectorAll(".row")) row.remove();
  const rows = document.createDocumentFragment();
  for (let i = first; i < last; i++) {
    const m = state.items[i];
    rows.append(rowFor(m, i, freshSeqs.has(m.seq)));
  }
  list.append(rows);
  freshSeqs = new Set();
  if (!state.mailbox) $("count-all").textContent = state.query ? "" : String(state.total);
  const where = state.mailbox ? `Mailbox ${state.mailboxLabel}` : "All mail";
  $("list-title").textContent = state.query ? `Search: ${state.total} found` : where;
  const banner = $("new-banner");
  banner.hidden = state.unseen === 0;
  banner.textContent = `${state.unseen} new: show`;
  if (last >= state.items.length - OVERSCAN && state.next) loadMore();
}

$("list").addEventListener("scroll", () => requestAnimationFrame(renderList));
window.addEventListener("resize", () => requestAnimationFrame(renderList));

$("list").addEventListener("click", (event) => {
  const row = event.target.closest(".row");
  if (row) open(row.dataset.id);
});

$("list").addEventListener("keydown", (event) => {
  if (event.key !== "ArrowDown" && event.key !== "ArrowUp") return;
  event.preventDefault();
  const at = state.items.findIndex((m) => m.id === state.selected);
  const to = Math.max(0, Math.min(state.items.length - 1, at + (event.key === "ArrowDown" ? 1 : -1)));
  if (state.items[to]) {
    open(state.items[to].id);
    const list = $("list");
    const top = to * ROW;
    if (top < list.scrollTop) list.scrollTop = top;
    else if (top + ROW > list.scrollTop + list.clientHeight) list.scrollTop = top + ROW - list.clientHeight;
  }
});

$("search").addEventListener("submit", (event) => {
  event.preventDefault();
  state.query = $("q").value.trim();
  reload();
});
$("q").addEventListener("keydown", (event) => {
  if (event.key === "Escape") {
    $("q").value = "";
    state.query = "";
    reload();
  }
});
$("new-banner").addEventListener("click", reload);

$("delete-all").addEventListener("click", async () => {
  const what = state.query ? `every message matching “${state.query}”` : "every message";
  if (!confirm(`Delete ${what}?`)) return;
  try {
    const path = state.query
      ? "/api/v1/search?" +
        new URLSearchParams({ q: (state.mailbox ? `mailbox:${state.mailbox} ` : "") + state.query })
      : state.mailbox
        ? "/api/v1/messages?" + new URLSearchParams({ mailbox: state.mailbox })
        : "/api/v1/messages";
    const done = await api(path, { method: "DELETE" });
    await reload();
    say(`deleted ${done.deleted}`);
  } catch (error) {
    say(error.message); // kept on screen: the list is not reloaded over it
  }
});

// ---------------------------------------------------------------------------------------
// Live insertion from the event stream: events are gathered and applied once per frame.

let pending = [];
let scheduled = false;

function noteHead(seq) {
  if (Number(seq) > Number(state.head)) state.head = String(seq);
}

function applyPending() {
  scheduled = false;
  const batch = pending;
  pending = [];
  let added = 0;
  const newest = state.items.length ? Number(state.items[0].seq) : 0;
  const fresh = [];
  if (batch.some((e) => e.type !== "lagged")) refreshMailboxesSoon();
  for (const event of batch) {
    if (event.type === "message") {
      if (state.mailbox && !(event.data.mailboxes || []).includes(state.mailbox)) {
        continue; // another mailbox's mail
      } else if (state.query) {
        state.unseen += 1;
      } else if (Number(event.data.seq) > newest) {
        fresh.push(event.data);
      }
    } else if (event.type === "removed") {
      const gone = new Set((event.data.seqs || []).map(String));
      const before = state.items.length;
      const selected = state.items.find((m) => m.id === state.selected);
      state.items = state.items.filter((m) => !gone.has(String(m.seq)));
      state.total -= before - state.items.length;
      if (selected && gone.has(String(selected.seq))) closeView();
    } else if (event.type === "lagged" || event.type === "gone-lagged") {
      // Events were missed (the stream fell behind the oldest kept message): the one case
      // where the list is fetched again.
      reload();
      return;
    }
  }
  if (fresh.length) {
    fresh.sort((a, b) => Number(b.seq) - Number(a.seq));
    for (const m of fresh) freshSeqs.add(m.seq);
    state.items.unshift(...fresh);
    state.total += fresh.length;
    added = fresh.length;
  }
  const list = $("list");
  // Keep what the reader is looking at in place when they have scrolled down.
  if (added && list.scrollTop > 0) list.scrollTop += added * ROW;
  renderList();
}

function queue(type, data) {
  pending.push({ type, data });
  if (!scheduled) {
    scheduled = true;
    requestAnimationFrame(applyPending);
  }
}

// Server-sent events read with fetch (EventSource cannot send the Authorization header),
// resumed from the last id seen after a broken connection.
async function stream() {
  let delay = 500;
  for (;;) {
    try {
      const response = await fetch("/api/v1/events?after=" + encodeURIComponent(state.head), {
        headers: headers({ Accept: "text/event-stream" }),
      });
      if (!response.ok) throw new ApiError(response.status, await response.text());
      live(true);
      delay = 500;
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          dispatch(buffer.slice(0, end));
          buffer = buffer.slice(end + 2);
        }
      }
    } catch (error) {
      if (error.status === 401) say("the API wants a token: open this page with ?token=…");
    }
    live(false);
    await new Promise((resolve) => setTimeout(resolve, delay));
    delay = Math.min(delay * 2, 10000);
  }
}

function dispatch(block) {
  let type = "message";
  let id = null;
  const data = [];
  for (const line of block.split("\n")) {
    if (line.startsWith(":")) continue; // a heartbeat
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (field === "event") type = value;
    else if (field === "data") data.push(value);
    else if (field === "id") id = value;
  }
  if (id !== null && type === "message") noteHead(id);
  if (!data.length) return;
  let parsed;
  try {
    parsed = JSON.parse(data.join("\n"));
  } catch {
    return;
  }
  if (type === "reset") {
    // The server restarted (its numbering starts again): what is listed is gone.
    state.head = "0";
    queue("lagged", parsed);
    return;
  }
  if (type === "gone") {
    // {seq, at, reason}: evicted, expired, mailbox_expired or deleted
    queue("removed", { seqs: [parsed.seq] });
  } else {
    queue(type, parsed);
  }
}

function live(on) {
  const el = $("s-live");
  el.textContent = on ? "live" : "reconnecting…";
  el.classList.toggle("off", !on);
}

// ---------------------------------------------------------------------------------------
// One message.

let shown = null; // the message JSON shown
let blobs = []; // object URLs made for downloads, revoked when another message opens

function closeView() {
  state.selected = null;
  shown = null;
  $("view").hidden = true;
  $("empty").hidden = false;
  renderList();
}

function dl(pairs) {
  const list = $("v-summary");
  list.replaceChildren();
  for (const [name, value] of pairs) {
    if (value === undefined || value === null || value === "") continue;
    const dt = document.createElement("dt");
    dt.textContent = name;
    const dd = document.createElement("dd");
    dd.textContent = Array.isArray(value) ? value.join(", ") : String(value);
    list.append(dt, dd);
  }
}

async function open(id) {
  state.selected = id;
  renderList();
  for (const url of blobs) URL.revokeObjectURL(url);
  blobs = [];
  let message;
  try {
    message = await api("/api/v1/messages/" + encodeURIComponent(id));
  } catch (error) {
    say(error.status === 410 ? `${id}: ${error.message}` : error.message);
    return;
  }
  if (state.selected !== id) return;
  shown = message;
  const h = message.headers || {};
  const env = message.envelope || {};
  $("empty").hidden = true;
  $("view").hidden = false;
  $("v-subject").textContent = h.subject || "(no subject)";
  dl([
    ["From", h.from],
    ["To", h.to],
    ["Cc", h.cc],
    ["Date", h.date],
    ["Envelope", `${env.mail_from || "<>"} → ${(env.rcpt_to || []).join(", ")}`],
    ["Received", when(message.received_at)],
    ["Size", `${message.size} octets`],
    ["Id", message.id],
  ]);
  tab(message.html ? "html" : "text");
}

async function downloadRaw(event) {
  event.preventDefault();
  if (!shown) return;
  const blob = await fetchBlob(`/api/v1/messages/${encodeURIComponent(shown.id)}/raw`);
  if (!blob) return;
  const a = document.createElement("a");
  a.href = remember(URL.createObjectURL(blob));
  a.download = shown.id + ".eml";
  a.click();
}
$("download-raw").addEventListener("click", downloadRaw);

function remember(url) {
  blobs.push(url);
  return url;
}

async function fetchBlob(path) {
  try {
    const response = await fetch(path, { headers: headers() });
    if (!response.ok) throw new ApiError(response.status, await response.text());
    return await response.blob();
  } catch (error) {
    say(error.message);
    return null;
  }
}

function pre(text) {
  const el = document.createElement("pre");
  el.textContent = text;
  return el;
}

function table(rows) {
  const t = document.createElement("table");
  t.className = "kv";
  for (const [k, v] of rows) {
    const tr = t.insertRow();
    tr.insertCell().textContent = k;
    tr.insertCell().textContent = v === null || v === undefined ? "" : String(v);
  }
  return t;
}

function muted(text) {
  const p = document.createElement("p");
  p.className = "muted";
  p.textContent = text;
  return p;
}

async function tab(name) {
  for (const b of $("tabs").querySelectorAll("button")) {
    b.setAttribute("aria-selected", String(b.dataset.tab === name));
  }
  const body = $("tab-body");
  body.replaceChildren();
  const m = shown;
  if (!m) return;
  const base = "/api/v1/messages/" + encodeURIComponent(m.id);
  if (name === "html") {
    if (!m.html) return body.append(muted("This message has no HTML part."));
    // The HTML runs in a sandbox with no permissions at all (no script, no forms, no
    // top navigation, an opaque origin), and this page's CSP, which a srcdoc document
    // inherits, blocks every remote load: remote content stays off.
    const frame = document.createElement("iframe");
    frame.className = "html";
    frame.setAttribute("sandbox", "");
    frame.setAttribute("referrerpolicy", "no-referrer");
    frame.srcdoc = m.html;
    body.append(frame);
  } else if (name === "text") {
    body.append(m.text ? pre(m.text) : muted("This message has no text part."));
  } else if (name === "headers") {
    const list = m.header_fields || [];
    if (list.length) body.append(table(list.map((f) => [f.name, f.value])));
    else body.append(table(Object.entries(m.headers || {})));
  } else if (name === "raw") {
    const blob = await fetchBlob(base + "/raw");
    if (!blob || shown !== m) return;
    const text = await blob.slice(0, RAW_SHOWN).text();
    body.append(pre(text));
    if (blob.size > RAW_SHOWN) body.append(muted(`First ${RAW_SHOWN} of ${blob.size} octets: download the rest.`));
  } else if (name === "envelope") {
    const e = m.envelope || {};
    body.append(
      table([
        ["MAIL FROM", `<${e.mail_from || ""}> ${e.mail_params || ""}`],
        ...(e.rcpt_to || []).map((r, i) => [`RCPT TO ${i + 1}`, `<${r}>`]),
        ["HELO", e.helo],
        ["Client", e.client],
        ["TLS", e.tls ? `${e.tls.version} ${e.tls.cipher}` : "no"],
        ["AUTH user", e.auth_user || "none"],
        ["Received", m.received_at],
      ])
    );
  } else if (name === "parts") {
    const parts = (m.parts || []).filter((p) => p.filename || p.disposition === "attachment");
    if (!parts.length) return body.append(muted("No attachments."));
    const ul = document.createElement("ul");
    for (const p of parts) {
      const li = document.createElement("li");
      const b = document.createElement("button");
      b.textContent = `${p.filename || "part " + p.number} (${p.content_type}, ${p.size} octets)`;
      b.addEventListener("click", async () => {
        const blob = await fetchBlob(`${base}/parts/${p.number}`);
        if (!blob) return;
        const a = document.createElement("a");
        a.href = remember(URL.createObjectURL(blob));
        a.download = p.filename || `part-${p.number}`;
        a.click();
      });
      li.append(b);
      ul.append(li);
    }
    body.append(ul);
  } else if (name === "transcript") {
    // The SMTP dialogue as the server recorded it (content and AUTH secrets never are).
    // A message seeded over HTTP (no client) has none: say so without asking (a 404 would
    // show as an error in the browser's console).
    if (m.envelope && m.envelope.client == null) {
      body.append(muted("This message was seeded over HTTP (POST /api/v1/messages): it has no SMTP transcript."));
      return;
    }
    let text;
    try {
      text = await api(base + "/transcript");
    } catch (error) {
      if (shown === m) body.append(muted(error.message));
      return;
    }
    if (shown !== m) return;
    const el = pre(text);
    el.className = "transcript";
    body.append(el);
  } else if (name === "links") {
    let found;
    try {
      found = await api(base + "/links");
    } catch (error) {
      return body.append(muted(error.message));
    }
    if (shown !== m) return;
    for (const code of found.codes || []) {
      const c = document.createElement("p");
      c.className = "code";
      c.textContent = code.code || code;
      body.append(c);
    }
    const ul = document.createElement("ul");
    for (const link of found.links || []) {
      const li = document.createElement("li");
      const a = document.createElement("a");
      const url = link.url || link;
      a.textContent = url;
      // Only web links are made clickable, opened without a referrer; the server never
      // fetches them.
      if (/^https?:\/\//i.test(url)) {
        a.href = url;
        a.target = "_blank";
        a.rel = "noopener noreferrer";
      }
      li.append(a);
      ul.append(li);
    }
    if (!(found.links || []).length && !(found.codes || []).length) body.append(muted("No links or codes found."));
    body.append(ul);
  }
}

$("tabs").addEventListener("click", (event) => {
  const b = event.target.closest("button");
  if (b) tab(b.dataset.tab);
});

$("delete-one").addEventListener("click", async () => {
  if (!shown) return;
  // The event stream's `gone` may close the view before the DELETE answers.
  const message = shown;
  try {
    await api("/api/v1/messages/" + encodeURIComponent(message.id), { method: "DELETE" });
  } catch (error) {
    say(error.message);
  }
  queue("removed", { seqs: [message.seq] });
});

$("copy-await").addEventListener("click", async () => {
  if (!shown) return;
  const rcpt = firstRecipient(shown);
  const params = new URLSearchParams({ rcpt, after: state.head, timeout: "30s" });
  const auth = token ? ` -H "Authorization: Bearer $FASTSMTPD_API_TOKEN"` : "";
  const command = `curl -fsS${auth} '${location.origin}/api/v1/await?${params}'`;
  try {
    await navigator.clipboard.writeText(command);
    say("copied: " + command);
  } catch {
    prompt("Copy this command:", command);
  }
});

// ---------------------------------------------------------------------------------------
// The mailbox sidebar: "All mail" and the newest live per-test mailboxes with their counts,
// a page at a time (the API pages them: with 10 000 mailboxes a refresh still fetches only
// the ones shown), a "More" button for the next page and a filter box (the API's q=).

const BOX_PAGE = 50; // mailboxes per page
const BOX_MAX = 500; // the most shown at once (the API's largest page): past it, filter
const boxes = { shown: BOX_PAGE, filter: "" };
let mailboxTimer = null;

// Refreshes the sidebar at most once per half second however fast mail arrives.
function refreshMailboxesSoon() {
  if (mailboxTimer === null) mailboxTimer = setTimeout(refreshMailboxes, 500);
}

async function refreshMailboxes() {
  mailboxTimer = null;
  let answer;
  const params = new URLSearchParams({ limit: String(boxes.shown) });
  if (boxes.filter) params.set("q", boxes.filter);
  try {
    answer = await api("/api/v1/mailboxes?" + params);
  } catch {
    return; // the sidebar keeps what it shows; the live marker says when the server is gone
  }
  const list = $("mailbox-list");
  for (const item of list.querySelectorAll("li.mailbox")) item.remove();
  const items = document.createDocumentFragment();
  for (const m of answer.mailboxes) {
    const li = document.createElement("li");
    li.className = "mailbox";
    const a = document.createElement("a");
    a.href = "#";
    a.dataset.mailbox = m.id;
    a.title = (m.address || m.route.type) + " (expires " + when(m.expires_at) + ")";
    if (m.id === state.mailbox) a.className = "current";
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = m.label || m.id;
    const count = document.createElement("span");
    count.className = "count";
    count.textContent = String(m.count);
    a.append(name, count);
    li.append(a);
    items.append(li);
  }
  list.append(items);
  const shown = answer.mailboxes.length;
  $("mailbox-shown").textContent =
    answer.total === 0 ? (boxes.filter ? "no mailbox matches" : "") : `${shown} of ${answer.total} mailboxes`;
  $("mailbox-more").hidden = !answer.next || boxes.shown >= BOX_MAX;
  if (state.mailbox && !answer.mailboxes.some((m) => m.id === state.mailbox)) {
    // Not on the page shown: ask for it alone, back to all mail if it ended.
    try {
      await api("/api/v1/mailboxes/" + encodeURIComponent(state.mailbox));
    } catch (error) {
      if (error.status === 404 || error.status === 410) showMailbox("", "");
    }
  }
}

$("mailbox-more").addEventListener("click", () => {
  boxes.shown = Math.min(BOX_MAX, boxes.shown + BOX_PAGE);
  refreshMailboxes();
});

let filterTimer = null;
$("mailbox-filter").addEventListener("input", () => {
  clearTimeout(filterTimer);
  filterTimer = setTimeout(() => {
    boxes.filter = $("mailbox-filter").value.trim();
    boxes.shown = BOX_PAGE;
    refreshMailboxes();
  }, 250);
});

function showMailbox(id, label) {
  state.mailbox = id;
  state.mailboxLabel = label;
  for (const a of $("mailbox-list").querySelectorAll("a")) {
    a.classList.toggle("current", a.dataset.mailbox === id);
  }
  closeView();
  reload();
}

$("mailbox-list").addEventListener("click", (event) => {
  const a = event.target.closest("a");
  if (!a) return;
  event.preventDefault();
  const name = a.querySelector(".name");
  showMailbox(a.dataset.mailbox, name ? name.textContent : "");
});

// ---------------------------------------------------------------------------------------
// The status strip.

let lastStats = null;

async function stats() {
  try {
    const s = await api("/api/v1/stats");
    const now = performance.now();
    if (lastStats) {
      const rate = ((s.accepted_total - lastStats.s.accepted_total) * 1000) / (now - lastStats.at);
      $("s-rate").textContent = `${Math.max(0, rate).toFixed(rate < 10 ? 1 : 0)} msgs/s`;
    }
    lastStats = { s, at: now };
    const mib = (n) => (n / 1048576).toFixed(1) + " MiB";
    $("s-bytes").textContent = `${mib(s.bytes)} of ${mib(s.budget_bytes)} kept (${s.messages} messages)`;
    $("s-evicted").textContent = `${s.evicted} evicted`;
    $("s-waiters").textContent = `${s.waiters} waiting`;
    // In a mailbox's view the list's total is the mailbox's: "All mail" counts from here.
    if (state.mailbox) $("count-all").textContent = String(s.messages);
  } catch {
    // the strip keeps its last figures; the live marker says when the server is gone
  }
}

reload().then(() => stream());
stats();
refreshMailboxes();
setInterval(stats, 2000);
// Mailboxes created or expired without mail arriving show within a few seconds.
setInterval(refreshMailboxesSoon, 3000);
