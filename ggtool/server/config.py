"""Server configuration from the environment, with Ollama's variable names and defaults.

`GGTOOL_*` variables override their `OLLAMA_*` counterparts. Values are trimmed of spaces and
quotes as Ollama's envconfig does.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from ggtool.errors import UsageError
from ggtool.runner.base import PROMPT_CACHE_MODES

DEFAULT_PORT = 11434
DEFAULT_KEEP_ALIVE = 300.0  # 5m
FOREVER = math.inf
MEMORY_FRACTION = 0.8  # of available memory, like Ollama's 80%-of-free fit rule


def env(name: str, default: str = "") -> str:
    """GGTOOL_<X> over OLLAMA_<X> over default (for names given as OLLAMA_<X>)."""
    for key in (name.replace("OLLAMA_", "GGTOOL_", 1), name):
        v = os.environ.get(key)
        if v is not None:
            v = v.strip().strip("\"'").strip()
            if v:
                return v
    return default


@dataclass(frozen=True)
class HostPort:
    scheme: str
    host: str
    port: int
    path: str = ""

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}{self.path}"

    @property
    def client_url(self) -> str:
        """Where a client connects: 0.0.0.0 / :: mean this machine's loopback."""
        host = self.host
        if host in ("0.0.0.0", "", "::"):
            host = "127.0.0.1"
        host = f"[{host}]" if ":" in host else host
        return f"{self.scheme}://{host}:{self.port}{self.path}"


def parse_host(value: str | None) -> HostPort:
    """Ollama's envconfig.Host: `[scheme://]host[:port][/path]`, default 127.0.0.1:11434."""
    s = (value or "").strip().strip("\"'").strip()
    if not s:
        return HostPort("http", "127.0.0.1", DEFAULT_PORT)
    scheme, _, rest = s.partition("://") if "://" in s else ("http", "", s)
    default_port = {"http": 80, "https": 443}.get(scheme, DEFAULT_PORT) if "://" in s else DEFAULT_PORT
    if rest == "ollama.com":
        return HostPort("https", "ollama.com", 443)
    hostport, slash, path = rest.partition("/")
    parts = urlsplit(f"//{hostport}")
    try:
        port = parts.port
    except ValueError:
        port = None
        hostport = parts.hostname or ""
    host = parts.hostname if parts.hostname is not None else hostport
    if port is None:
        port = default_port
    if not host:
        host = "127.0.0.1"
    return HostPort(scheme, host, port, (slash + path).rstrip("/"))


_DURATION_RE = re.compile(r"([0-9]*\.?[0-9]+)(ns|us|µs|μs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_go_duration(s: str) -> float:
    """time.ParseDuration in seconds ("5m", "1h30m", "-1m", "300ms", "0")."""
    t = s.strip()
    if not t:
        raise ValueError("empty duration")
    sign = 1.0
    if t[0] in "+-":
        sign = -1.0 if t[0] == "-" else 1.0
        t = t[1:]
    if t == "0":
        return 0.0
    pos = 0
    total = 0.0
    while pos < len(t):
        m = _DURATION_RE.match(t, pos)
        if not m:
            raise ValueError(f'time: invalid duration "{s}"')
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    return sign * total


def parse_keep_alive_env(s: str) -> float:
    """OLLAMA_KEEP_ALIVE: a Go duration or an integer of seconds; negative = forever."""
    try:
        d = parse_go_duration(s)
    except ValueError:
        try:
            d = float(int(s))
        except ValueError:
            return DEFAULT_KEEP_ALIVE
    return FOREVER if d < 0 else d


def parse_size(s: str) -> int:
    """Bytes from "8589934592", "8G", "8GiB", "512MB", "1.5g"."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kmgt]?)(i?b?)\s*", s.lower())
    if not m:
        raise UsageError(f"invalid size {s!r}", hint="use bytes or a suffix like 8G / 512MiB")
    n = float(m.group(1))
    mult = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}[m.group(2)]
    if m.group(2) and m.group(3) in ("b",):  # "GB" etc: decimal
        mult = {"k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}[m.group(2)]
    return int(n * mult)


def available_memory() -> int:
    """MemAvailable from /proc/meminfo, else total physical memory."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 8 << 30


def _int(name: str, default: int) -> int:
    v = env(name)
    if not v:
        return default
    try:
        return int(v)
    except ValueError:
        raise UsageError(f"{name}={v!r} is not an integer") from None


def _choice(name: str, allowed: tuple[str, ...]) -> str:
    """One of `allowed` (the first is the default)."""
    v = env(name).lower() or allowed[0]
    if v not in allowed:
        raise UsageError(f"{name}={v!r} is not one of: {', '.join(allowed)}")
    return v


def _bool(name: str, default: bool | None) -> bool | None:
    v = env(name).lower()
    if not v:
        return default
    return v in ("1", "true", "yes", "on", "t")


@dataclass
class ServerConfig:
    host: HostPort = field(default_factory=lambda: parse_host(env("OLLAMA_HOST")))
    models: Path | None = None  # store root; None = the store's default ($OLLAMA_MODELS …)
    keep_alive: float = field(default_factory=lambda: parse_keep_alive_env(env("OLLAMA_KEEP_ALIVE", "5m")))
    max_loaded_models: int = field(default_factory=lambda: _int("OLLAMA_MAX_LOADED_MODELS", 0) or 3)
    num_parallel: int = field(default_factory=lambda: max(1, _int("OLLAMA_NUM_PARALLEL", 1)))
    max_queue: int = field(default_factory=lambda: max(1, _int("OLLAMA_MAX_QUEUE", 512)))
    context_length: int = field(default_factory=lambda: _int("OLLAMA_CONTEXT_LENGTH", 0) or 4096)
    origins: list[str] = field(
        default_factory=lambda: [o.strip() for o in env("OLLAMA_ORIGINS").split(",") if o.strip()]
    )
    max_memory: int = field(
        default_factory=lambda: parse_size(env("GGTOOL_MAX_MEMORY"))
        if env("GGTOOL_MAX_MEMORY") else int(available_memory() * MEMORY_FRACTION)
    )
    go_template: bool | None = field(default_factory=lambda: _bool("OLLAMA_GO_TEMPLATE", None))
    flash_attention: bool = field(default_factory=lambda: bool(_bool("OLLAMA_FLASH_ATTENTION", False)))
    kv_cache_type: str = field(default_factory=lambda: env("OLLAMA_KV_CACHE_TYPE", "f16").lower())
    load_timeout: float = field(
        default_factory=lambda: (lambda d: 1e9 if d <= 0 else d)(parse_keep_alive_env(env("OLLAMA_LOAD_TIMEOUT", "5m")))
    )
    num_thread: int = field(default_factory=lambda: _int("GGTOOL_NUM_THREAD", 0))
    prompt_cache: str = field(default_factory=lambda: _choice("GGTOOL_PROMPT_CACHE", PROMPT_CACHE_MODES))
    debug: bool = field(default_factory=lambda: env("OLLAMA_DEBUG", "0") not in ("0", "false", ""))
    max_body: int = field(default_factory=lambda: _int("GGTOOL_MAX_REQUEST_BODY", 64 << 20))

    @property
    def binds_loopback(self) -> bool:
        h = self.host.host
        return h in ("localhost", "::1") or h.startswith("127.")
