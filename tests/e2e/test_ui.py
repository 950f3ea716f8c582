"""Issue 22, the dashboard at /ui/ in a real browser: Debian's Chromium driven
by Playwright (the system browser, no download), against the real collector
with seeded records (and real Envoy for the keys). Sign-in; the overview's
numbers equal /v1/usage; a scoped viewer sees only its team; alerts are
acknowledged and exports downloaded from the page; a key created and revoked
from the page works, then stops, through Envoy. Screenshots go to each
test's tmp_path."""
from __future__ import annotations

import datetime as dt
import json
import random
import shutil
import time
from pathlib import Path
from urllib.parse import urlencode

import pytest

from helpers import chat_body, filter_config
from procs import ADMIN_TOKEN, INGEST_TOKEN, READ_TOKEN, call, wait_until

playwright_api = pytest.importorskip("playwright.sync_api", reason="make venv installs playwright")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
TEAMS = ("search", "growth", "ads")


@pytest.fixture(scope="module")
def browser():
    assert Path(CHROMIUM).exists(), "chromium missing: `make chromium` installs it (apt-get)"
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    # A refused call (the wrong token, another team, a missing tag) is logged by the browser
    # as a failed load; the test asserts what the page shows for it instead.
    expected = ("status of 400", "status of 401", "status of 403")
    pg.on("console", lambda m: errors.append(m.text)
          if m.type == "error" and not any(e in m.text for e in expected) else None)
    # Revoke asks for confirmation, rotate for the grace period (its default kept).
    pg.on("dialog", lambda d: d.accept(d.default_value) if d.type == "prompt" else d.accept())
    yield pg
    context.close()
    # No script error, no CSP violation, no failed load on any page shown.
    assert errors == [], errors


def api(port: int, method: str, path: str, token: str = ADMIN_TOKEN, body=None):
    status, _, raw = call(method, port, path, body, {"authorization": f"Bearer {token}"})
    return status, (json.loads(raw) if raw and raw[:1] in (b"{", b"[") else raw)


def seed(port: int) -> None:
    """Records of three teams over this month so far and the previous month."""
    now = dt.datetime.now(dt.timezone.utc)
    month_start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    rng = random.Random(22)
    records = []
    for i in range(240):
        team = TEAMS[i % 3]
        if i % 4 == 0:  # the previous month
            ts = month_start - dt.timedelta(seconds=rng.randint(60, 20 * 86400))
        else:  # this month, before now
            span = max(int((now - month_start).total_seconds()) - 120, 60)
            ts = min(month_start + dt.timedelta(seconds=rng.randint(0, span)), now - dt.timedelta(seconds=30))
        records.append({
            "id": f"{rng.getrandbits(128):032x}", "ts": ts.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "gateway": "envoy", "key_id": f"key-{team}-{i % 2}", "auth": "api_key",
            "tags": {"org": "acme", "team": team, "project": f"{team}-p{i % 2}", "cost_center": "CC-1",
                     "environment": "prod"},
            "labels": {"workflow": f"wf{i % 3}"}, "provider": "openai", "operation": "chat",
            "model": ("gpt-4o-mini", "gpt-4.1")[i % 2], "status": 200,
            "input_tokens": rng.randint(1000, 90000), "cached_input_tokens": 0,
            "cache_write_input_tokens": 0, "output_tokens": rng.randint(100, 4000), "reasoning_tokens": 0})
    status, doc = api(port, "POST", "/v1/records", INGEST_TOKEN, {"records": records})
    assert status == 200 and doc["rejected"] == [], doc


def sign_in(page, port: int, token: str) -> float:
    """Signs in from the page's form; answers seconds until the overview rendered."""
    page.goto(f"http://127.0.0.1:{port}/ui/")
    page.fill("#token", token)
    started = time.monotonic()
    page.click("form#signin button[type=submit]")
    page.wait_for_selector("[data-ready='1']", timeout=10_000)
    return time.monotonic() - started


def show(page, hash_: str) -> None:
    """Navigates to a page of the app and waits until it rendered."""
    page.evaluate("h => { location.hash = h; }", hash_)
    page.wait_for_selector(f"[data-page='{hash_.split('?')[0].lstrip('#/')}'][data-ready='1']", timeout=10_000)


def usage(port: int, token: str, **params) -> dict:
    status, doc = api(port, "GET", "/v1/usage?" + urlencode(params), token)
    assert status == 200, doc
    return doc


def test_overview_budgets_alerts_exports_and_a_scoped_viewer(stack_factory, page, tmp_path):
    s = stack_factory()
    port = s.collector.port
    seed(port)
    assert api(port, "POST", "/v1/budgets", body={"id": "ads-tiny", "scope": {"team": "ads"},
                                                  "period": "month", "amount_usd": 0.01})[0] == 201
    assert api(port, "POST", "/v1/budgets", body={"id": "search-month", "scope": {"team": "search"},
                                                  "period": "month", "amount_usd": 500})[0] == 201

    # A wrong token is refused on the sign-in form.
    page.goto(f"http://127.0.0.1:{port}/ui/")
    page.fill("#token", "not-a-token")
    page.click("form#signin button[type=submit]")
    page.wait_for_selector("#signin-error:has-text('Unknown')")

    took = sign_in(page, port, ADMIN_TOKEN)
    print(f"overview rendered {took * 1000:.0f} ms after sign-in")
    assert page.text_content("#whoami").startswith("bootstrap:admin")
    stats = page.locator("#overview-stats")
    window = {"from": stats.get_attribute("data-from"), "to": stats.get_attribute("data-to")}
    want = usage(port, READ_TOKEN, group_by="team", **window)
    shown = float(page.get_attribute("#stat-spend", "data-value"))
    assert shown == pytest.approx(want["totals"]["cost_usd"], rel=1e-12), (shown, want["totals"])
    assert shown > 0
    assert int(page.get_attribute("#stat-requests", "data-value")) == want["totals"]["requests"]
    assert float(page.get_attribute("#stat-coverage", "data-value")) == want["totals"]["coverage"]
    for row in want["rows"]:
        cell = page.locator(f"#top-teams tr[data-team='{row['team']}'] td.cost")
        assert float(cell.get_attribute("data-value")) == pytest.approx(row["cost_usd"], rel=1e-12), row
    assert page.locator("#top-teams tbody tr").count() == len(want["rows"]) == 3
    # The chart's bars add up to the month so far when the month is the chart's window.
    bars = page.locator("svg.chart rect.bar")
    assert bars.count() >= 1
    first_day = window["from"][:10]
    month_bars = sum(float(bars.nth(i).get_attribute("data-value")) for i in range(bars.count())
                     if bars.nth(i).get_attribute("data-day") >= first_day)
    assert month_bars == pytest.approx(want["totals"]["cost_usd"], rel=1e-9)
    assert page.locator("#overview-budgets tr[data-budget='ads-tiny']").count() == 1
    page.screenshot(path=str(tmp_path / "overview-admin.png"), full_page=True)

    # Team drill-down: by model, project, key and a label; totals agree with /v1/usage.
    show(page, "#/team?team=search&label=workflow")
    team_total = usage(port, READ_TOKEN, **window, **{"filter.team": "search"})["totals"]["cost_usd"]
    assert float(page.get_attribute("#team-spend", "data-value")) == pytest.approx(team_total, rel=1e-6)
    for dim in ("model", "project", "key_id", "label.workflow"):
        assert page.locator(f"table[data-dim='{dim}'] tbody tr").count() >= 1, dim
    page.screenshot(path=str(tmp_path / "team-search.png"), full_page=True)

    # Budgets: burn, state, forecast, tiers.
    show(page, "#/budgets")
    row = page.locator("#budgets tr[data-budget='ads-tiny']")
    assert "hard" in row.text_content(), row.text_content()
    assert "info 50.0%" in row.text_content()

    # Alerts: the tiny budget fired; acknowledge one from the page.
    wait_until(lambda: api(port, "GET", "/v1/alerts?state=open")[1]["alerts"], 10, "alerts of ads-tiny")
    show(page, "#/alerts")
    open_before = api(port, "GET", "/v1/alerts?state=open")[1]["alerts"]
    target = open_before[0]["id"]
    page.click(f"#alerts tr[data-alert='{target}'] button")
    page.wait_for_selector(f"#alerts tr[data-alert='{target}']", state="detached")
    acked = api(port, "GET", "/v1/alerts?state=acked")[1]["alerts"]
    assert [a["id"] for a in acked] == [target]
    page.screenshot(path=str(tmp_path / "alerts.png"), full_page=True)

    # Exports: the chargeback CSV downloaded from the page sums to /v1/usage's month.
    show(page, "#/exports")
    with page.expect_download() as dl:
        page.click("button[data-export^='aispend-chargeback-']")
    csv = Path(dl.value.path()).read_text().splitlines()
    assert csv[0].startswith("month,cost_center,gl_account,team,project"), csv[:2]
    month_total = usage(port, READ_TOKEN, **{"from": window["from"][:8] + "01T00:00:00Z"},
                        to=window["to"])["totals"]["cost_usd"]
    cost_col = csv[0].split(",").index("cost_usd")
    assert sum(float(line.split(",")[cost_col]) for line in csv[1:]) == pytest.approx(month_total, rel=1e-6)
    assert page.locator("#showback tbody tr").count() >= 3
    page.click("#signout")
    page.wait_for_selector("form#signin")

    # A viewer scoped to team search: only search, anywhere; no keys, no exports it may not read.
    status, tok = api(port, "POST", "/v1/tokens", body={"role": "viewer", "scope": {"team": "search"},
                                                         "label": "ui scoped"})
    assert status == 201, tok
    sign_in(page, port, tok["token"])
    assert "scope team=search" in page.text_content("#whoami")
    teams_shown = page.locator("#top-teams tbody tr")
    assert teams_shown.count() == 1 and teams_shown.first.get_attribute("data-team") == "search"
    scoped = usage(port, tok["token"], **window)["totals"]["cost_usd"]
    assert float(page.get_attribute("#stat-spend", "data-value")) == pytest.approx(scoped, rel=1e-12)
    assert scoped < want["totals"]["cost_usd"]
    assert page.locator("#overview-budgets tr[data-budget='ads-tiny']").count() == 0
    assert page.locator("#overview-budgets tr[data-budget='search-month']").count() == 1
    assert not page.is_visible("nav a[data-page='keys']")
    assert not page.is_visible("nav a[data-page='exports']"), "showback/exports are whole-fleet reads"
    page.screenshot(path=str(tmp_path / "overview-scoped-viewer.png"), full_page=True)
    show(page, "#/team?team=growth")
    assert "out_of_scope" in page.text_content("#view")
    assert page.locator("table[data-dim]").count() == 0, "no growth numbers shown"
    show(page, "#/keys")
    assert page.locator("[data-denied='keys']").count() == 1
    assert page.locator("table#keys").count() == 0


def test_a_key_created_and_revoked_from_the_page_through_envoy(stack_factory, page, tmp_path):
    s = stack_factory(filter_config(identity={"registry": {"poll_ms": 500}}))
    port = s.collector.port
    sign_in(page, port, ADMIN_TOKEN)
    show(page, "#/keys")
    # Without a required tag the collector refuses it, and the page says which.
    page.fill("input[data-tag='org']", "acme")
    page.fill("input[data-tag='team']", "platform")
    page.fill("input[data-tag='cost_center']", "CC-4004")
    page.evaluate("document.querySelector('input[data-tag=environment]').required = false")
    page.click("form#create-key button[type=submit]")
    page.wait_for_selector("#key-flash .error:has-text('environment')")
    page.fill("input[data-tag='environment']", "dev")
    page.fill("input[name='key_id']", "ui-made")
    page.fill("input[name='rpm']", "100")
    page.click("form#create-key button[type=submit]")
    page.wait_for_selector("#new-secret")
    secret = page.text_content("#new-secret")
    assert secret.startswith("sk-aispend-") and page.get_attribute("#new-secret", "data-key-id") == "ui-made"
    page.screenshot(path=str(tmp_path / "keys-created.png"), full_page=True)
    row = page.locator("#keys tr[data-key='ui-made']")
    assert secret not in row.text_content() and secret[-4:] in row.text_content(), "only the hint is listed"

    wait_until(lambda: s.chat(secret, chat_body(2))[0] == 200, 5, "the page's key passes through Envoy")
    forwarded = s.mock.requests()[-1]["headers"]
    assert forwarded.get("x-aispend-team") == "platform", forwarded

    # Revisiting the page never shows the secret again.
    show(page, "#/overview")
    show(page, "#/keys")
    assert page.locator("#new-secret").count() == 0
    assert secret not in page.content()

    # Rotation from the page: the new secret shown once, and it passes; the old one
    # keeps working through its grace period (a day by default).
    page.click("#keys tr[data-key='ui-made'] button[data-action='rotate']")
    page.wait_for_selector("#key-flash:has-text('rotated')")
    rotated = page.text_content("#new-secret")
    assert rotated.startswith("sk-aispend-") and rotated != secret
    wait_until(lambda: s.chat(rotated, chat_body(2))[0] == 200, 5, "the rotated secret passes through Envoy")
    assert s.chat(secret, chat_body(2))[0] == 200, "the old secret works in its grace period"

    page.click("#keys tr[data-key='ui-made'] button[data-action='revoke']")
    page.wait_for_selector("#keys tr[data-key='ui-made'] .state.revoked")
    wait_until(lambda: s.chat(secret, chat_body(2))[0] == 401, 5, "the revoked key refused by Envoy")
    assert s.chat(rotated, chat_body(2))[0] == 401, "revoking stops every secret of the key"
    status, doc = api(port, "GET", "/v1/keys/ui-made")
    assert status == 200 and doc["status"] == "revoked", doc
    status, audit = api(port, "GET", "/v1/audit")
    actions = [e["action"] for e in audit["entries"]]
    assert any(a.startswith("key.") and "revoke" in a for a in actions), actions
    page.screenshot(path=str(tmp_path / "keys-revoked.png"), full_page=True)
