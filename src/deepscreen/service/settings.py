"""Service settings, from (highest first) command-line flags, DEEPSCREEN_* environment variables, a TOML file,
and the defaults below. Every field is documented in docs/service.md."""

from __future__ import annotations

import json
import os
import secrets
import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

ROUTES = ("pass", "review", "quarantine", "reject")
KINDS = ("image", "video", "audio")


def _default_workers() -> int:
    # One scan process per core, at most four. On 2 cores, two workers gave 25 % more verdicts per second than one
    # (benchmarks/bench_service.py: 15.7 vs 12.5 photos/s) and uploads were still accepted at 40/s; past four,
    # each worker's own threads (the supervisor shares the cores among them) use the extra cores better than
    # more copies of the models in memory would.
    return max(1, min(os.cpu_count() or 2, 4))


@dataclass
class ServiceSettings:
    data_dir: Path = Path("deepscreen-data")
    database_url: str | None = None  # None: SQLite in WAL mode at <data_dir>/deepscreen.db
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = field(default_factory=_default_workers)
    media_root: Path | None = None  # {"path": ...} submissions allowed only below it; None disables them
    max_upload_bytes: int = 100 * 1024**2
    suspicious: float = 0.25  # probability bands, as `deepscreen scan --suspicious-from / --threshold`
    manipulated: float = 0.5
    inconclusive_route: str = "pass"  # where files with no face and no speech go: pass or review
    allowed_kinds: list[str] = field(default_factory=lambda: list(KINDS))  # others are routed `reject`
    frames: int = 16  # video frames analysed per file
    all_frames: bool = False
    callback_hosts: list[str] = field(default_factory=list)  # host or host:port; nothing else is ever called
    callback_secret: str | None = None  # None: generated once, kept in <data_dir>/callback-secret
    callback_max_attempts: int = 6
    session_secret: str | None = None  # None: generated once, kept in <data_dir>/session-secret
    job_max_attempts: int = 3  # a file that crashed the scanner this often is routed `reject`
    server_lease_s: float = 30.0  # a server silent this long has its running jobs re-queued by the others

    def __post_init__(self):
        self.data_dir = Path(self.data_dir)
        if self.media_root is not None:
            self.media_root = Path(self.media_root)
        if not 0.0 < self.suspicious <= self.manipulated <= 1.0:
            raise ValueError(f"bands must satisfy 0 < suspicious ({self.suspicious:g}) <= manipulated "
                             f"({self.manipulated:g}) <= 1")
        if self.inconclusive_route not in ("pass", "review"):
            raise ValueError(f"inconclusive_route {self.inconclusive_route!r}: use pass or review")
        bad = [k for k in self.allowed_kinds if k not in KINDS]
        if bad:
            raise ValueError(f"allowed_kinds: unknown kind(s) {', '.join(bad)}; use {', '.join(KINDS)}")
        if self.workers < 1:
            raise ValueError("workers must be at least 1")
        if self.max_upload_bytes < 1:
            raise ValueError("max_upload_bytes must be positive")

    @property
    def url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'deepscreen.db').resolve()}"

    def secret(self, name: str) -> str:
        """A configured secret, or one generated on first use and kept in the data dir (mode 0600), so sessions
        and callback signatures survive restarts without anyone having to invent a secret."""
        value = getattr(self, f"{name}_secret")
        if value:
            return value
        path = self.data_dir / f"{name}-secret"
        if not path.exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(32))
        return path.read_text().strip()

    def to_json(self) -> str:
        d = asdict(self)
        return json.dumps({k: (str(v) if isinstance(v, Path) else v) for k, v in d.items()})

    @classmethod
    def from_json(cls, text: str) -> "ServiceSettings":
        return cls(**json.loads(text))


def _coerce(name: str, raw: Any) -> Any:
    """A value from env or TOML, made the type of the field."""
    kind = {f.name: f.type for f in fields(ServiceSettings)}[name]
    if raw is None:
        return None
    if "list" in str(kind):
        if isinstance(raw, str):
            return [s.strip() for s in raw.split(",") if s.strip()]
        return [str(s) for s in raw]
    if "bool" in str(kind):
        if isinstance(raw, bool):
            return raw
        if str(raw).lower() in ("1", "true", "yes", "on"):
            return True
        if str(raw).lower() in ("0", "false", "no", "off", ""):
            return False
        raise ValueError(f"{name}: {raw!r} is not true or false")
    if "int" in str(kind) and "Path" not in str(kind):
        return int(raw)
    if "float" in str(kind):
        return float(raw)
    return str(raw) if not isinstance(raw, (str, Path)) else raw


def load_settings(flags: dict[str, Any] | None = None, config_file: Path | None = None,
                  env: dict[str, str] | None = None) -> ServiceSettings:
    """Defaults < TOML file < DEEPSCREEN_<NAME> environment < flags (those not None)."""
    env = os.environ if env is None else env
    names = {f.name for f in fields(ServiceSettings)}
    values: dict[str, Any] = {}
    config_file = config_file or (Path(env["DEEPSCREEN_CONFIG"]) if env.get("DEEPSCREEN_CONFIG") else None)
    if config_file is not None:
        with open(config_file, "rb") as f:
            data = tomllib.load(f)
        data = data.get("service", data)  # a [service] table, or the keys at top level
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"{config_file}: unknown setting(s) {', '.join(unknown)}")
        values.update({k: _coerce(k, v) for k, v in data.items()})
    for name in names:
        raw = env.get(f"DEEPSCREEN_{name.upper()}")
        if raw is not None:
            values[name] = _coerce(name, raw)
    values.update({k: v for k, v in (flags or {}).items() if v is not None})
    return ServiceSettings(**values)
