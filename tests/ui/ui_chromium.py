"""The web UI driven as a user would, in headless Chromium (Playwright with the system browser).

Run by tests/ui.rs, which starts fastsmtpd with --api and passes: API base URL, SMTP host:port,
a directory for screenshots. Exit status 0 means every step held; any failure raises.

Steps: open the UI (empty list, live marker), send a message over SMTP and see it appear at
the top without a reload, send an HTML message carrying a script and a remote image and check
that neither runs nor loads, search in the query language, open a message and read its text,
headers, raw, envelope and SMTP transcript tabs, delete it, create a per-test mailbox and send
to its address (counted in the sidebar, clicking it shows only its mail), create 300 more
and page the sidebar (a page of 50, "More", the filter box; one refresh's octets against the
whole list's), and finish with no console error.
"""

import http.server
import json
import smtplib
import sys
import threading
import urllib.request
from email.message import EmailMessage
from pathlib import Path

from playwright.sync_api import expect, sync_playwright

base, smtp_addr, shots = sys.argv[1], sys.argv[2], Path(sys.argv[3])
smtp_host, smtp_port = smtp_addr.rsplit(":", 1)
shots.mkdir(parents=True, exist_ok=True)


def send(subject, rcpt, text, html=None):
    msg = EmailMessage()
    msg["From"] = "Sender <sender@example.com>"
    msg["To"] = rcpt
    msg["Subject"] = subject
    msg.set_content(text)
    if html is not None:
        msg.add_alternative(html, subtype="html")
    with smtplib.SMTP(smtp_host, int(smtp_port), timeout=10) as s:
        s.send_message(msg, from_addr="sender@example.com", to_addrs=[rcpt])


def api(path, body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, method="POST" if data else "GET")
    with urllib.request.urlopen(request, timeout=10) as r:
        return json.load(r)


class Beacon(http.server.BaseHTTPRequestHandler):
    """A server a message's remote image points at: any hit means remote content loaded."""

    hits = []

    def do_GET(self):
        Beacon.hits.append(self.path)
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


beacon = http.server.ThreadingHTTPServer(("127.0.0.2", 0), Beacon)
threading.Thread(target=beacon.serve_forever, daemon=True).start()
beacon_url = f"http://127.0.0.2:{beacon.server_address[1]}/beacon.png"

errors = []
remote = []
with sync_playwright() as p:
    browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    # The mail's own script and remote image are refused on purpose (sandbox, CSP): those
    # refusals are reported from the message's frame and are the point, not a fault of the UI.
    page.on(
        "console",
        lambda m: errors.append(m.text)
        if m.type == "error" and not m.location.get("url", "").startswith("about:srcdoc")
        else None,
    )
    page.on("pageerror", lambda e: errors.append(str(e)))
    origin = base.rstrip("/")
    # A request the browser completed to anywhere but this origin (a blocked one fails).
    page.on(
        "requestfinished",
        lambda r: remote.append(r.url)
        if not (r.url.startswith(origin) or r.url.startswith("data:") or r.url.startswith("about:"))
        else None,
    )

    # Every confirm() (the delete buttons) is accepted: one listener for the whole run (a
    # `once` per click raced: two listeners could see one dialog).
    page.on("dialog", lambda d: d.accept())
    page.goto(base + "/")
    expect(page.locator("#s-live")).to_have_text("live", timeout=10000)
    expect(page.locator(".row")).to_have_count(0)
    page.screenshot(path=str(shots / "1-empty.png"))

    # Mail arrives while the page is open: it appears at the top, no reload.
    send("Welcome, Alice", "alice@example.com", "Your code is 482913.\nhttps://example.com/verify?token=abc")
    expect(page.locator(".row").first).to_contain_text("Welcome, Alice", timeout=10000)
    send("Second <b>bold</b>", "bob@example.com", "plain", html=(
        "<p id=x>Hello <b>Bob</b></p>"
        "<script>parent.document.title='pwned';document.getElementById('x').textContent='ran'</script>"
        f"<img src='{beacon_url}'>"
    ))
    expect(page.locator(".row")).to_have_count(2, timeout=10000)
    expect(page.locator(".row").first).to_contain_text("Second")
    page.screenshot(path=str(shots / "2-live.png"))

    # The HTML view: rendered, sandboxed, no script, nothing remote.
    page.locator(".row").first.click()
    expect(page.locator("#v-subject")).to_have_text("Second <b>bold</b>")
    page.locator("#tabs button[data-tab=html]").click()
    frame = page.frame_locator("iframe.html")
    expect(frame.locator("#x")).to_have_text("Hello Bob")
    assert page.title() != "pwned", "script in the mail ran in the UI"
    assert page.locator("iframe.html").get_attribute("sandbox") == "", "the iframe is not fully sandboxed"
    page.screenshot(path=str(shots / "3-html.png"))

    # Search in the API's language: exact recipient.
    page.fill("#q", "rcpt:alice@example.com")
    page.press("#q", "Enter")
    expect(page.locator(".row")).to_have_count(1, timeout=10000)
    expect(page.locator(".row").first).to_contain_text("Welcome, Alice")
    page.locator(".row").first.click()
    page.locator("#tabs button[data-tab=text]").click()
    expect(page.locator("#tab-body pre")).to_contain_text("482913")
    page.locator("#tabs button[data-tab=raw]").click()
    expect(page.locator("#tab-body pre")).to_contain_text("Subject: Welcome, Alice")
    page.locator("#tabs button[data-tab=envelope]").click()
    expect(page.locator("#tab-body")).to_contain_text("alice@example.com")
    page.locator("#tabs button[data-tab=headers]").click()
    expect(page.locator("#tab-body")).to_contain_text("Subject")
    page.screenshot(path=str(shots / "4-search-open.png"))
    # smtplib speaks lower-case verbs ("rcpt TO:<...>"): the transcript shows them as sent.
    page.locator("#tabs button[data-tab=transcript]").click()
    expect(page.locator("#tab-body pre.transcript")).to_contain_text("TO:<alice@example.com>")
    expect(page.locator("#tab-body pre.transcript")).to_contain_text("C: [content: ")
    expect(page.locator("#tab-body pre.transcript")).to_contain_text("S: 250 2.0.0 Ok: queued as ")
    page.screenshot(path=str(shots / "4b-transcript.png"))

    # Delete it: gone from the list and from the API.
    page.locator("#delete-one").click()
    expect(page.locator(".row")).to_have_count(0, timeout=10000)
    page.press("#q", "Escape")
    expect(page.locator(".row")).to_have_count(1, timeout=10000)
    assert api("/api/v1/messages")["total"] == 1
    page.screenshot(path=str(shots / "5-deleted.png"))

    # "Delete all" in a search view deletes what the search matches, and says so.
    page.fill("#q", "rcpt:bob@example.com")
    page.press("#q", "Enter")
    expect(page.locator(".row")).to_have_count(1, timeout=10000)
    page.locator("#delete-all").click()
    expect(page.locator("#status")).to_have_text("deleted 1", timeout=10000)
    expect(page.locator(".row")).to_have_count(0)
    assert api("/api/v1/messages")["total"] == 0
    page.press("#q", "Escape")

    # A per-test mailbox: created over the API, shown in the sidebar with its count, and
    # clicking it shows its mail only.
    box = api("/api/v1/mailboxes", {"label": "signup test", "ttl": "10m"})
    send("Not in the box", "carol@example.com", "other")
    send("Your signup", box["address"], "welcome")
    entry = page.locator(f"#mailbox-list a[data-mailbox='{box['id']}']")
    expect(entry).to_contain_text("signup test", timeout=10000)
    expect(entry.locator(".count")).to_have_text("1", timeout=10000)
    expect(page.locator(".row")).to_have_count(2, timeout=10000)
    entry.click()
    expect(page.locator("#list-title")).to_have_text("Mailbox signup test")
    expect(page.locator(".row")).to_have_count(1, timeout=10000)
    expect(page.locator(".row").first).to_contain_text("Your signup")
    # Live: another message to the box appears; one elsewhere does not.
    send("Elsewhere again", "carol@example.com", "other")
    send("Your second signup mail", box["address"], "again")
    expect(page.locator(".row")).to_have_count(2, timeout=10000)
    expect(page.locator(".row").first).to_contain_text("Your second signup mail")
    expect(entry.locator(".count")).to_have_text("2", timeout=10000)
    page.screenshot(path=str(shots / "6-mailbox.png"))
    page.locator("#mailbox-list a[data-mailbox='']").click()
    expect(page.locator(".row")).to_have_count(4, timeout=10000)

    # Many mailboxes: the sidebar shows the newest page of 50 with a "More" button and a
    # filter box, and its refresh fetches only what it shows.
    for n in range(300):
        api("/api/v1/mailboxes", {"label": f"bulk {n:03}", "ttl": "10m"})
    boxes = page.locator("#mailbox-list li.mailbox")
    expect(page.locator("#mailbox-shown")).to_have_text("50 of 301 mailboxes", timeout=10000)
    expect(boxes).to_have_count(50)
    expect(boxes.first).to_contain_text("bulk 299")
    page.screenshot(path=str(shots / "7-many-mailboxes.png"))
    page.locator("#mailbox-more").click()
    expect(page.locator("#mailbox-shown")).to_have_text("100 of 301 mailboxes", timeout=10000)
    expect(boxes).to_have_count(100)
    expect(boxes.nth(99)).to_contain_text("bulk 200")
    page.fill("#mailbox-filter", "BULK 00")
    expect(page.locator("#mailbox-shown")).to_have_text("10 of 10 mailboxes", timeout=10000)
    expect(page.locator("#mailbox-more")).to_be_hidden()
    page.fill("#mailbox-filter", "")
    expect(page.locator("#mailbox-shown")).to_have_text("50 of 301 mailboxes", timeout=10000)
    # What one refresh fetches, against the whole list (what an unpaged refresh fetched).
    with page.expect_request(lambda r: "/api/v1/mailboxes?" in r.url, timeout=10000) as asked:
        pass
    with urllib.request.urlopen(asked.value.url, timeout=10) as r:
        refresh = len(r.read())
    whole, before = 0, ""
    while True:
        with urllib.request.urlopen(base + "/api/v1/mailboxes?limit=500" + before, timeout=10) as r:
            body = r.read()
        whole += len(body)
        nxt = json.loads(body)["next"]
        if nxt is None:
            break
        before = "&before=" + nxt
    print(f"ui: 301 mailboxes: one sidebar refresh {refresh} octets; the whole list {whole} octets")
    assert refresh * 4 < whole, (refresh, whole)
    browser.close()

assert not remote, f"the UI or a message loaded something remote: {remote}"
assert not Beacon.hits, f"a message's remote image was fetched: {Beacon.hits}"
assert not errors, f"console errors: {errors}"
print("ui: ok")
