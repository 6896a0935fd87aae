"""Two partner sites keep one shared address book in sync through the hub's partner data API and
its events, in a real browser with live processes (issue 8, "How it is checked", last bullet;
design flow 7; seed 003).

One person logs in at site A and (silently) at site B. Each site reads and writes the person's
address book with a client-credentials token of its own (``partner:read partner:write``, a data
contract reading and writing ``addresses`` with ``--subscribe``, set up by
``examples.demo_setup``), keeps a local copy with each entry's ETag and sends ``If-Match`` on every
change. A write at one site makes the hub queue a claims-changed Security Event Token for the
other; ``tessera worker`` pushes it to that site's ``/events``, and the site re-reads the book —
no polling of the hub. The sites are first-party (``trusted``): no ``partner`` consent is asked.

* an address added on A's page reaches B's local copy (through the SET);
* an edit on B's page reaches A;
* an edit submitted from A's page as it was *before* B's edit (the old ETag) is refused by the
  hub (412): A shows the conflict and the current version, and nothing is overwritten;
* a delete on A's page removes the entry from B's copy.
"""

from __future__ import annotations

import requests
from playwright.sync_api import Page, expect

from tests.e2e.test_merge import create_account, log_in, poll, silent_sub

PERSON = {"phone": "+14155550171", "password": "address-book-password-1", "name": "Lin Addresses"}
SYNC_TIMEOUT = 10.0


def local_book(site, sub: str) -> dict:
    """The site's local copy of ``sub``'s address book (``/debug/addresses``: no hub call)."""
    response = requests.get(f"{site.url}/debug/addresses", params={"sub": sub}, timeout=5)
    response.raise_for_status()
    return response.json()


def entry_of(book: dict, address_id: str) -> dict | None:
    return next((e for e in book["entries"] if e["id"] == address_id), None)


def wait_for(site, sub: str, check, what: str, deployment) -> dict:
    """Poll the site's local copy until ``check(book)`` holds; the book, or a failure with logs."""
    book = poll(lambda: (lambda b: b if check(b) else None)(local_book(site, sub)), SYNC_TIMEOUT)
    assert book, (f"{site.name}: {what} not seen within {SYNC_TIMEOUT} s; local copy: {local_book(site, sub)}\n"
                  + deployment.logs())
    return book


def last_event_refresh(book: dict) -> dict | None:
    return next((h for h in reversed(book["history"]) if h["how"] == "event"), None)


def open_book(page: Page, site) -> None:
    page.goto(site.url + "/addresses")
    expect(page.locator("#address-book")).to_be_visible()
    expect(page.locator("#address-book-error")).to_have_count(0)


def entry_item(page: Page, address_id: str):
    return page.locator(f'li.address[data-id="{address_id}"]')


def submit_edit(page: Page, address_id: str, **values) -> None:
    item = entry_item(page, address_id)
    item.locator("summary").click()
    form = item.locator("form.edit-address")
    for name, value in values.items():
        form.locator(f"input[name={name}]").fill(value)
    form.locator("button.save-address").click()
    page.wait_for_load_state()


def test_two_sites_keep_one_address_book_in_sync(deployment, context):
    a, b, issuer = deployment.sites["a"], deployment.sites["b"], deployment.issuer
    create_account(deployment, PERSON)

    # 1. the person logs in at A, then (silently) at B: two tabs of one browser
    page_a = context.new_page()
    sub_a = log_in(page_a, a, issuer, PERSON["phone"], PERSON["password"])
    page_b = context.new_page()
    sub_b = silent_sub(page_b, b)
    assert sub_a != sub_b  # pairwise: two tenants, two sectors

    # both open the shared address book: empty, each site now holds a local copy
    open_book(page_a, a)
    open_book(page_b, b)
    expect(page_a.locator("#no-addresses")).to_be_visible()
    expect(page_b.locator("#no-addresses")).to_be_visible()
    assert local_book(b, sub_b)["entries"] == []

    # 2. add at A (A's page) → B's local copy has it, re-read because of the hub's SET
    form = page_a.locator("#add-address")
    form.locator("input[name=label]").fill("Home")
    form.locator("input[name=street_address]").fill("1 Harbour Road")
    form.locator("input[name=locality]").fill("Hong Kong")
    form.locator("input[name=country]").fill("HK")
    form.locator("#add-address-button").click()
    expect(page_a.locator("#address-notice")).to_have_text("Address added.")
    expect(page_a.locator("li.address")).to_have_count(1)
    expect(page_a.locator("li.address .address-label")).to_have_text("Home")
    [added] = local_book(a, sub_a)["entries"]
    address_id, first_etag = added["id"], added["etag"]
    assert added["provenance"]["client_id"] == a.client_id

    book_b = wait_for(b, sub_b, lambda bk: entry_of(bk, address_id) is not None, "A's new address", deployment)
    seen = entry_of(book_b, address_id)
    assert (seen["label"], seen["street_address"], seen["locality"], seen["etag"]) == \
        ("Home", "1 Harbour Road", "Hong Kong", first_etag)
    event = last_event_refresh(book_b)
    assert event is not None and event.get("jti") and event["count"] == 1, book_b["history"]
    page_b.reload()
    expect(entry_item(page_b, address_id).locator(".address-text")).to_contain_text("1 Harbour Road")

    # 3. edit at B (B's page) → A's local copy has the edit
    submit_edit(page_b, address_id, street_address="2 Harbour Road", postal_code="999077")
    expect(page_b.locator("#address-notice")).to_have_text("Address saved.")
    expect(entry_item(page_b, address_id).locator(".address-text")).to_contain_text("2 Harbour Road")
    second_etag = entry_of(local_book(b, sub_b), address_id)["etag"]
    assert second_etag != first_etag

    book_a = wait_for(a, sub_a, lambda bk: (entry_of(bk, address_id) or {}).get("etag") == second_etag,
                      "B's edit", deployment)
    edited = entry_of(book_a, address_id)
    assert (edited["street_address"], edited["postal_code"], edited["label"]) == ("2 Harbour Road", "999077", "Home")
    assert edited["provenance"]["client_id"] == b.client_id
    assert last_event_refresh(book_a) is not None, book_a["history"]

    # 4. a stale write: A's tab still shows the entry as it was before B's edit (the old ETag in
    # its form). Submitting an edit from it is refused by the hub; A shows the conflict and the
    # current version; nothing is overwritten.
    assert entry_item(page_a, address_id).get_attribute("data-etag") == first_etag
    submit_edit(page_a, address_id, label="Stale label", street_address="99 Old Street")
    conflict = page_a.locator("#address-conflict")
    expect(conflict).to_be_visible()
    expect(conflict).to_have_attribute("data-reason", "etag_mismatch")
    expect(conflict).to_contain_text("was changed elsewhere")
    expect(conflict).to_contain_text("99 Old Street")  # the change that was not applied
    expect(entry_item(page_a, address_id).locator(".address-text")).to_contain_text("2 Harbour Road")
    expect(entry_item(page_a, address_id)).to_have_attribute("data-etag", second_etag)
    expect(entry_item(page_a, address_id).locator(".address-label")).to_have_text("Home")
    book_a = local_book(a, sub_a)
    [refused] = book_a["conflicts"]
    assert (refused["status"], refused["reason"], refused["sent_etag"]) == (412, "etag_mismatch", first_etag)
    assert entry_of(book_a, address_id)["street_address"] == "2 Harbour Road"
    # B re-reads to be sure the hub kept B's version (its copy is refreshed from the hub here)
    open_book(page_b, b)
    page_b.locator("#refresh-addresses").click()
    expect(page_b.locator("#address-notice")).to_have_text("Address refreshed.")
    kept = entry_of(local_book(b, sub_b), address_id)
    assert (kept["etag"], kept["street_address"], kept["label"]) == (second_etag, "2 Harbour Road", "Home")

    # 5. delete at A (its page now shows the current version) → gone at B
    before = len(local_book(b, sub_b)["history"])
    entry_item(page_a, address_id).locator("button.delete-address-button").click()
    expect(page_a.locator("#address-notice")).to_have_text("Address deleted.")
    expect(page_a.locator("#no-addresses")).to_be_visible()
    assert local_book(a, sub_a)["entries"] == []

    book_b = wait_for(b, sub_b, lambda bk: entry_of(bk, address_id) is None, "A's delete", deployment)
    assert book_b["entries"] == []
    assert any(h["how"] == "event" for h in book_b["history"][before:]), book_b["history"]
    page_b.reload()
    expect(page_b.locator("#no-addresses")).to_be_visible()
