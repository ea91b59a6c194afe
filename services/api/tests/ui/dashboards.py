"""The dashboards in Debian's Chromium, driven by Playwright (run by services/api/tests/ui_it.rs).

Environment: CT_UI_URL (the read API), CT_EDGE_URL and CT_HMAC_SECRET (to post an event during
the test), CT_SCREENSHOTS (folder), CT_AS_OF (a time after the golden dataset). Exits non-zero
with a message on the first failed check; prints the measured timings.
"""

import hashlib
import hmac
import json
import os
import shutil
import sys
import time
import urllib.parse
import urllib.request
import uuid

from playwright.sync_api import expect, sync_playwright

UI = os.environ["CT_UI_URL"]
EDGE = os.environ["CT_EDGE_URL"]
SECRET = os.environ["CT_HMAC_SECRET"]
SHOTS = os.environ["CT_SCREENSHOTS"]
AS_OF = os.environ["CT_AS_OF"]
AT = "as_of=" + urllib.parse.quote(AS_OF)

expect.set_options(timeout=10_000)


# The page being checked: on a failure its HTML and a screenshot are saved for the reader.
CURRENT = {}


def check(condition, message):
    if not condition:
        print(f"FAILED: {message}", file=sys.stderr)
        page = CURRENT.get("page")
        if page is not None:
            print(f"at {page.url}; see failure.html and failure.png in {SHOTS}", file=sys.stderr)
            with open(os.path.join(SHOTS, "failure.html"), "w", encoding="utf-8") as out:
                out.write(page.content())
            page.screenshot(path=os.path.join(SHOTS, "failure.png"), full_page=True)
        sys.exit(1)


def shot(page, name):
    page.screenshot(path=os.path.join(SHOTS, f"{name}.png"), full_page=True)


def post_event(event):
    body = json.dumps(event).encode()
    signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    request = urllib.request.Request(
        EDGE + "/events",
        data=body,
        method="POST",
        headers={
            "authorization": f"Bearer dev-token-{event['source']}",
            "x-ct-signature": signature,
            "content-type": "application/json",
        },
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        check(response.status == 202, f"the edge answered {response.status}")


def sign_in(page, token):
    page.goto(UI + "/ui/status")
    check("/ui/login" in page.url, f"an anonymous page should go to sign-in, went to {page.url}")
    page.fill("input[name=token]", token)
    page.click("button[type=submit]")
    page.wait_for_url("**/ui/status")


def main():
    chromium = shutil.which("chromium")
    check(chromium, "Debian's chromium is not installed (deploy/bootstrap.sh installs it)")
    requests = []
    timings = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        context = browser.new_context(viewport={"width": 1360, "height": 900})
        context.on("request", lambda r: requests.append(r.url))
        page = context.new_page()
        CURRENT["page"] = page

        # Sign-in: a wrong token is refused with a message, the right one sets the session.
        page.goto(UI + "/ui/login")
        shot(page, "login")
        page.fill("input[name=token]", "not-a-token")
        page.click("button[type=submit]")
        expect(page.locator("p.error")).to_have_text("unknown token")
        sign_in(page, "dev-token-maintainer")
        cookie = next(c for c in context.cookies() if c["name"] == "ct_session")
        check(cookie["httpOnly"] and cookie["sameSite"] == "Strict", f"session cookie flags: {cookie}")

        # Executive status at the end of the dataset: one card per system, not all unknown.
        started = time.monotonic()
        page.goto(f"{UI}/ui/status?{AT}&range=7d")
        timings["status first render (load event) ms"] = round((time.monotonic() - started) * 1000)
        cards = page.locator("article.card")
        check(cards.count() >= 5, f"status cards: {cards.count()}")
        statuses = [cards.nth(i).get_attribute("data-status") for i in range(cards.count())]
        check(any(s != "unknown" for s in statuses), f"every system unknown at {AS_OF}: {statuses}")
        check(page.locator("svg.timeline rect").count() >= cards.count(), "a timeline per system")
        shot(page, "status")
        # Time travel: before the first tick nothing was evaluated.
        page.goto(f"{UI}/ui/status?as_of=2025-09-21T12:00:00Z")
        early = [cards.nth(i).get_attribute("data-status") for i in range(cards.count())]
        check(all(s == "unknown" for s in early), f"before any tick the systems were {early}")
        check(early != statuses, "as_of did not change what the status page shows")
        expect(page.locator(".scrubber .travel")).to_contain_text("2025-09-21 12:00 UTC")

        # Event stream: the table, the filters, the drill-down.
        page.goto(f"{UI}/ui/events?{AT}")
        all_rows = page.locator("table.events tbody tr[data-event]").count()
        check(all_rows == 50, f"the first page of events has {all_rows} rows")
        check(page.locator("a.next").count() == 1, "no link to older events")
        page.select_option("select[name=source]", "finance")
        page.click("form.filters button[type=submit]")
        page.wait_for_url("**source=finance**")
        sources = page.locator("table.events tbody tr[data-event] td:nth-child(3)").all_inner_texts()
        check(sources and set(sources) == {"finance"}, f"the finance filter shows {set(sources)}")
        page.goto(f"{UI}/ui/events?{AT}&type=ci.workflow.failed")
        failed = page.locator("table.events tbody tr[data-event]").count()
        check(0 < failed < all_rows, f"the type filter shows {failed} rows")
        shot(page, "events")
        first = page.locator("table.events tbody tr[data-event] a").first
        event_id = first.inner_text()
        first.click()
        expect(page.locator("h1")).to_contain_text(event_id)
        expect(page.locator("pre.payload")).to_contain_text("repo")
        shot(page, "event")

        # Live tail: an event posted now appears while the stream is filtered to its source.
        page.goto(f"{UI}/ui/events?source=portal")
        page.wait_for_selector("section.tail[data-state=open]")
        page.wait_for_timeout(700)  # the poller's first read marks where "new" begins
        fresh = f"evt_ui_{uuid.uuid4().hex[:12]}"
        other = f"evt_ui_other_{uuid.uuid4().hex[:8]}"
        post_event({"eventId": other, "type": "website.form.submitted", "source": "website",
                    "ts": "2025-09-25T09:30:00Z", "payload": {"formId": "contact", "name": "A. Person", "email": "a@example.com"}})
        posted = time.monotonic()
        post_event({"eventId": fresh, "type": "portal.upload.received", "source": "portal",
                    "ts": "2025-09-25T09:30:00Z",
                    "payload": {"contentType": "application/pdf", "contractorId": "C0001",
                                "fileName": "t.pdf", "fileRef": "gs://ct-uploads/C0001/t.pdf",
                                "sizeBytes": 1024}})
        page.wait_for_selector(f".tail-rows tr[data-event='{fresh}']", timeout=10_000)
        timings["202 to visible in the live tail ms"] = round((time.monotonic() - posted) * 1000)
        check(page.locator(f".tail-rows tr[data-event='{other}']").count() == 0,
              "the filtered tail showed another source's event")

        # Runs, finance, CI, exceptions, reports.
        page.goto(f"{UI}/ui/runs?{AT}")
        expect(page.locator(".success-rate")).to_contain_text("%")
        check(page.locator("table.produced tbody tr[data-status]").count() > 10, "producer runs listed")
        check(page.locator("form.trigger").count() >= 1, "the maintainer sees the trigger forms")
        shot(page, "runs")
        # Trigger an allow-listed action from the page: a bad input is refused naming the field,
        # then the run is requested and gets a page of its own.
        form = page.locator("form.trigger[data-trigger='portal.notify.retry']")
        form.locator("textarea[name=inputs]").fill("{}")
        form.locator("button").click()
        expect(form.locator("output")).to_contain_text("422")
        expect(form.locator("output")).to_contain_text("uploadId")
        form.locator("textarea[name=inputs]").fill('{"uploadId": "u-ui-1"}')
        form.locator("input[name=reason]").fill("browser test")
        form.locator("button").click()
        expect(form.locator("output")).to_have_class("result ok")
        answer = form.locator("output").inner_text()
        run_id = answer.split()[1].rstrip(":")
        check(run_id.startswith("run_"), f"the trigger answered {answer!r}")
        for _ in range(40):
            response = page.goto(f"{UI}/ui/runs/{run_id}")
            if response.status == 200:
                break
            page.wait_for_timeout(250)
        expect(page.locator("h1")).to_contain_text(run_id)
        expect(page.locator("dl.facts")).to_contain_text("browser test")
        page.goto(f"{UI}/ui/finance?{AT}")
        check(int(page.locator("strong.generated").inner_text()) > 0, "no invoice generated")
        check(page.locator("strong.days-to-pay").inner_text() != "–", "no average days to pay")
        shot(page, "finance")
        page.goto(f"{UI}/ui/ci?{AT}")
        check(page.locator("table.ci tbody tr[data-repo]").count() >= 1, "no repo with failures")
        shot(page, "ci")
        page.goto(f"{UI}/ui/exceptions")
        check(int(page.locator("strong.parked").inner_text()) >= 1, "no parked dead letter")
        page.locator("table.items a").first.click()
        expect(page.locator("pre.plan")).to_contain_text("replay 1 item(s) (dry run)")
        shot(page, "exception")
        page.goto(f"{UI}/ui/exceptions")
        shot(page, "exceptions")
        page.goto(f"{UI}/ui/reports?{AT}")
        expect(page.locator("article.markdown")).to_contain_text("2025-09-24")
        check(page.locator("ul.history li a").count() >= 2, "the digest history lists the days")
        shot(page, "reports")

        # Bad input: a clear error page naming the parameter.
        response = page.goto(f"{UI}/ui/events?as_of=yesterday")
        check(response.status == 400, f"a bad as_of answered {response.status}")
        expect(page.locator("p.error")).to_have_attribute("data-field", "as_of")

        # Sign out: the session is gone.
        page.goto(f"{UI}/ui/status")
        page.click("form.who button")
        page.wait_for_url("**/ui/login")
        page.goto(f"{UI}/ui/events")
        check("/ui/login" in page.url, "after signing out a page still opened")

        # A viewer: event metadata, never a payload, and no dead-letter items.
        viewer = browser.new_context()
        viewer.on("request", lambda r: requests.append(r.url))
        vpage = viewer.new_page()
        CURRENT["page"] = vpage
        sign_in(vpage, "dev-token-viewer")
        vpage.goto(f"{UI}/ui/events/{urllib.parse.quote(event_id)}?{AT}")
        check(vpage.locator("pre.payload").count() == 0, "a viewer saw a payload")
        expect(vpage.locator("p.hidden-payload")).to_be_visible()
        check("ci.example" not in vpage.content(), "a viewer saw the payload's run URL")
        vpage.goto(f"{UI}/ui/exceptions?{AT}")
        check(vpage.locator("table.items").count() == 0, "a viewer saw dead letters")
        check(vpage.locator("form.trigger").count() == 0, "a viewer saw trigger forms")
        browser.close()

    hosts = {urllib.parse.urlsplit(u).hostname for u in requests}
    check(hosts == {"127.0.0.1"}, f"the browser asked other hosts: {sorted(hosts)}")
    print(json.dumps({"requests": len(requests), "hosts": sorted(hosts), **timings}))


if __name__ == "__main__":
    main()
