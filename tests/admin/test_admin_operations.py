"""The admin API's operator actions on tenants, merges, keys, upstreams and imports, through HTTP:
each success, each refusal, and the audit trail."""

from __future__ import annotations

import json

from app.bulk_import.conflicts import parse_policies
from app.bulk_import.dry_run import plan_job
from app.bulk_import.jobs import start_job
from tests.bulk_import.test_import import rec, write_jsonl

BASE = "/api/admin/v1"


def test_only_an_empty_tenant_is_deleted_and_only_by_a_super_admin(http, admins, factories):
    admin = admins.client_token("super")
    empty, used = factories.tenant(), factories.tenant()
    factories.client(tenant=used)
    tenant_admin = admins.client_token("tenant_admin", empty)
    assert http.delete(f"{BASE}/tenants/{empty}", headers=tenant_admin.headers).status_code == 403
    refused = http.delete(f"{BASE}/tenants/{used}", headers=admin.headers)
    assert refused.status_code == 409 and "clients: 1" in refused.get_json()["detail"]
    # empty has the tenant admin's client: delete that first, then the tenant goes.
    for c in http.get(f"{BASE}/clients", query_string={"tenant": empty}, headers=admin.headers).get_json()["items"]:
        assert http.delete(f"{BASE}/clients/{c['client_id']}?force=true", headers=admin.headers).status_code == 200
    deleted = http.delete(f"{BASE}/tenants/{empty}", headers=admin.headers)
    assert deleted.status_code == 200 and deleted.get_json()["deleted"]["slug"] == empty
    assert http.get(f"{BASE}/tenants/{empty}", headers=admin.headers).status_code == 404


def test_merges_cancel_and_retry_refuse_what_is_not_theirs_to_change(http, admins, factories):
    admin = admins.client_token("super")
    survivor, absorbed = factories.account(), factories.account()
    merged = http.post(f"{BASE}/merges", json={"survivor": survivor.id, "absorbed": absorbed.id, "reason": "same"},
                       headers=admin.headers).get_json()
    merge_id = merged["id"]
    cancel = http.post(f"{BASE}/merges/{merge_id}/cancel", json={"reason": "oops"}, headers=admin.headers)
    assert cancel.status_code == 409, cancel.get_json()
    retry = http.post(f"{BASE}/merges/{merge_id}/retry", headers=admin.headers)
    assert retry.status_code == 409
    assert http.post(f"{BASE}/merges/999999/retry", headers=admin.headers).status_code == 404
    assert http.post(f"{BASE}/merges/{merge_id}/cancel", json={}, headers=admin.headers).status_code == 400
    support = admins.client_token("support")
    assert http.post(f"{BASE}/merges/{merge_id}/retry", headers=support.headers).status_code == 403


def test_keys_rotate_and_retire(http, admins):
    admin = admins.client_token("super")
    keys = http.get(f"{BASE}/keys", headers=admin.headers).get_json()["items"]
    current = next(k for k in keys if k["state"] == "current")
    upcoming = next(k for k in keys if k["state"] == "next")
    refused = http.post(f"{BASE}/keys/{current['kid']}/retire", json={}, headers=admin.headers)
    assert refused.status_code == 409
    retired = http.post(f"{BASE}/keys/{upcoming['kid']}/retire", json={"now": True}, headers=admin.headers)
    assert retired.status_code == 200, retired.get_json()
    published = {k["kid"] for k in http.get("/jwks").get_json()["keys"]}
    assert upcoming["kid"] not in published
    rotated = http.post(f"{BASE}/keys/rotate", headers=admin.headers)
    assert rotated.status_code == 200
    assert http.post(f"{BASE}/keys/nope/retire", headers=admin.headers).status_code == 404
    kinds = [e["kind"] for e in http.get(f"{BASE}/audit", query_string={"kind": "key*"},
                                         headers=admin.headers).get_json()["items"]]
    assert kinds[:2] == ["keys.rotated", "key.retired"]


def test_upstreams_are_configured_through_the_api(http, admins):
    admin = admins.client_token("super")
    body = {"slug": "weixin-open", "name": "微信", "client_id": "wx123", "client_secret": "s3cret",
            "authorization_endpoint": "https://open.weixin.example/authorize",
            "token_endpoint": "https://open.weixin.example/token",
            "userinfo_endpoint": "https://open.weixin.example/userinfo", "claim_mapping": {"openid": "sub"}}
    created = http.post(f"{BASE}/upstreams", json=body, headers=admin.headers)
    assert created.status_code == 201, created.get_json()
    assert "s3cret" not in created.get_data(as_text=True) and created.get_json()["has_client_secret"] is True
    assert http.post(f"{BASE}/upstreams", json=body, headers=admin.headers).status_code in (400, 409)
    etag = created.headers["ETag"]
    assert http.patch(f"{BASE}/upstreams/weixin-open", json={"name": "WeChat"}, headers=admin.headers).status_code == 428
    changed = http.patch(f"{BASE}/upstreams/weixin-open", json={"name": "WeChat"},
                         headers={**admin.headers, "If-Match": etag})
    assert changed.status_code == 200 and changed.get_json()["name"] == "WeChat"
    assert http.post(f"{BASE}/upstreams/weixin-open/disable", headers=admin.headers).get_json()["enabled"] is False
    assert http.post(f"{BASE}/upstreams/weixin-open/enable", headers=admin.headers).get_json()["enabled"] is True
    auditor = admins.client_token("auditor")
    assert http.get(f"{BASE}/upstreams/weixin-open", headers=auditor.headers).status_code == 200
    assert http.post(f"{BASE}/upstreams/weixin-open/disable", headers=auditor.headers).status_code == 403
    tenant_admin = admins.client_token("tenant_admin")
    assert http.get(f"{BASE}/upstreams", headers=tenant_admin.headers).status_code == 403


def test_import_jobs_and_their_conflict_report(http, admins, factories, app, tmp_path):
    mine, other = factories.tenant(), factories.tenant()
    path = write_jsonl(tmp_path / "legacy.jsonl", [
        rec("u1", phone="+14155550101", phone_verified=True, username="ada"),
        rec("u2", phone="+14155550102", phone_verified=True, username="ada"),
    ])
    with app.app_context():
        plan = start_job(path, mine, mode="plan", policies=parse_policies(()))
        plan_job(plan, str(tmp_path / "report"), batch_size=2)
        plan_id = plan.id
        other_id = start_job(path, other, mode="plan", policies=parse_policies(())).id
    tenant_admin = admins.client_token("tenant_admin", mine)
    jobs = http.get(f"{BASE}/imports", headers=tenant_admin.headers).get_json()["items"]
    assert [j["job"] for j in jobs] == [plan_id]
    assert http.get(f"{BASE}/imports/{other_id}", headers=tenant_admin.headers).status_code == 404
    shown = http.get(f"{BASE}/imports/{plan_id}", headers=tenant_admin.headers).get_json()
    assert shown["conflicts_recorded"] >= 1
    report = http.get(f"{BASE}/imports/{plan_id}/conflicts", headers=tenant_admin.headers)
    assert report.status_code == 200 and report.mimetype == "application/jsonl"
    conflicts = [json.loads(line) for line in report.get_data(as_text=True).splitlines()]
    assert any(c["kind"] == "duplicate_username" for c in conflicts)
    assert http.get(f"{BASE}/imports?status=bogus", headers=tenant_admin.headers).status_code == 400
