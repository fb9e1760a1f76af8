"""Service settings: defaults < TOML file < DEEPSCREEN_* environment < flags, and bad values refused clearly.
Also the pieces of policy that need no server: routes of labels, callback allow-list, signatures."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

import pytest

from deepscreen.service.callbacks import check_url, sign
from deepscreen.service.policy import route
from deepscreen.service.settings import ServiceSettings, load_settings
from deepscreen.service.uploads import UploadError, display_name, resolve_under


def test_precedence_flags_over_env_over_toml_over_defaults(tmp_path):
    toml = tmp_path / "s.toml"
    toml.write_text('[service]\nport = 9000\nworkers = 3\nmanipulated = 0.7\ncallback_hosts = ["a:1", "b"]\n')
    env = {"DEEPSCREEN_WORKERS": "2", "DEEPSCREEN_ALL_FRAMES": "true", "DEEPSCREEN_CALLBACK_HOSTS": "c:2, d"}
    s = load_settings({"port": 9100, "host": None}, toml, env=env)
    assert (s.port, s.workers, s.manipulated, s.all_frames) == (9100, 2, 0.7, True)
    assert s.callback_hosts == ["c:2", "d"] and s.host == "127.0.0.1"
    assert load_settings({}, None, env={}).data_dir == Path("deepscreen-data")
    assert load_settings({}, None, env={"DEEPSCREEN_CONFIG": str(toml)}).port == 9000
    assert load_settings({}, None, env={}).url.startswith("sqlite:///")


@pytest.mark.parametrize("toml, env, message", [
    ("prot = 1\n", {}, "unknown setting(s) prot"),
    ("", {"DEEPSCREEN_SUSPICIOUS": "0.9"}, "bands must satisfy"),
    ("", {"DEEPSCREEN_INCONCLUSIVE_ROUTE": "quarantine"}, "use pass or review"),
    ("allowed_kinds = ['gif']\n", {}, "unknown kind(s) gif"),
    ("", {"DEEPSCREEN_ALL_FRAMES": "maybe"}, "not true or false"),
    ("", {"DEEPSCREEN_WORKERS": "0"}, "at least 1"),
])
def test_bad_settings_are_refused_with_a_reason(tmp_path, toml, env, message):
    f = tmp_path / "s.toml"
    f.write_text(toml)
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_settings({}, f, env=env)


def test_settings_round_trip_to_workers_and_secrets_persist(tmp_path):
    s = ServiceSettings(data_dir=tmp_path, media_root=tmp_path / "m", callback_hosts=["x:1"])
    assert ServiceSettings.from_json(s.to_json()) == s
    first = s.secret("session")
    assert len(first) >= 40 and s.secret("session") == first
    assert (tmp_path / "session-secret").stat().st_mode & 0o777 == 0o600
    assert ServiceSettings(session_secret="given").secret("session") == "given"


def test_routes_of_labels():
    assert [route(x) for x in ("authentic", "suspicious", "manipulated", "error", "inconclusive")] == \
        ["pass", "review", "quarantine", "reject", "pass"]
    assert route("inconclusive", "review") == "review"


@pytest.mark.parametrize("url, ok", [
    ("http://hooks:8000/x", True), ("https://Hooks:8000/", True), ("http://open/x", True),
    ("http://hooks:8001/x", False), ("http://169.254.169.254/", False), ("ftp://hooks:8000/", False),
    ("http://user:pw@hooks:8000/", False), ("http://[::1/", False), ("http://open.evil.com/", False),
])
def test_callback_allow_list(url, ok):
    assert (check_url(url, ["hooks:8000", "open"]) is None) == ok


def test_signature_is_hmac_sha256_of_the_body():
    body = b'{"id":"x"}'
    assert sign("k", body) == "sha256=" + hmac.new(b"k", body, hashlib.sha256).hexdigest()


def test_client_names_are_for_display_only(tmp_path):
    assert display_name("../../etc/passwd") == "passwd"
    assert display_name("C:\\Users\\a\\photo.jpg") == "photo.jpg"
    assert display_name("a\nb\x1b[31m.jpg") == "a?b?[31m.jpg"
    assert display_name("") == display_name(None) == "upload"
    root = tmp_path / "root"
    (root / "d").mkdir(parents=True)
    (root / "d" / "f.jpg").write_bytes(b"x")
    assert resolve_under(root, "d/f.jpg") == (root / "d" / "f.jpg").resolve()
    with pytest.raises(UploadError) as err:
        resolve_under(root, "d/../../x")
    assert err.value.status == 403


def test_migrations_upgrade_an_older_store_in_place(tmp_path):
    """A store made by the first schema keeps its rows when a newer server starts (Alembic, applied at start)."""
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import inspect, text

    from deepscreen.service import store

    engine = store.make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(store.__file__).parent / "migrations"))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0001")
        conn.execute(text("INSERT INTO scans (id, status, sha256, size, created_at) VALUES ('a', 'queued', 'h', 1, 0)"))
    assert "idempotency_key" not in {c["name"] for c in inspect(engine).get_columns("scans")}
    store.migrate(engine)
    store.migrate(engine)  # at every start: a no-op once current
    assert "idempotency_key" in {c["name"] for c in inspect(engine).get_columns("scans")}
    with engine.connect() as conn:
        assert conn.execute(text("SELECT id, status FROM scans")).all() == [("a", "queued")]
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0002"
