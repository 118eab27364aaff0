"""A full disk under the data home, for real: a small tmpfs is mounted there (as root, or as a mapped root in a new
user and mount namespace with ``unshare -rm`` when not root). RLIMIT_FSIZE would not do: it kills with SIGXFSZ or
gives EFBIG, not the ENOSPC a full disk gives.

``python -m tests.faults.full_disk WORKDIR`` runs the scenario and prints one JSON line: ingest on the full disk
(exit code, stderr), keyword search while it is full, then the same ingest after the disk grew, and a clean ingest
of the same files for comparison. Exit 77 when no tmpfs can be mounted here."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SKIP = 77


def mount_command(target: Path, size: str, *, remount: bool = False) -> list[str]:
    """``mount -t tmpfs`` with ``size`` at ``target``."""
    options = f"remount,size={size}" if remount else f"size={size}"
    return ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)]


def _ragent(args: list[str], home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "RAGENT_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "apps.cli.main", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def write_corpus(folder: Path, files: int = 2, lines: int = 3000) -> None:
    """Text files of random words, ~0.4 MB each."""
    rng = random.Random(1)
    folder.mkdir(parents=True, exist_ok=True)
    words = ["alpha", "beta", "gamma", "delta", "zeta", "theta"]
    for i in range(files):
        text = "\n".join(" ".join(rng.choice(words) + str(rng.randint(0, 99999)) for _ in range(12)) for _ in range(lines))
        (folder / f"f{i}.txt").write_text(text, encoding="utf-8")


def scenario(work: Path) -> dict[str, object]:
    """Run it; ``work`` must be empty or absent."""
    home, small, big, clean = work / "home", work / "small", work / "big", work / "clean-home"
    home.mkdir(parents=True)
    if subprocess.run(mount_command(home, "2m"), capture_output=True).returncode != 0:
        sys.exit(SKIP)
    try:
        small.mkdir()
        (small / "a.md").write_text("# Small\n\nChroma stores vectors.\n", encoding="utf-8")
        write_corpus(big)
        steps = [_ragent(["kb", "create", "k", "--embedder", "hash"], home), _ragent(["kb", "ingest", "k", str(small), "--no-progress"], home)]
        assert all(s.returncode == 0 for s in steps), [s.stderr for s in steps]
        full = _ragent(["kb", "ingest", "k", str(big), "--no-progress"], home)
        search = _ragent(["kb", "search", "k", "Chroma vectors", "--mode", "bm25", "--json"], home)
        subprocess.run(mount_command(home, "128m", remount=True), check=True)
        again = _ragent(["kb", "ingest", "k", str(big), "--no-progress", "--json"], home)
        listed = _ragent(["kb", "list", "--json"], home)
    finally:
        subprocess.run(["umount", "-l", str(home)], capture_output=True)
    # The same two ingests on a disk with room, in this process (no CLI start-up to wait for), for comparison.
    from knowledge.ingest import ingest
    from knowledge.registry import KnowledgeBaseRegistry

    reference = KnowledgeBaseRegistry(clean).create("k", embedder="hash")
    ingest(reference, [small])
    ingest(reference, [big])
    clean_chunks = reference.manifest.n_chunks()
    shutil.rmtree(clean, ignore_errors=True)
    return {
        "full_rc": full.returncode, "full_stderr": full.stderr, "search_rc": search.returncode, "search_stdout": search.stdout,
        "again_rc": again.returncode, "again_stderr": again.stderr,
        "chunks": json.loads(listed.stdout)[0]["chunks"] if listed.returncode == 0 else None,
        "clean_chunks": clean_chunks,
    }


def run_isolated(work: Path) -> dict[str, object] | None:
    """The scenario in a process that may mount: itself as root, else under ``unshare -rm``. None when neither can."""
    command = [sys.executable, "-m", "tests.faults.full_disk", str(work)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    attempts = [command] if os.geteuid() == 0 else []
    if shutil.which("unshare"):
        attempts.append(["unshare", "-rm", *command])
    for attempt in attempts:
        done = subprocess.run(attempt, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
        if done.returncode == 0:
            return dict(json.loads(done.stdout.strip().splitlines()[-1]))
        namespace_refused = attempt[0] == "unshare" and "unshare failed" in done.stderr
        if done.returncode != SKIP and not namespace_refused:
            raise RuntimeError(done.stderr[-2000:])  # the scenario itself failed: that is a finding, not a skip
        shutil.rmtree(work, ignore_errors=True)
    return None


if __name__ == "__main__":
    print(json.dumps(scenario(Path(sys.argv[1]))))
