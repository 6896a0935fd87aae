"""The admin console's merges, imports and upstreams pages through HTTP: each page and action
(audited with the admin as actor), a service's refusal shown as a message (never a 500), and the
role and reach refusals — support neither retries nor cancels merges nor sees imports, a tenant
admin sees only its tenant's imports and its people's merges, an auditor cannot disable upstreams."""

from __future__ import annotations

import json
import re

from app.merging.requests import request_merge
from app.worker import run_once
from tests.bulk_import.test_import import rec, write_jsonl
from tests.conftest import ISSUER
from tests.rp import Browser, RelyingParty, authorize, code_from, csrf_token


def _text(response) -> str:
    return response.get_data(as_text=True)


def _cli(app, *args: str):
    result = app.test_cli_runner().invoke(args=list(args))
    assert result.exit_code == 0, (args, result.output, result.exception)
    return result


def _requested(app, survivor_id: int, absorbed_id: int) -> int:
    with app.app_context():
        return request_merge(survivor_id, absorbed_id, origin="operator", reason="same person").id


def _worker_round(app) -> None:
    with app.app_context():
        run_once()


def _status(page: str, dd_id: str) -> str:
    return re.search(rf'<dd id="{dd_id}">([^<]*)</dd>', page).group(1)


def _uses_a_site_of(app, tenant_site, account) -> None:
    """The person logs in at a site of the tenant: they are related to the tenant."""
    browser = Browser(app.test_client(), ISSUER)
    rp = RelyingParty(browser.http, ISSUER, tenant_site.client_id, tenant_site.client_secret, tenant_site.redirect_uri)
    request, response = authorize(browser, rp, account)
    assert rp.exchange(code_from(response, request), request).status_code == 200


# --- merges --------------------------------------------------------------------------------------

def test_super_admin_retries_a_failed_merge_and_cancels_a_pending_one(app, operator, factories):
    op = operator("super")
    survivor, absorbed = factories.account(), factories.account()
    merge_id = _requested(app, survivor.id, absorbed.id)
    person = f"/admin/people/{absorbed.id}"
    assert op.post_form(person, f"{person}/lock", {"reason": "support call"}).status_code == 303
    _worker_round(app)  # the merge runs, finds the absorbed account locked: failed

    listed = _text(op.get("/admin/merges?status=failed"))
    assert f'href="/admin/merges/{merge_id}"' in listed
    assert f'href="/admin/merges/{merge_id}"' not in _text(op.get("/admin/merges?status=completed"))
    assert f'href="/admin/merges/{merge_id}"' in _text(op.get(f"/admin/merges?person={survivor.id}"))
    # the person page links its merges
    assert f'href="/admin/merges/{merge_id}"' in _text(op.get(f"/admin/people/{survivor.id}"))

    page = _text(op.get(f"/admin/merges/{merge_id}"))
    assert _status(page, "merge-status") == "failed" and "absorbed_not_active" in page
    assert 'value="Retry"' in page and "Cancel merge" not in page
    assert '<pre class="json">' in page and '"failure"' in page

    # still locked: the service refuses, the page says why (no 500)
    refused = op.post_form(f"/admin/merges/{merge_id}", f"/admin/merges/{merge_id}/retry")
    assert refused.status_code == 303
    page = _text(op.get(f"/admin/merges/{merge_id}"))
    assert "would fail again" in page and 'role="alert"' in page and _status(page, "merge-status") == "failed"

    assert op.post_form(person, f"{person}/unlock").status_code == 303
    assert op.post_form(f"/admin/merges/{merge_id}", f"/admin/merges/{merge_id}/retry").status_code == 303
    page = _text(op.get(f"/admin/merges/{merge_id}"))
    assert "is queued again" in page and _status(page, "merge-status") == "pending"
    assert 'value="Retry"' not in page and "Cancel merge" in page and 'name="reason"' in page

    # cancelling needs a reason
    op.post_form(f"/admin/merges/{merge_id}", f"/admin/merges/{merge_id}/cancel", {"reason": "  "})
    page = _text(op.get(f"/admin/merges/{merge_id}"))
    assert "a reason is required" in page and _status(page, "merge-status") == "pending"
    assert op.post_form(f"/admin/merges/{merge_id}", f"/admin/merges/{merge_id}/cancel",
                        {"reason": "not the same person"}).status_code == 303
    page = _text(op.get(f"/admin/merges/{merge_id}"))
    assert f"Merge {merge_id} cancelled." in page and _status(page, "merge-status") == "cancelled"
    assert "Cancel merge" not in page and 'value="Retry"' not in page

    # a cancelled merge is neither retried nor cancelled again: a message, never a 500
    again = op.post_form(f"/admin/merges/{merge_id}", f"/admin/merges/{merge_id}/cancel", {"reason": "twice"})
    assert again.status_code == 303
    assert "only a pending merge can be cancelled" in _text(op.get(f"/admin/merges/{merge_id}"))
    op.post_form(f"/admin/merges/{merge_id}", f"/admin/merges/{merge_id}/retry")
    assert "only a failed merge can be retried" in _text(op.get(f"/admin/merges/{merge_id}"))

    audit_page = _text(op.get(f"/admin/audit?kind=merge.*&actor=admin:{op.account.id}"))
    assert "merge.retried" in audit_page and "merge.cancelled" in audit_page


def test_merge_pages_refuse_bad_input(operator):
    op = operator("super")
    assert op.get("/admin/merges?status=bogus").status_code == 400
    assert op.get("/admin/merges?person=abc").status_code == 400
    assert op.get("/admin/merges?cursor=!!").status_code == 400
    assert op.get("/admin/merges/99999999999").status_code == 404
    assert op.get("/admin/merges/999999").status_code == 404
    assert op.post_form("/admin/merges", "/admin/merges/999999/retry").status_code == 404


def test_support_reads_merges_but_neither_retries_nor_cancels_and_sees_no_imports(app, operator, factories):
    op = operator("support")
    survivor, absorbed = factories.account(), factories.account()
    merge_id = _requested(app, survivor.id, absorbed.id)
    page = _text(op.get(f"/admin/merges/{merge_id}"))
    assert _status(page, "merge-status") == "pending" and "Cancel merge" not in page and 'value="Retry"' not in page
    nav = _text(op.get("/admin/merges"))
    assert 'href="/admin/merges"' in nav and 'href="/admin/imports"' not in nav and 'href="/admin/upstreams"' not in nav
    token = csrf_token(page)
    for action, data in (("retry", {}), ("cancel", {"reason": "x"})):
        response = op.http.post(f"/admin/merges/{merge_id}/{action}", data={"csrf_token": token, **data})
        assert response.status_code == 403, action
    for path in ("/admin/imports", "/admin/imports/1", "/admin/imports/1/conflicts", "/admin/upstreams"):
        assert op.get(path).status_code == 403, path
    assert "pending" in _text(op.get(f"/admin/merges/{merge_id}"))


def test_tenant_admin_sees_only_the_merges_of_its_people(app, operator, factories):
    mine = factories.tenant()
    site = factories.client(tenant=mine, trusted=True)
    related, other, stranger, stranger2 = (factories.account() for _ in range(4))
    _uses_a_site_of(app, site, related)
    ours, theirs = _requested(app, related.id, other.id), _requested(app, stranger.id, stranger2.id)
    op = operator("tenant_admin", mine)
    listed = _text(op.get("/admin/merges"))
    assert f'href="/admin/merges/{ours}"' in listed and f'href="/admin/merges/{theirs}"' not in listed
    assert op.get(f"/admin/merges/{ours}").status_code == 200
    assert op.get(f"/admin/merges/{theirs}").status_code == 404
    assert "Cancel merge" not in _text(op.get(f"/admin/merges/{ours}"))  # merges manage: super only
    assert op.post_form("/admin/merges", f"/admin/merges/{ours}/cancel", {"reason": "x"}).status_code == 403


# --- imports -------------------------------------------------------------------------------------

def _legacy_file(tmp_path, name: str, count: int) -> str:
    """``count`` legacy records that all share one username: count - 1 duplicate_username conflicts."""
    return write_jsonl(tmp_path / name, [
        rec(f"u{i}", phone=f"+1212555{i:04d}", phone_verified=True, username="ada") for i in range(count)])


def test_import_pages_show_progress_conflicts_and_the_report_of_the_tenants_jobs(app, operator, factories, tmp_path):
    mine, other = factories.tenant(), factories.tenant()
    _cli(app, "import", "plan", _legacy_file(tmp_path, "plan.jsonl", 60), "--tenant", mine,
         "--report-dir", str(tmp_path / "plan-report"))
    # a run that stops at its first conflict (policy fail), after one committed batch
    small = _legacy_file(tmp_path, "run.jsonl", 4)
    result = app.test_cli_runner().invoke(args=["import", "run", small, "--tenant", mine, "--batch-size", "1",
                                                "--policy", "duplicate_username=fail"])
    assert result.exit_code != 0
    _cli(app, "import", "plan", _legacy_file(tmp_path, "theirs.jsonl", 2), "--tenant", other,
         "--report-dir", str(tmp_path / "their-report"))
    op = operator("tenant_admin", mine)

    listed = _text(op.get("/admin/imports"))
    jobs = [int(j) for j in re.findall(r'href="/admin/imports/(\d+)"', listed)]
    assert len(jobs) == 2 and jobs == sorted(jobs, reverse=True)  # its own two, newest first
    run_id, plan_id = jobs
    assert f"<td>{other}</td>" not in listed and "<progress" in listed
    failed = _text(op.get("/admin/imports?status=failed"))
    assert re.findall(r'href="/admin/imports/(\d+)"', failed) == [str(run_id)]
    assert op.get("/admin/imports?status=bogus").status_code == 400

    plan = _text(op.get(f"/admin/imports/{plan_id}"))
    assert _status(plan, "job-status") == "completed"
    assert re.search(r'<progress id="job-progress" max="100" value="100.0"', plan)
    assert "<td>duplicate_username</td>" in plan and "<td>59</td>" in plan  # by kind and policy
    assert "The first 50 of 59 conflicts" in plan
    assert len(re.findall(r"<tr><td>\d+</td><td>u\d+</td><td>duplicate_username</td>", plan)) == 50
    assert f'href="/admin/imports/{plan_id}/conflicts"' in plan

    run = _text(op.get(f"/admin/imports/{run_id}"))
    assert _status(run, "job-status") == "failed" and "policy fail" in run
    share = float(re.search(r'<progress id="job-progress" max="100" value="([\d.]+)"', run).group(1))
    assert 0 < share < 100  # one record of four committed

    report = op.get(f"/admin/imports/{plan_id}/conflicts")
    assert report.status_code == 200 and report.mimetype == "application/jsonl"
    assert report.headers["Cache-Control"] == "no-store" and "attachment" in report.headers["Content-Disposition"]
    conflicts = [json.loads(line) for line in _text(report).splitlines()]
    assert len(conflicts) == 59 and {c["kind"] for c in conflicts} == {"duplicate_username"}

    # the other tenant's job is unknown, its report too
    theirs = max(jobs) + 1
    assert op.get(f"/admin/imports/{theirs}").status_code == 404
    assert op.get(f"/admin/imports/{theirs}/conflicts").status_code == 404
    # a super admin sees every tenant's jobs
    assert f'href="/admin/imports/{theirs}"' in _text(operator("super").get("/admin/imports"))


def test_the_conflict_report_needs_the_consoles_login(http, app, factories, tmp_path, console_client):
    tenant = factories.tenant()
    _cli(app, "import", "plan", _legacy_file(tmp_path, "plan.jsonl", 2), "--tenant", tenant,
         "--report-dir", str(tmp_path / "report"))
    response = http.get("/admin/imports/1/conflicts")
    assert response.status_code == 302 and response.location.endswith("/admin/login")


# --- upstreams -----------------------------------------------------------------------------------

def _upstream(app, slug: str = "weixin-open") -> str:
    _cli(app, "upstreams", "create", "--slug", slug, "--name", "WeChat", "--client-id", "wx123",
         "--authorization-endpoint", "https://open.weixin.example/authorize",
         "--token-endpoint", "https://open.weixin.example/token",
         "--userinfo-endpoint", "https://open.weixin.example/userinfo", "--claim-map", "openid=sub")
    return slug


def _upstream_state(page: str, slug: str) -> str:
    section = page[page.index(f'<section id="upstream-{slug}">'):]
    return re.search(r'<dd class="upstream-state">(\w+)</dd>', section).group(1)


def test_super_admin_disables_and_enables_an_upstream(app, operator):
    slug = _upstream(app)
    op = operator("super")
    page = _text(op.get("/admin/upstreams"))
    assert _upstream_state(page, slug) == "enabled" and "https://open.weixin.example/token" in page
    assert op.post_form("/admin/upstreams", f"/admin/upstreams/{slug}/disable").status_code == 303
    page = _text(op.get("/admin/upstreams"))
    assert _upstream_state(page, slug) == "disabled" and f"Upstream {slug} disabled" in page
    assert 'value="Enable"' in page
    assert op.post_form("/admin/upstreams", f"/admin/upstreams/{slug}/enable").status_code == 303
    assert _upstream_state(_text(op.get("/admin/upstreams")), slug) == "enabled"
    assert op.post_form("/admin/upstreams", "/admin/upstreams/nope/disable").status_code == 404
    audit_page = _text(op.get(f"/admin/audit?kind=upstream.*&actor=admin:{op.account.id}"))
    assert "upstream.disabled" in audit_page and "upstream.enabled" in audit_page


def test_auditor_reads_upstreams_but_cannot_disable_them_and_a_tenant_admin_sees_none(app, operator, factories):
    slug = _upstream(app)
    auditor = operator("auditor")
    page = _text(auditor.get("/admin/upstreams"))
    assert _upstream_state(page, slug) == "enabled" and 'value="Disable"' not in page
    assert 'href="/admin/upstreams"' in page and 'href="/admin/imports"' in page
    response = auditor.http.post(f"/admin/upstreams/{slug}/disable", data={"csrf_token": csrf_token(page)})
    assert response.status_code == 403
    assert _upstream_state(_text(auditor.get("/admin/upstreams")), slug) == "enabled"
    tenant_admin = operator("tenant_admin", factories.tenant())
    assert tenant_admin.get("/admin/upstreams").status_code == 403
    assert 'href="/admin/upstreams"' not in _text(tenant_admin.get("/admin/"))


# --- what the person reads ------------------------------------------------------------------------

def test_the_person_reads_that_an_administrator_locked_and_unlocked_them(app, admins, operator, factories):
    """An admin API client, a console admin and the CLI act on a person: their /account page says
    "by an administrator", never who (no client id, no account id, no operator name, no address)."""
    person = factories.account()
    caller = admins.client_token("support")
    base = "/api/admin/v1/users"
    assert admins.http.post(f"{base}/{person.id}/lock", json={"reason": "stolen phone"},
                            headers=caller.headers).status_code == 200
    assert admins.http.post(f"{base}/{person.id}/unlock", headers=caller.headers).status_code == 200
    op = operator("support")
    assert op.post_form(f"/admin/people/{person.id}", f"/admin/people/{person.id}/logout").status_code == 303
    _cli(app, "users", "lock", str(person.id), "--reason", "second report")
    _cli(app, "users", "unlock", str(person.id))

    browser = Browser(app.test_client(), ISSUER)
    browser.login(browser.go("/account/login"), person.phone, person.password)
    page = _text(browser.go("/account/"))
    events = page[page.index('<section id="events">'):page.index('<section id="close">')]
    rows = re.findall(r"<tr>(.*?)</tr>", events, re.S)
    by_admin = [r for r in rows if "by an administrator" in r]
    kinds = [re.search(r"<td>([a-z_.]+)", r).group(1) for r in by_admin]
    assert kinds.count("account.locked") == 2 and kinds.count("account.unlocked") == 2, rows
    assert "account.logged_out" in kinds
    for secret in ("client:", "admin:", "operator:", f"#{op.account.id}", "203.0.113", "127.0.0.1"):
        assert all(secret not in r for r in by_admin), secret
    # the person's own login says nothing more
    assert any("login." in r and "by " not in r for r in rows)
