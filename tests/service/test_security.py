"""Service security: rate limits (429 + Retry-After), the query limit, tokens on every endpoint, admin
without a configured token, security headers and CSP, CORS, the access log and /metrics."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import re
import subprocess
import sys
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

from conftest import ADMIN
from movierec.errors import ConfigError
from movierec.service import Settings, create_app
from movierec.service.app import log_config, static_dir
from movierec.service.metrics import BUCKETS, Metrics
from movierec.service.security import PAGE_CSP, Buckets, Guard

LIMITED = {"requests_per_second": 50.0, "request_burst": 100, "profile_writes_per_second": 10.0,
           "profiles_per_hour": 20}  # the defaults


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def make_profile(client: TestClient, name: str = "p") -> tuple[str, str]:
    made = client.post("/api/profiles", json={"name": name})
    assert made.status_code == 201
    return made.json()["id"], made.json()["token"]


# -- rate limits --------------------------------------------------------------------------------------
def test_the_defaults_are_the_documented_ones(model_dir: Path) -> None:
    settings = Settings(model_dir=model_dir)
    assert {name: getattr(settings, name) for name in LIMITED} == LIMITED
    assert (settings.max_query_bytes, settings.max_body_bytes, settings.cors_origins) == (2048, 65536, ())


def test_a_burst_of_400_profile_creations_from_one_address_gets_20_then_429(settings: Settings) -> None:
    with TestClient(create_app(settings.with_(**LIMITED))) as client:
        answers = [client.post("/api/profiles", json={"name": f"bot {n}"}) for n in range(400)]
        statuses = [answer.status_code for answer in answers]
        assert statuses == [201] * 20 + [429] * 380
        for answer in answers[20:]:
            assert answer.json()["error"] == "too_many_requests"
            # whole seconds until a token is back: 1/50 s for the address, 180 s for creations
            assert 1 <= int(answer.headers["Retry-After"]) <= 180
        # the creation bucket, once the address bucket has a token: a new profile in 3600/20 s
        # less the seconds since the burst began
        assert max(int(answer.headers["Retry-After"]) for answer in answers[20:]) >= 170
        assert len({answer.json()["id"] for answer in answers[:20]}) == 20


def test_buckets_grant_burst_then_refill_at_rate() -> None:
    buckets = Buckets(rate=2.0, burst=3)
    assert [buckets.take("a", 0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("a", 0.0) == pytest.approx(0.5)  # one token every 1/2 s
    assert buckets.take("a", 0.25) == pytest.approx(0.25)  # half a token back, nothing taken
    assert buckets.take("a", 0.5) == 0.0
    assert buckets.take("b", 0.5) == 0.0  # keys do not share
    assert buckets.take("a", 10.0) == 0.0 and buckets.take("a", 10.0) == 0.0  # refilled to the burst
    assert buckets.take("a", 10.0) == 0.0 and buckets.take("a", 10.0) == pytest.approx(0.5)


def test_buckets_stay_bounded_and_only_forgive() -> None:
    buckets = Buckets(rate=1.0, burst=1, max_keys=100)
    for n in range(1000):
        assert buckets.take(n, 0.0) == 0.0  # a new key always starts full
        assert len(buckets) <= 100
    assert buckets.take(999, 0.0) == pytest.approx(1.0)  # the newest keys are still remembered


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _guarded(settings: Settings, clock: Clock) -> Starlette:
    async def ok(request: Any) -> PlainTextResponse:
        return PlainTextResponse("ok")

    inner = Starlette(routes=[Route("/{path:path}", ok, methods=["GET", "POST", "PUT", "DELETE"])])
    return Guard(inner, settings, clock=clock)  # type: ignore[return-value]


def test_per_address_limit_is_per_address_and_refills(model_dir: Path) -> None:
    clock = Clock()
    app = _guarded(Settings(model_dir=model_dir, **LIMITED), clock)
    one = TestClient(app, client=("10.0.0.1", 1000))
    other = TestClient(app, client=("10.0.0.2", 1000))
    assert [one.get("/api/health").status_code for _ in range(100)] == [200] * 100
    refused = one.get("/api/health")
    assert (refused.status_code, refused.headers["Retry-After"]) == (429, "1")
    assert refused.headers["X-Content-Type-Options"] == "nosniff"  # refusals carry the headers too
    assert other.get("/api/health").status_code == 200  # another address has its own bucket
    clock.now += 0.025  # a token back at 50 a second (and a little more)
    assert one.get("/api/health").status_code == 200
    assert one.get("/api/health").status_code == 429


def test_per_profile_writes_are_keyed_by_profile_and_token(model_dir: Path) -> None:
    clock = Clock()
    app = _guarded(Settings(model_dir=model_dir, **{**LIMITED, "requests_per_second": 0}), clock)
    client = TestClient(app)
    path = "/api/profiles/abc/ratings/1"
    assert [client.put(path, headers=bearer("owner")).status_code for _ in range(20)] == [200] * 20
    refused = client.put(path, headers=bearer("owner"))
    assert (refused.status_code, refused.headers["Retry-After"]) == (429, "1")
    assert client.delete("/api/profiles/abc", headers=bearer("owner")).status_code == 429  # same bucket
    assert client.get(path, headers=bearer("owner")).status_code == 200  # reads are not writes
    assert client.put("/api/profiles/xyz/ratings/1", headers=bearer("owner")).status_code == 200
    # someone without the token does not use up the owner's writes, and vice versa
    assert client.put(path, headers=bearer("guess")).status_code == 200
    clock.now += 0.1
    assert client.put(path, headers=bearer("owner")).status_code == 200


def test_limits_can_be_turned_off(model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOVIEREC_RATE_LIMITS", "off")
    settings = Settings.from_env(model_dir)
    assert not settings.rate_limited
    app = _guarded(settings, Clock())
    client = TestClient(app)
    assert {client.post("/api/profiles").status_code for _ in range(300)} == {200}


def test_limits_come_from_the_environment(model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for variable, value in [("MOVIEREC_REQUESTS_PER_SECOND", "7.5"), ("MOVIEREC_REQUEST_BURST", "9"),
                            ("MOVIEREC_PROFILE_WRITES_PER_SECOND", "0"), ("MOVIEREC_PROFILES_PER_HOUR", "3"),
                            ("MOVIEREC_MAX_QUERY_BYTES", "100"),
                            ("MOVIEREC_CORS_ORIGINS", "https://a.example.org, http://localhost:3000")]:
        monkeypatch.setenv(variable, value)
    settings = Settings.from_env(model_dir)
    assert (settings.requests_per_second, settings.request_burst, settings.profile_writes_per_second,
            settings.profiles_per_hour, settings.max_query_bytes) == (7.5, 9, 0.0, 3, 100)
    assert settings.cors_origins == ("https://a.example.org", "http://localhost:3000")
    assert Settings.from_json(settings.to_json()) == settings  # as workers receive them
    monkeypatch.setenv("MOVIEREC_REQUEST_BURST", "lots")
    with pytest.raises(ConfigError, match="MOVIEREC_REQUEST_BURST must be an integer, got 'lots'"):
        Settings.from_env(model_dir)


@pytest.mark.parametrize(("change", "message"), [
    ({"requests_per_second": -1}, "requests_per_second must be a number >= 0"),
    ({"profiles_per_hour": 1.5}, "profiles_per_hour must be an int >= 0, got 1.5"),
    ({"request_burst": 0}, "request_burst must be an int >= 1 while requests_per_second is set"),
    ({"cors_origins": ("*",)}, "cors_origins must be origins like https://app.example.org"),
    ({"cors_origins": ("https://a.org/path",)}, "cors_origins must be origins"),
    ({"max_query_bytes": 0}, "max_query_bytes must be an int >= 1, got 0"),
])
def test_bad_limits_are_named(model_dir: Path, change: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        Settings(model_dir=model_dir, **change)


def test_an_over_long_query_string_gets_414(client: TestClient) -> None:
    base = "/api/users?limit=1&pad="
    fits = base + "x" * (2048 - len(base) + len("/api/users?"))
    assert len(fits.split("?", 1)[1]) == 2048
    assert client.get(fits).status_code == 200
    refused = client.get(fits + "x")
    assert refused.status_code == 414
    assert refused.json() == {"error": "uri_too_long",
                              "message": "the query string must be at most 2048 bytes, got 2049"}


# -- tokens on every endpoint -------------------------------------------------------------------------
#: Endpoints anyone may call (docs/service.md, "What anyone who reaches the port can do"). Every other
#: route of the app must refuse a request without the right token: a new route is tested on its own.
PUBLIC = {
    ("GET", "/"), ("GET", "/metrics"), ("GET", "/openapi.json"), ("GET", "/docs"), ("GET", "/redoc"),
    ("GET", "/docs/oauth2-redirect"), ("GET", "/api/health"), ("GET", "/api/model"), ("GET", "/api/movies"),
    ("GET", "/api/movies/{movie_id}"), ("GET", "/api/movies/{movie_id}/similar"), ("GET", "/api/users"),
    ("GET", "/api/users/{user_id}"), ("GET", "/api/users/{user_id}/recommendations"),
    ("POST", "/api/profiles"), ("HEAD", "/"), ("HEAD", "/docs"), ("HEAD", "/redoc"),
    ("HEAD", "/openapi.json"), ("HEAD", "/docs/oauth2-redirect"),
}
BODIES = {("PUT", "/api/profiles/{profile_id}/ratings/{movie_id}"): {"rating": 1.0},
          ("POST", "/api/admin/reload"): {}, ("POST", "/api/admin/retrain"): {}}


def _endpoints(app: Any) -> Iterator[tuple[str, str]]:
    """(method, path template) of every route, those of included routers too."""
    for context in iter_route_contexts(app.routes):
        route = context.route
        if isinstance(route, Mount):
            assert route.path == "/static", f"an unexpected mount: {route.path}"
            continue
        for method in sorted(route.methods or ()):
            yield method, route.path


def _call(client: TestClient, method: str, template: str, values: dict[str, str],
          headers: dict[str, str]) -> Any:
    path = template.format(**values)
    body = BODIES.get((method, template))
    return client.request(method, path, json=body, headers=headers)


def test_every_endpoint_refuses_wrong_and_other_profiles_tokens(settings: Settings) -> None:
    app = create_app(settings)
    with TestClient(app) as client:
        victim, victim_token = make_profile(client, "victim")
        _, attacker_token = make_profile(client, "attacker")
        assert client.put(f"/api/profiles/{victim}/ratings/1", json={"rating": 4.5},
                          headers=bearer(victim_token)).status_code == 200
        before = client.get(f"/api/profiles/{victim}", headers=bearer(victim_token)).json()
        values = {"profile_id": victim, "movie_id": "1", "job_id": "none"}
        tried = 0
        for method, template in _endpoints(app):
            if (method, template) in PUBLIC:
                continue
            if template.startswith("/api/admin/"):
                attempts = [{}, {"X-Admin-Token": "wrong-admin-token"}, {"X-Admin-Token": ADMIN[:-1]},
                            {"X-Admin-Token": ADMIN + "x"}, bearer(victim_token),
                            {"Authorization": f"Bearer {ADMIN}"}]
                allowed = {401, 403}
            else:
                assert "{profile_id}" in template, f"{method} {template}: neither public nor behind a token"
                attempts = [{}, bearer("wrong-token"), bearer(attacker_token), bearer(victim_token[:-1]),
                            bearer(victim_token + "0"), {"X-Admin-Token": ADMIN}]
                allowed = {401, 404}
            for headers in attempts:
                answer = _call(client, method, template, values, headers)
                assert answer.status_code in allowed, (method, template, headers, answer.text)
                assert victim_token not in answer.text and "4.5" not in answer.text
                tried += 1
        assert tried >= 8 * 6  # 5 profile endpoints + 4 admin ones, 6 attempts each
        # nothing changed: the victim's profile reads as it did
        assert client.get(f"/api/profiles/{victim}", headers=bearer(victim_token)).json() == before


def test_every_admin_endpoint_refuses_everything_without_a_configured_token(settings: Settings) -> None:
    app = create_app(settings.with_(admin_token=None))
    with TestClient(app) as client:
        admin_routes = [(m, t) for m, t in _endpoints(app) if t.startswith("/api/admin/")]
        assert len(admin_routes) == 4
        for method, template in admin_routes:
            for headers in ({}, {"X-Admin-Token": ADMIN}, {"X-Admin-Token": "None"},
                            {"X-Admin-Token": ""}):
                answer = _call(client, method, template, {"job_id": "x"}, headers)
                assert answer.status_code == 403, (method, template, headers)
                assert "disabled" in answer.json()["message"]


def test_the_admin_token_is_compared_as_digests(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    compared: list[tuple[bytes, bytes]] = []
    original = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return original(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    with TestClient(create_app(settings)) as client:
        assert client.get("/api/admin/jobs", headers={"X-Admin-Token": "x" * 3}).status_code == 403
        assert client.get("/api/admin/jobs", headers={"X-Admin-Token": ADMIN}).status_code == 200
    admin_digest = hashlib.sha256(ADMIN.encode()).digest()
    assert compared[-2] == (hashlib.sha256(b"xxx").digest(), admin_digest)  # equal lengths, never the text
    assert compared[-1] == (admin_digest, admin_digest)


# -- headers, CSP, CORS -------------------------------------------------------------------------------
class _Inline(HTMLParser):
    """Everything a strict CSP would block in a page: inline script, style and event handlers."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []
        self._in: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = dict(attrs)
        self.found += [f"{tag} {name}=" for name in names if name.startswith("on") or name == "style"]
        if tag == "style":
            self.found.append("<style>")
        if tag == "script" and not names.get("src"):
            self._in = "script"
        if any((value or "").strip().lower().startswith("javascript:") for value in names.values()):
            self.found.append(f"{tag} javascript: URL")

    def handle_data(self, data: str) -> None:
        if self._in == "script" and data.strip():
            self.found.append("inline <script>")

    def handle_endtag(self, tag: str) -> None:
        self._in = None


def test_the_page_has_no_inline_script_style_or_handlers() -> None:
    parser = _Inline()
    parser.feed((static_dir() / "index.html").read_text())
    assert parser.found == []
    script = (static_dir() / "app.js").read_text()
    # a script that writes markup or evaluates text would slip past the CSP's intent
    assert not re.search(r"\.innerHTML\s*=|\beval\(|new Function\(|\.style\.cssText|setAttribute\(\"style\"",
                         script)


def test_security_headers_on_the_page_and_the_api(client: TestClient) -> None:
    page = client.get("/")
    assert page.headers["Content-Security-Policy"] == PAGE_CSP
    policy = dict(part.strip().split(" ", 1) for part in PAGE_CSP.split(";"))
    assert policy["script-src"] == "'self'" and policy["style-src"] == "'self'"
    assert policy["frame-ancestors"] == "'none'" and policy["object-src"] == "'none'"
    assert "unsafe" not in PAGE_CSP
    for answer in (page, client.get("/static/app.js"), client.get("/api/health"), client.get("/api/nothing")):
        assert answer.headers["X-Content-Type-Options"] == "nosniff"
        assert answer.headers["X-Frame-Options"] == "DENY"
        assert answer.headers["Referrer-Policy"] == "no-referrer"
    api = client.get("/api/health")
    assert api.headers["Content-Security-Policy"] == "default-src 'none'; frame-ancestors 'none'"
    assert api.headers["Cache-Control"] == "no-store"  # answers hold tokens (profile creation) and ratings
    assert "cdn.jsdelivr.net" in client.get("/docs").headers["Content-Security-Policy"]


def test_cors_is_closed_by_default_and_opens_only_to_configured_origins(settings: Settings) -> None:
    origin = {"Origin": "https://evil.example"}
    preflight = {**origin, "Access-Control-Request-Method": "PUT",
                 "Access-Control-Request-Headers": "authorization"}
    with TestClient(create_app(settings)) as client:
        assert "access-control-allow-origin" not in client.get("/api/health", headers=origin).headers
        answer = client.options("/api/profiles/x/ratings/1", headers=preflight)
        assert "access-control-allow-origin" not in answer.headers and answer.status_code == 405
    allowed = "https://app.example.org"
    with TestClient(create_app(settings.with_(cors_origins=(allowed,)))) as client:
        assert "access-control-allow-origin" not in client.get("/api/health", headers=origin).headers
        answer = client.get("/api/health", headers={"Origin": allowed})
        assert answer.headers["access-control-allow-origin"] == allowed
        answer = client.options("/api/profiles/x/ratings/1", headers={**preflight, "Origin": allowed})
        assert answer.status_code == 200 and answer.headers["access-control-allow-origin"] == allowed


# -- access log and metrics ---------------------------------------------------------------------------
def test_the_access_log_is_json_without_tokens_ids_or_ratings(settings: Settings,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="movierec.access")
    with TestClient(create_app(settings)) as client:
        profile, token = make_profile(client, "secret name")
        client.put(f"/api/profiles/{profile}/ratings/3", json={"rating": 3.5}, headers=bearer(token))
        client.get(f"/api/profiles/{profile}/recommendations?k=5&years=1990-1999", headers=bearer(token))
        client.get(f"/api/profiles/{profile}/recommendations?token={token}", headers=bearer("wrong"))
        client.get("/api/admin/jobs", headers={"X-Admin-Token": ADMIN})
        client.get("/nowhere/" + token)
    lines = [record.getMessage() for record in caplog.records if record.name == "movierec.access"]
    assert len(lines) == 6
    rows = [json.loads(line) for line in lines]
    assert all(set(row) == {"ts", "method", "route", "status", "ms", "client", "pid"} for row in rows)
    assert [(row["method"], row["route"], row["status"]) for row in rows] == [
        ("POST", "/api/profiles", 201),
        ("PUT", "/api/profiles/{profile_id}/ratings/{movie_id}", 200),
        ("GET", "/api/profiles/{profile_id}/recommendations", 200),
        ("GET", "/api/profiles/{profile_id}/recommendations", 404),
        ("GET", "/api/admin/jobs", 200),
        ("GET", "unmatched", 404)]
    for secret in (token, profile, ADMIN, "secret name"):
        assert secret not in "\n".join(lines)
    # the rest is the time, the latency and the client: no rating or query value can hide there
    rest = [{k: v for k, v in row.items() if k not in ("method", "route", "status")} for row in rows]
    assert all(isinstance(row["ms"], float) and row["client"] == "testclient" for row in rest)
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", row["ts"]) for row in rest)


def test_log_config_turns_the_access_log_on_at_info() -> None:
    assert log_config("info")["loggers"]["movierec.access"]["level"] == "INFO"
    assert log_config("warning")["loggers"]["movierec.access"]["level"] == "WARNING"


_SAMPLE = re.compile(r'^([a-z_]+)\{((?:[a-z_]+="(?:[^"\\]|\\.)*",?)*)\} (-?[0-9.e+]+|\+Inf)$')


def parse_metrics(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Prometheus text format, strictly: every line a HELP/TYPE comment or a labelled sample."""
    samples = {}
    typed = set()
    for line in text.splitlines():
        if line.startswith("# HELP "):
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind in ("counter", "gauge", "histogram")
            typed.add(name)
            continue
        match = _SAMPLE.match(line)
        assert match, f"not a sample line: {line!r}"
        name, labels, value = match.groups()
        assert re.sub(r"_(bucket|sum|count)$", "", name) in typed, f"{name} has no TYPE"
        pairs = frozenset(tuple(pair.split("=", 1)) for pair in re.findall(r'[a-z_]+="[^"]*"', labels))
        key = (name, frozenset((k, v.strip('"')) for k, v in pairs))
        assert key not in samples, f"duplicate sample {line!r}"
        samples[key] = float(value)
    return samples


def _get(samples: dict, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def test_metrics_count_requests_by_route_and_status(settings: Settings) -> None:
    with TestClient(create_app(settings)) as client:
        for _ in range(3):
            client.get("/api/health")
        client.get("/api/users/1/recommendations?k=3")
        client.get("/api/movies/999999")
        client.get("/nowhere")
        for word in ("BREW", "WHEN"):
            client.request(word, "/api/health")
        text = client.get("/metrics")
    assert text.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples = parse_metrics(text.text)
    requests = "movierec_http_requests_total"
    assert _get(samples, requests, method="GET", route="/api/health", status="200") == 3
    assert _get(samples, requests, method="GET", route="/api/users/{user_id}/recommendations",
                status="200") == 1
    assert _get(samples, requests, method="GET", route="/api/movies/{movie_id}", status="404") == 1
    assert _get(samples, requests, method="GET", route="unmatched", status="404") == 1
    # any other word as the method is "other": clients cannot grow the label set
    assert _get(samples, requests, method="other", route="/api/health", status="405") == 2
    assert sum(v for (name, _), v in samples.items() if name == requests) == 8  # /metrics not yet counted
    histogram = "movierec_http_request_duration_seconds"
    health = {"method": "GET", "route": "/api/health"}
    buckets = [_get(samples, histogram + "_bucket", **health, le=f"{b:g}") for b in BUCKETS]
    assert buckets == sorted(buckets)  # cumulative
    assert _get(samples, histogram + "_bucket", **health, le="+Inf") == 3
    assert _get(samples, histogram + "_count", **health) == 3
    assert 0 < _get(samples, histogram + "_sum", **health) < 60
    versions = [(labels, v) for (name, labels), v in samples.items() if name == "movierec_model_version"]
    assert len(versions) == 1 and versions[0][1] == 1
    assert ("model", "biased-mf-als") in versions[0][0]


def test_rate_limited_requests_are_counted_under_their_route(settings: Settings) -> None:
    with TestClient(create_app(settings.with_(profiles_per_hour=2))) as client:
        statuses = [client.post("/api/profiles").status_code for _ in range(5)]
        samples = parse_metrics(client.get("/metrics").text)
    assert statuses == [201, 201, 429, 429, 429]
    requests = "movierec_http_requests_total"
    assert _get(samples, requests, method="POST", route="/api/profiles", status="429") == 3


def test_metrics_add_up_every_worker_sharing_a_folder(tmp_path: Path) -> None:
    here = Metrics(tmp_path, lambda: ("ials", 3))
    other = Metrics(tmp_path, lambda: ("ials", 2))
    other.pid = _a_live_pid()
    gone = Metrics(tmp_path, lambda: ("ials", 1))
    gone.pid = _a_finished_pid()
    for metrics, count in ((here, 2), (other, 5), (gone, 1)):
        for _ in range(count):
            metrics.observe("GET", "/api/health", 200, 0.003)
    other.observe("PUT", "/api/profiles/{profile_id}/ratings/{movie_id}", 429, 20.0)
    other.flush()
    gone.flush()
    samples = parse_metrics(here.render())
    # counters keep what exited workers counted; the model version is only the running workers'
    assert _get(samples, "movierec_http_requests_total", method="GET", route="/api/health", status="200") == 8
    health = {"method": "GET", "route": "/api/health"}
    assert _get(samples, "movierec_http_request_duration_seconds_bucket", **health, le="0.0025") == 0
    assert _get(samples, "movierec_http_request_duration_seconds_bucket", **health, le="0.005") == 8
    assert _get(samples, "movierec_http_request_duration_seconds_sum", **health) == pytest.approx(0.024)
    slow = {"method": "PUT", "route": "/api/profiles/{profile_id}/ratings/{movie_id}"}
    assert _get(samples, "movierec_http_request_duration_seconds_bucket", **slow, le="10") == 0
    assert _get(samples, "movierec_http_request_duration_seconds_bucket", **slow, le="+Inf") == 1
    versions = {dict(labels)["worker"]: v for (name, labels), v in samples.items()
                if name == "movierec_model_version"}
    assert versions == {str(here.pid): 3, str(other.pid): 2}
    assert not math.isnan(sum(samples.values()))


def _a_live_pid() -> int:
    import os

    return os.getppid()


def _a_finished_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    return int(done.stdout)


def test_every_route_is_public_or_behind_a_token_in_the_schema_too(settings: Settings) -> None:
    """The OpenAPI schema (what the fuzz runs over) names every API route of the app."""
    app = create_app(settings)
    schema_paths = set(app.openapi()["paths"])
    api_paths = {context.route.path for context in iter_route_contexts(app.routes)
                 if isinstance(context.route, APIRoute) and context.route.include_in_schema}
    assert api_paths == schema_paths and "/metrics" in schema_paths
