"""The OCI distribution client: pull, push, login (Ollama's registry, registry:2, Harbor, Zot, GHCR).

Modules: transport (HTTP, retries, TLS options), auth + credentials + ollama_key (401
handling, where secrets come from, Ollama's ed25519 identity), download (one blob in
resumable ranged parts), pull, push, login.
"""

from ggtool.registry.login import login, logout
from ggtool.registry.pull import PullOptions, PullResult, pull
from ggtool.registry.push import PushOptions, PushResult, push
from ggtool.registry.transport import TransportOptions

__all__ = [
    "PullOptions",
    "PullResult",
    "PushOptions",
    "PushResult",
    "TransportOptions",
    "login",
    "logout",
    "pull",
    "push",
]
