"""Pull speed: ggtool vs `skopeo copy docker://… dir:…` vs `curl` of the same blob, one run.

    python bench/pull.py [--size-mib 1024] [--rounds 3]

Starts Debian's docker-registry on 127.0.0.1 with a temporary storage folder, pushes a model
whose weights are SIZE MiB of random bytes with an OCI image manifest (ggtool push uploads
the exact bytes), warms the page cache with one untimed GET, then per round times:

- ggtool: `ggtool pull --plain-http --quiet` as a process into an empty store (digest
  verified while streaming, final check before the rename, as always);
- skopeo: `skopeo copy --src-tls-verify=false docker://… dir:…` (verifies digests too);
- curl: `curl -o FILE` of the weights blob alone (no verification): the write ceiling;
  and `curl -o /dev/null` (network only), for reference.

ggtool's bytecode is compiled first, as `pip install` does. Every timed run starts after `sync`,
so no run pays for writing back the previous one's file (`--no-sync` lets that writeback
compete, as it does on a busy system).

Rates are blob bytes / wall seconds (MB = 10^6 bytes), best of --rounds each; outputs are
deleted between rounds. Targets: ggtool ≥ 3× skopeo and ≥ 70% of curl-to-file.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ggtool.manifest import (  # noqa: E402
    MEDIA_TYPE_MODEL,
    MEDIA_TYPE_OCI_CONFIG,
    MEDIA_TYPE_OCI_MANIFEST,
    ModelConfig,
)
from ggtool.registry import PushOptions, TransportOptions, push  # noqa: E402
from ggtool.store import Store  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_registry(folder: Path) -> tuple[subprocess.Popen, str]:
    exe = shutil.which("docker-registry")
    if exe is None:
        sys.exit("docker-registry is not installed (apt-get install docker-registry)")
    port = free_port()
    host = f"127.0.0.1:{port}"
    config = {
        "version": 0.1,
        "log": {"level": "error", "accesslog": {"disabled": True}},
        "storage": {"filesystem": {"rootdirectory": str(folder / "data")}},
        "http": {"addr": host, "secret": secrets.token_hex(16)},
    }
    (folder / "config.yml").write_text(json.dumps(config))
    proc = subprocess.Popen(
        [exe, "serve", str(folder / "config.yml")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    for _ in range(300):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc, host
        except OSError:
            time.sleep(0.05)
    proc.kill()
    sys.exit("docker-registry did not start")


def make_model(store: Store, name: str, size: int) -> str:
    """Random weights + an Ollama config, under an OCI image manifest; returns the weights digest."""
    src = store.root.parent / "weights.bin"
    h = hashlib.sha256()
    with open(src, "wb") as f:
        left = size
        while left:
            chunk = os.urandom(min(left, 64 << 20))
            f.write(chunk)
            h.update(chunk)
            left -= len(chunk)
    with store.lease() as lease:
        weights = store.put_file(src, lease=lease)
        cfg = ModelConfig(
            model_format="gguf",
            model_family="llama",
            model_families=["llama"],
            model_type="1B",
            file_type="F16",
        ).to_bytes()
        config = store.put_bytes(cfg, lease=lease)
        manifest = {
            "schemaVersion": 2,
            "mediaType": MEDIA_TYPE_OCI_MANIFEST,
            "config": {
                "mediaType": MEDIA_TYPE_OCI_CONFIG,
                "digest": config.digest,
                "size": config.size,
            },
            "layers": [
                {"mediaType": MEDIA_TYPE_MODEL, "digest": weights.digest, "size": weights.size}
            ],
        }
        store.write_manifest(name, json.dumps(manifest, separators=(",", ":")).encode())
    src.unlink()
    return weights.digest


CPU: dict[str, list[float]] = {}


SYNC = True


def timed(cmd: list[str], env: dict[str, str] | None = None, label: str = "") -> float:
    """Wall seconds of one process; its CPU seconds (user + sys) are kept under `label`."""
    if SYNC:
        os.sync()  # start every run with no dirty pages of the previous one being written back
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    r = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    dt = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode != 0:
        sys.exit(f"{cmd[0]} failed: {r.stderr.decode()[-1000:]}")
    if label:
        used = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        CPU.setdefault(label, []).append(used)
    return dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument(
        "--no-sync",
        action="store_true",
        help="do not sync before each run (earlier runs' writeback then competes, as in a busy system)",
    )
    args = ap.parse_args()
    global SYNC
    SYNC = not args.no_sync
    size = args.size_mib << 20
    for tool in ("skopeo", "curl"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is not installed")
    work = Path(
        tempfile.mkdtemp(prefix="ggtool-bench-pull-", dir=os.environ.get("TMPDIR", "/var/tmp"))
    )
    proc, host = start_registry(work)
    try:
        src = Store(work / "src")
        name = f"{host}/bench/model:oci"
        digest = make_model(src, name, size)
        push(name, store=src, options=PushOptions(transport=TransportOptions(plain_http=True)))
        shutil.rmtree(src.root)
        blob_url = f"http://{host}/v2/bench/model/blobs/{digest}"
        timed(["curl", "-sf", "-o", "/dev/null", blob_url])  # warm the registry's page cache
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        # pip compiles an installed ggtool's bytecode at install time; compile this checkout's
        # once, so every timed run starts as an installed one does (PYTHONDONTWRITEBYTECODE or not)
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "ggtool")], check=True)
        runs: dict[str, list[float]] = {"ggtool": [], "skopeo": [], "curl": [], "curl-null": []}
        out = work / "out"

        def run_curl() -> None:
            runs["curl"].append(
                timed(["curl", "-sf", "-o", str(work / "curl.bin"), blob_url], label="curl")
            )
            (work / "curl.bin").unlink()
            runs["curl-null"].append(
                timed(["curl", "-sf", "-o", "/dev/null", blob_url], label="curl-null")
            )

        def run_ggtool() -> None:
            cmd = [
                sys.executable,
                "-m",
                "ggtool.cli.app",
                "pull",
                name,
                "--plain-http",
                "--quiet",
                "--store",
                str(out),
            ]
            runs["ggtool"].append(timed(cmd, env=env, label="ggtool"))
            got = Store(out).blob_path(digest)
            assert got.stat().st_size == size, "ggtool pull produced a wrong blob"
            shutil.rmtree(out)

        def run_skopeo() -> None:
            cmd = [
                "skopeo",
                "copy",
                "-q",
                "--src-tls-verify=false",
                f"docker://{name}",
                f"dir:{work / 'skopeo'}",
            ]
            runs["skopeo"].append(timed(cmd, label="skopeo"))
            shutil.rmtree(work / "skopeo")

        order = [run_curl, run_ggtool, run_skopeo]
        for i in range(args.rounds):
            for fn in order[i % 3 :] + order[: i % 3]:  # rotate, so no tool always goes first
                fn()
        rate = {k: size / min(v) / 1e6 for k, v in runs.items()}
        sync = "sync before each run" if SYNC else "no sync between runs"
        print(
            f"blob: {args.size_mib} MiB, OCI manifest, docker-registry on loopback, "
            f"best of {args.rounds}, {sync}"
        )
        for k in ("ggtool", "skopeo", "curl", "curl-null"):
            times = ", ".join(f"{t:.2f}" for t in runs[k])
            cpu = min(CPU[k]) / (size / 2**30)
            print(f"  {k:9s} {rate[k]:7.0f} MB/s   {cpu:5.2f} CPU s/GiB   (runs: {times} s)")
        print(f"  ggtool / skopeo        = {rate['ggtool'] / rate['skopeo']:.2f}x   (target >= 3x)")
        print(f"  ggtool / curl-to-file  = {rate['ggtool'] / rate['curl']:.0%}    (target >= 70%)")
        print(f"  ggtool / curl-to-null  = {rate['ggtool'] / rate['curl-null']:.0%}")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
