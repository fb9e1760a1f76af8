"""The prescreening service (issue #34) as a user meets it: one real `deepscreen serve` process on a loopback port
with the embedded SQLite store, driven over HTTP; keys made with `deepscreen keys`. Covers the API, roles, policy,
idempotence, bad input, callbacks, listing, metrics and the committed OpenAPI spec. (Restart in the middle of a
scan, and PostgreSQL: test_service_restart.py; the review page in a browser: test_service_review.py.)"""

from __future__ import annotations

import hashlib
import hmac
import http.server
import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from service_server import CLI, Server, client, face_pair, make_key, review_login, wait_done

LIMIT = 2 * 1024 * 1024  # the server's upload limit in these tests


class Receiver:
    """A local callback receiver: records each POST; answers 500 to the first `fail_first` of them."""

    def __init__(self, fail_first: int = 0):
        self.calls: list[tuple[dict, bytes]] = []
        self.fail_first = fail_first
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.calls.append((dict(self.headers), body))
                self.send_response(500 if len(outer.calls) <= outer.fail_first else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture(scope="module")
def receiver():
    r = Receiver()
    yield r
    r.httpd.shutdown()


@pytest.fixture(scope="module")
def svc(tmp_path_factory, receiver):
    base = tmp_path_factory.mktemp("service")
    data, media_root = base / "data", base / "media"
    media_root.mkdir()
    keys = {role: make_key(data, role) for role in ("submit", "review", "admin")}
    server = Server(data, "--workers", "1", "--media-root", str(media_root), "--max-upload-bytes", str(LIMIT),
                    "--callback-host", f"127.0.0.1:{receiver.port}").start()
    server.keys, server.media_root = keys, media_root
    yield server
    server.stop()


@pytest.fixture(scope="module")
def faces(tmp_path_factory) -> dict[str, Path]:
    return face_pair(tmp_path_factory.mktemp("faces"))


def upload(c: httpx.Client, path: Path | None = None, data: bytes | None = None, name: str = "x.jpg",
           **fields) -> httpx.Response:
    content = data if data is not None else path.read_bytes()
    return c.post("/v1/scans", files={"file": (name, content, "application/octet-stream")}, data=fields)


def test_health_needs_no_key_and_everything_else_does(svc):
    assert httpx.get(svc.url + "/healthz").json()["status"] == "ok"
    assert httpx.get(svc.url + "/readyz").status_code == 200
    anon = client(svc)
    for method, path in (("GET", "/v1/scans"), ("GET", "/v1/scans/abc"), ("POST", "/v1/scans"),
                         ("GET", "/metrics"), ("GET", "/v1/audit")):
        r = anon.request(method, path)
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer", (method, path)
    r = client(svc, "dsk_00000000_not-a-real-key").get("/v1/scans")
    assert r.status_code == 401 and "invalid" in r.json()["detail"]


def test_each_role_is_refused_what_it_may_not_do(svc, faces):
    sub, rev, adm = (client(svc, svc.keys[r]) for r in ("submit", "review", "admin"))
    scan_id = upload(sub, faces["real"]).json()["id"]
    wait_done(sub, scan_id)
    # submit: send and read results; not reports, audit, metrics, the review page
    for path in (f"/v1/scans/{scan_id}/report", "/v1/audit", "/metrics"):
        assert sub.get(path).status_code == 403, path
    r = review_login(httpx.Client(base_url=svc.url), svc.keys["submit"])
    assert r.status_code == 403 and "cannot open the review page" in r.text
    # review: read, reports, audit; not submit, not metrics
    assert upload(rev, faces["real"]).status_code == 403
    assert rev.get("/metrics").status_code == 403
    assert rev.get(f"/v1/scans/{scan_id}/report").status_code == 200
    assert rev.get("/v1/audit").status_code == 200
    # admin: all of it
    assert adm.get("/metrics").status_code == 200
    assert upload(adm, faces["real"]).status_code == 202


def test_revoked_key_stops_working(svc):
    key = make_key(svc.data_dir, "submit", name="to revoke")
    c = client(svc, key)
    assert c.get("/v1/scans").status_code == 200
    key_id = key.split("_")[1]
    listing = subprocess.run(CLI + ["keys", "list", "--data-dir", str(svc.data_dir)], capture_output=True,
                             text=True, check=True).stdout
    assert key_id in listing and key not in listing  # the key itself is never shown again
    subprocess.run(CLI + ["keys", "revoke", key_id, "--data-dir", str(svc.data_dir)], check=True,
                   capture_output=True)
    assert c.get("/v1/scans").status_code == 401


def test_real_photo_passes_and_forgery_is_quarantined(svc, faces):
    c = client(svc, svc.keys["admin"])
    created = upload(c, faces["real"], name="../../etc/passwd").json()
    assert created["status"] == "queued" and len(created["id"]) == 32
    real = wait_done(c, created["id"])
    fake = wait_done(c, upload(c, faces["fake"], name="fake.jpg").json()["id"])
    assert (real["status"], real["route"], real["label"]) == ("done", "pass", "authentic")
    assert (fake["status"], fake["route"], fake["label"]) == ("done", "quarantine", "manipulated")
    assert fake["review_state"] == "pending" and real["review_state"] is None
    # The verdict is what `deepscreen scan --json` writes; the client's name is shown, never used as a path.
    v = real["verdict"]
    assert v["path"] == real["filename"] == "passwd"
    assert v["sha256"] == real["sha256"] == hashlib.sha256(faces["real"].read_bytes()).hexdigest()
    assert {"kind", "probability", "label", "summary", "faces", "evidence", "models", "media"} <= set(v)
    assert v["probability"] == pytest.approx(real["probability"], abs=1e-4)
    stored = svc.data_dir / "media" / real["sha256"][:2] / real["sha256"]
    assert stored.read_bytes() == faces["real"].read_bytes()
    assert not (svc.data_dir / "etc").exists()
    report = client(svc, svc.keys["review"]).get(f"/v1/scans/{fake['id']}/report")
    assert report.status_code == 200 and report.headers["content-type"].startswith("text/html")
    assert "fake.jpg" in report.text and "<script" not in report.text
    assert "default-src 'none'" in report.headers["content-security-policy"]


def test_nothing_to_judge_is_inconclusive_and_takes_its_configured_route(svc, tmp_path):
    from media_factory import gradient, sine, write_audio

    c = client(svc, svc.keys["submit"])
    wall = tmp_path / "wall.png"
    Image.fromarray(gradient(120, 160)).save(wall)
    tone = write_audio(tmp_path / "tone.wav", sine(2.0), "wav")
    for path, kind in ((wall, "image"), (tone, "audio")):
        body = wait_done(c, upload(c, path, name=path.name).json()["id"])
        assert (body["status"], body["kind"], body["label"]) == ("done", kind, "inconclusive")
        assert body["route"] == "pass" and body["review_state"] is None  # inconclusive_route defaults to pass


def test_same_bytes_are_scanned_once(svc, faces):
    c = client(svc, svc.keys["submit"])
    data = faces["real"].read_bytes() + b"\0" * 7  # bytes no other test sends (JPEG ignores the tail)
    first = wait_done(c, upload(c, data=data, name="a.jpg").json()["id"])
    second = wait_done(c, upload(c, data=data, name="b.jpg").json()["id"])
    assert first["cached_from"] is None and second["cached_from"] == first["id"]
    assert second["probability"] == first["probability"] and second["route"] == first["route"]
    assert second["verdict"]["path"] == "b.jpg" and first["verdict"]["path"] == "a.jpg"


def test_idempotency_key_makes_a_resend_return_the_first_scan(svc, faces):
    c = client(svc, svc.keys["submit"])
    data = faces["real"].read_bytes() + b"\1" * 9
    first = upload(c, data=data, name="once.jpg")  # no key: a plain second upload would be a second scan
    headers = {"Idempotency-Key": "upload-42"}
    a = c.post("/v1/scans", files={"file": ("k.jpg", data)}, headers=headers)
    b = c.post("/v1/scans", files={"file": ("k.jpg", data)}, headers=headers)
    assert a.status_code == b.status_code == 202 and a.json()["id"] == b.json()["id"] != first.json()["id"]
    # The key belongs to the API key that used it: another client's same string is another upload.
    other = client(svc, svc.keys["admin"]).post("/v1/scans", files={"file": ("k.jpg", data)}, headers=headers)
    assert other.json()["id"] != a.json()["id"]
    r = c.post("/v1/scans", files={"file": ("k.jpg", data + b"\2")}, headers=headers)
    assert r.status_code == 409 and "different file" in r.json()["detail"]
    r = c.post("/v1/scans", files={"file": ("k.txt", b"not media at all")}, headers=headers)
    assert r.status_code == 415  # a bad re-send is refused as such, whatever its key
    assert c.post("/v1/scans", files={"file": ("k.jpg", data)}, headers={"Idempotency-Key": "bad key"}).status_code \
        == 422


def test_corrupt_media_is_rejected_with_a_reason(svc):
    c = client(svc, svc.keys["submit"])
    rng = np.random.default_rng(0)
    data = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + rng.integers(0, 256, 4000, dtype=np.uint8).tobytes()
    body = wait_done(c, upload(c, data=data, name="broken.jpg").json()["id"])
    assert (body["status"], body["route"], body["label"]) == ("error", "reject", "error")
    assert body["reason"].startswith("broken.jpg: ") and str(svc.data_dir) not in body["reason"]
    assert body["verdict"]["error"] == body["reason"]


def test_wrong_type_is_415_and_nothing_is_stored(svc):
    c = client(svc, svc.keys["submit"])
    before = set((svc.data_dir / "media").rglob("*"))
    r = upload(c, data=b"GIF89a" + b"\0" * 100, name="anim.gif")
    assert r.status_code == 415 and "GIF is not supported" in r.json()["detail"]
    r = upload(c, data=b"hello, this is text\n" * 10, name="notes.txt")
    assert r.status_code == 415 and "not a media file" in r.json()["detail"]
    assert set((svc.data_dir / "media").rglob("*")) == before
    assert list((svc.data_dir / "tmp").iterdir()) == []


def _raw_post(svc, headers: str, first: bytes, total_after: int = 0, chunk: bytes = b"") -> tuple[bytes, int]:
    """Send headers and the first bytes of a body; then keep sending `chunk` until the server answers (or
    total_after bytes went out). Returns (status line, body bytes sent)."""
    s = socket.create_connection(("127.0.0.1", svc.port), timeout=30)
    s.sendall(headers.encode() + first)
    sent = len(first)
    pending = b""
    s.setblocking(False)
    answer = b""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            answer += s.recv(4096)
            if b"\r\n" in answer:
                break
        except BlockingIOError:
            pass
        if sent < total_after:
            pending = pending or chunk
            try:
                n = s.send(pending)
                sent, pending = sent + n, pending[n:]
            except (BlockingIOError, BrokenPipeError, ConnectionResetError):
                time.sleep(0.01)
        else:
            time.sleep(0.01)
    s.close()
    return answer.split(b"\r\n", 1)[0], sent


def test_oversized_upload_is_413_before_the_body_is_read(svc):
    key = svc.keys["submit"]
    head = ("POST /v1/scans HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n"
            "Content-Type: multipart/form-data; boundary=BOUNDARY\r\n").format(key)
    part = b'--BOUNDARY\r\nContent-Disposition: form-data; name="file"; filename="big.jpg"\r\n\r\n\xff\xd8\xff'
    # A declared length over the limit: refused from the headers, having read almost nothing.
    status, sent = _raw_post(svc, head + f"Content-Length: {200 * LIMIT}\r\n\r\n", part)
    assert b" 413 " in status and sent < 1000
    # No length declared (chunked): refused once the file passes the limit, long before 50x the limit is sent.
    def chunked(data: bytes) -> bytes:
        return f"{len(data):x}\r\n".encode() + data + b"\r\n"
    status, sent = _raw_post(svc, head + "Transfer-Encoding: chunked\r\n\r\n", chunked(part),
                             total_after=50 * LIMIT, chunk=chunked(b"\0" * 65536))
    assert b" 413 " in status and sent < 50 * LIMIT
    assert list((svc.data_dir / "tmp").iterdir()) == []


def test_bad_requests_get_clear_errors(svc, faces):
    c = client(svc, svc.keys["submit"])
    r = c.post("/v1/scans", data={"callback_url": "http://127.0.0.1:9/x"})
    assert r.status_code in (400, 415)
    r = c.post("/v1/scans", content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and "JSON" in r.json()["detail"]
    r = c.post("/v1/scans", content=b"x", headers={"Content-Type": "text/plain"})
    assert r.status_code == 415
    r = upload(c, faces["real"], callback_url="http://169.254.169.254/latest/meta-data")
    assert r.status_code == 403 and "allow-list" in r.json()["detail"]
    assert c.get("/v1/scans/0123456789abcdef0123456789abcdef").status_code == 404
    assert c.get("/v1/scans", params={"cursor": "abc"}).status_code == 422
    assert c.get("/v1/scans", params={"status": "nonsense"}).status_code == 422


def test_path_submissions_stay_inside_the_media_root(svc, faces, tmp_path):
    c = client(svc, svc.keys["submit"])
    (svc.media_root / "inbox").mkdir(exist_ok=True)
    (svc.media_root / "inbox" / "photo.jpg").write_bytes(faces["real"].read_bytes())
    outside = tmp_path / "secret.jpg"
    outside.write_bytes(faces["real"].read_bytes())
    (svc.media_root / "link.jpg").symlink_to(outside)
    for path in ("../secret.jpg", str(outside), "link.jpg", "inbox/../../secret.jpg"):
        r = c.post("/v1/scans", json={"path": path})
        assert r.status_code == 403 and "outside the media root" in r.json()["detail"], path
    assert c.post("/v1/scans", json={"path": "inbox/missing.jpg"}).status_code == 404
    r = c.post("/v1/scans", json={"path": "inbox/photo.jpg"})
    assert r.status_code == 202
    body = wait_done(c, r.json()["id"])
    assert body["route"] == "pass" and body["filename"] == "photo.jpg"


def test_callback_is_signed_and_retried(svc, faces, receiver):
    c = client(svc, svc.keys["submit"])
    receiver.fail_first = len(receiver.calls) + 1  # the first delivery fails: the server must retry
    url = f"http://127.0.0.1:{receiver.port}/hook"
    scan_id = upload(c, faces["fake"], name="cb.jpg", callback_url=url).json()["id"]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and c.get(f"/v1/scans/{scan_id}").json()["callback_state"] != "delivered":
        time.sleep(0.2)
    mine = [(h, b) for h, b in receiver.calls if h.get("X-Deepscreen-Scan") == scan_id]
    assert len(mine) == 2, "one failed delivery, then one retried after back-off"
    secret = (svc.data_dir / "callback-secret").read_text().strip()
    for headers, body in mine:
        expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(headers["X-Deepscreen-Signature"], expected)
    payload = json.loads(mine[-1][1])
    assert payload["id"] == scan_id and payload["route"] == "quarantine"
    assert payload["verdict"]["label"] == "manipulated"


def test_listing_filters_and_pages(svc, faces):
    c = client(svc, svc.keys["review"])
    a = client(svc, svc.keys["admin"])
    ids = [wait_done(a, upload(a, data=faces["real"].read_bytes() + bytes([i]) * 3, name=f"p{i}.jpg")
                     .json()["id"])["id"] for i in range(3)]
    seen, cursor = [], None
    while True:
        page = c.get("/v1/scans", params={"route": "pass", "limit": 2, **({"cursor": cursor} if cursor else {})})
        assert page.status_code == 200
        body = page.json()
        assert len(body["items"]) <= 2 and all(i["route"] == "pass" for i in body["items"])
        seen += [i["id"] for i in body["items"]]
        cursor = body["next_cursor"]
        if not cursor:
            break
    assert len(seen) == len(set(seen)) and set(ids) <= set(seen)
    assert seen.index(ids[2]) < seen.index(ids[0])  # newest first
    quarantined = c.get("/v1/scans", params={"route": "quarantine", "label": "manipulated"}).json()["items"]
    assert quarantined and all(i["route"] == "quarantine" for i in quarantined)
    assert c.get("/v1/scans", params={"since": "2999-01-01T00:00:00Z"}).json()["items"] == []


def test_metrics_count_routes_and_latency(svc):
    text = client(svc, svc.keys["admin"]).get("/metrics").text
    lines = dict(line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#"))
    assert float(lines['deepscreen_scans_total{label="authentic",route="pass"}']) >= 1
    assert float(lines['deepscreen_scans_total{label="manipulated",route="quarantine"}']) >= 1
    assert float(lines["deepscreen_scan_errors_total"]) >= 1
    assert float(lines["deepscreen_scan_seconds_count"]) >= 2
    assert 'deepscreen_queue_depth{status="queued"}' in lines


def test_committed_openapi_spec_is_the_served_one(svc):
    served = httpx.get(svc.url + "/openapi.json").json()
    committed = json.loads((Path(__file__).resolve().parents[1] / "docs/openapi.json").read_text())
    assert served == committed, "regenerate: python -m deepscreen.service.openapi > docs/openapi.json"


def test_schemathesis_finds_no_server_error_and_no_spec_violation(svc, tmp_path):
    """Property-based calls generated from the committed spec, against the live server. Every check runs except
    positive_data_acceptance: a schema-valid `file` of random bytes is rightly refused 415 (the schema cannot say
    "a decodable photo"), and 415 is documented."""
    st = Path(sys.executable).parent / "schemathesis"
    spec = Path(__file__).resolve().parents[1] / "docs/openapi.json"
    out = subprocess.run([str(st), "run", str(spec), "--url", svc.url,
                          "-H", f"Authorization: Bearer {svc.keys['admin']}", "--checks", "all",
                          "--exclude-checks", "positive_data_acceptance", "-n", "20", "--seed", "1",
                          "--no-color"], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "generated" in out.stdout
