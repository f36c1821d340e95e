// Drives fastsmtpd's Mailpit-compatible API with the real `mailpit-api` client (pinned in
// package.json) and replays cypress-mailpit's own HTTP calls with fetch.
// Usage: node compat.mjs BASE_URL (e.g. http://127.0.0.1:PORT/compat/mailpit), after
// tests/mailpit_compat.rs sent three messages over SMTP, in this order:
//   A: "Welcome Alpha" to jane@, cc cc@, text + HTML + attachment a.txt
//   B: "Reset Beta" to bob@, text only
//   C: "Welcome Gamma" to jane@, and an envelope-only recipient hidden@
// Exits non-zero at the first failed assertion.
import assert from "node:assert/strict";
import { MailpitClient } from "mailpit-api";

const base = process.argv[2];
assert.ok(base, "usage: node compat.mjs BASE_URL");
const mp = new MailpitClient(base);
const step = (name) => console.log(`- ${name}`);

async function rejects(promise, status) {
  await assert.rejects(promise, (e) => {
    assert.match(String(e.message), new RegExp(`\\b${status}\\b`));
    return true;
  });
}

step("waitForMessages sees the three messages");
await mp.waitForMessages({ count: 3 }, { timeout: 30000, interval: 100 });

step("list: MessagesSummary shape, newest first");
let list = await mp.listMessages();
assert.equal(list.total, 3);
assert.equal(list.messages_count, 3);
assert.equal(list.count, 3);
assert.equal(list.unread, 3);
assert.equal(list.messages_unread, 3);
assert.equal(list.start, 0);
assert.deepEqual(list.tags, []);
const [C, B, A] = list.messages;
assert.deepEqual(
  list.messages.map((m) => m.Subject),
  ["Welcome Gamma", "Reset Beta", "Welcome Alpha"],
);
for (const m of list.messages) {
  assert.equal(typeof m.ID, "string");
  assert.match(m.ID, /^[A-Za-z0-9._-]+$/);
  assert.equal(m.Read, false);
  assert.equal(m.From.Address, "shop@example.test");
  assert.equal(m.From.Name, "Shop");
  for (const k of ["To", "Cc", "Bcc", "ReplyTo", "Tags"]) assert.ok(Array.isArray(m[k]), k);
  assert.ok(!Number.isNaN(Date.parse(m.Created)));
  assert.ok(m.Size > 0);
  assert.equal(typeof m.Attachments, "number");
  assert.equal(typeof m.Snippet, "string");
  assert.equal(m.Username, "");
}
assert.equal(A.MessageID, "alpha@example.test");
assert.equal(A.To[0].Address, "jane@example.test");
assert.equal(A.Cc[0].Address, "cc@example.test");
assert.equal(A.Attachments, 1);
assert.match(A.Snippet, /Hello Jane/);
assert.equal(B.Attachments, 0);
assert.deepEqual(C.Bcc, [{ Name: "", Address: "hidden@example.test" }]);
assert.deepEqual(A.Bcc, []);

step("list: start and limit");
list = await mp.listMessages(1, 1);
assert.equal(list.messages.length, 1);
assert.equal(list.messages[0].ID, B.ID);
assert.equal(list.start, 1);
assert.equal(list.messages_count, 3);
list = await mp.listMessages(0, 0); // 0: every message, as Mailpit's list
assert.equal(list.messages.length, 3);

step("search");
let found = await mp.searchMessages({ query: "subject:Welcome" });
assert.equal(found.messages_count, 2);
assert.equal(found.total, 3);
assert.deepEqual(found.messages.map((m) => m.ID), [C.ID, A.ID]);
found = await mp.searchMessages({ query: "to:bob@example.test" });
assert.equal(found.messages_count, 1);
assert.equal(found.messages[0].ID, B.ID);
found = await mp.searchMessages({ query: "from:shop" });
assert.equal(found.messages_count, 3);
found = await mp.searchMessages({ query: "welcome jane" });
assert.equal(found.messages_count, 2);
found = await mp.searchMessages({ query: "subject:Welcome", limit: 1 });
assert.equal(found.messages.length, 1);
assert.equal(found.messages_count, 2);
found = await mp.searchMessages({ query: "subject:Welcome", start: 1, limit: 5 });
assert.deepEqual(found.messages.map((m) => m.ID), [A.ID]);
found = await mp.searchMessages({ query: 'subject:"welcome alpha"' });
assert.equal(found.messages_count, 1);
found = await mp.searchMessages({ query: "message-id:alpha@example.test" });
assert.equal(found.messages_count, 1);
found = await mp.searchMessages({ query: "cc:cc@example.test" });
assert.equal(found.messages_count, 1);
found = await mp.searchMessages({ query: "nothing-like-this" });
assert.equal(found.messages_count, 0);
assert.deepEqual(found.messages, []);
await rejects(mp.searchMessages({ query: "" }), 400);
await rejects(mp.searchMessages({ query: "-subject:Welcome" }), 400);
await rejects(mp.searchMessages({ query: "is:unread" }), 400);

step("waitForMessage returns the full Message");
const b = await mp.waitForMessage({ query: "subject:Reset" }, { timeout: 30000, interval: 100 });
assert.equal(b.ID, B.ID);
assert.match(b.Text, /code is 123456/);
assert.equal(b.HTML, "");

step("message by id: the Message shape");
const a = await mp.getMessageSummary(A.ID);
assert.equal(a.ID, A.ID);
assert.equal(a.MessageID, "alpha@example.test");
assert.equal(a.Subject, "Welcome Alpha");
assert.deepEqual(a.From, { Name: "Shop", Address: "shop@example.test" });
assert.deepEqual(a.To, [{ Name: "Jane Doe", Address: "jane@example.test" }]);
assert.equal(a.Cc[0].Address, "cc@example.test");
assert.deepEqual(a.ReplyTo, [{ Name: "", Address: "help@example.test" }]);
assert.equal(a.ReturnPath, "bounce@example.test");
assert.match(a.Text, /Hello Jane/);
assert.match(a.HTML, /<b>Hello Jane<\/b>/);
assert.equal(a.Attachments.length, 1);
const file = a.Attachments[0];
assert.equal(file.FileName, "a.txt");
assert.equal(typeof file.PartID, "string");
assert.match(file.ContentType, /^text\/plain/);
assert.equal(file.Size, 14);
assert.match(file.Checksums.SHA256, /^[0-9a-f]{64}$/);
assert.ok(Array.isArray(a.Inline));
assert.deepEqual(a.Tags, []);
assert.equal(Date.parse(a.Date), Date.parse("2026-12-06T17:43:01Z"));
assert.ok(Array.isArray(a.ListUnsubscribe.Links));
assert.deepEqual(a.ListUnsubscribe.Links, ["mailto:unsub@example.test", "https://example.test/u"]);
assert.equal(a.Size, A.Size);

step("latest");
const latest = await mp.getMessageSummary();
assert.equal(latest.ID, C.ID);
assert.deepEqual(latest.Bcc, [{ Name: "", Address: "hidden@example.test" }]);

step("raw");
const raw = await mp.getMessageSource(A.ID);
assert.match(raw, /Subject: Welcome Alpha\r\n/);
assert.ok(!raw.includes("Bcc:"), "the raw bytes are as received");
assert.match(await mp.getMessageSource(), /Welcome Gamma/);

step("headers");
const headers = await mp.getMessageHeaders(A.ID);
assert.deepEqual(headers.Subject, ["Welcome Alpha"]);
assert.deepEqual(headers["Message-Id"], ["<alpha@example.test>"]);
assert.deepEqual(headers["X-Folded"], ["one two"]);
assert.deepEqual(Object.keys(headers), Object.keys(headers).slice().sort());

step("errors");
await rejects(mp.getMessageSummary("does-not-exist"), 404);
await rejects(mp.getMessageSource("no/such"), 404);

step("read status: accepted, not kept");
assert.equal(await mp.setReadStatus({ IDs: [A.ID], Read: true }), "ok");
await rejects(mp.setReadStatus({ IDs: [A.ID], Search: "x", Read: true }), 400);

step("view: cypress-mailpit's //view/ID.html and .txt, renderMessage*");
let response = await fetch(`${base}//view/${A.ID}.html`);
assert.equal(response.status, 200);
assert.match(response.headers.get("content-type"), /^text\/html/);
assert.match(response.headers.get("content-security-policy"), /sandbox/);
assert.match(await response.text(), /<b>Hello Jane<\/b>/);
response = await fetch(`${base}//view/${B.ID}.txt`);
assert.equal(response.status, 200);
assert.match(await response.text(), /code is 123456/);
assert.equal((await fetch(`${base}/view/${B.ID}.html`)).status, 404);
assert.match(await mp.renderMessageText(B.ID), /code is 123456/);

step("cypress-mailpit's calls, replayed");
response = await fetch(`${base}/api/v1/messages?start=0&limit=50`);
assert.equal(response.status, 200);
assert.equal(response.headers.get("content-type"), "application/json");
response = await fetch(`${base}/api/v1/search?query=subject%3AWelcome&start=0&limit=50`);
assert.equal((await response.json()).messages_count, 2);
response = await fetch(`${base}/api/v1/message/latest`);
assert.equal((await response.json()).ID, C.ID);
response = await fetch(`${base}/api/v1/messages`, { method: "POST" });
assert.equal(response.status, 405);
response = await fetch(`${base}/api/v1/nothing`);
assert.equal(response.status, 404);
assert.equal(await response.text(), "404 page not found");
// The server answers 413 as soon as the body passes its bound and closes the connection:
// a client still writing may see the reset before it reads the 413. Either way, nothing is
// deleted.
try {
  response = await fetch(`${base}/api/v1/messages`, {
    method: "DELETE",
    body: "x".repeat(2 << 20),
  });
  assert.equal(response.status, 413);
} catch (error) {
  assert.match(String(error.cause ?? error), /ECONNRESET|EPIPE|other side closed|SocketError|UND_ERR/);
}
assert.equal((await mp.listMessages()).total, 3, "an oversized body deletes nothing");

step("a base URL with a trailing slash works the same");
const slash = new MailpitClient(`${base}/`);
assert.equal((await slash.listMessages()).total, 3);

step("delete by ids (an unknown id is ignored)");
assert.equal(await mp.deleteMessages({ IDs: [B.ID, "unknown-id"] }), "ok");
assert.equal((await mp.listMessages()).total, 2);

step("delete by search");
assert.equal(await mp.deleteMessagesBySearch({ query: "subject:Gamma" }), "ok");
list = await mp.listMessages();
assert.equal(list.total, 1);
assert.equal(list.messages[0].ID, A.ID);
await rejects(mp.deleteMessagesBySearch({ query: " " }), 400);

step("delete all");
assert.equal(await mp.deleteMessages(), "ok");
await mp.waitForMessages({ count: 0 }, { timeout: 30000, interval: 100 });
await rejects(mp.getMessageSummary(), 404);
console.log("ok: mailpit-api 2.1.0 against", base);
