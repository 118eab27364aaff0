"""Every fault of issue 14 on real processes and full-size hostile files, as one table.

    .venv/bin/python benchmarks/faults.py            # ~3-5 minutes on 2 shared cores; prints a markdown table

Columns: case, expected, got, lost data (chunks or samples lost or doubled, or a file read from outside the folder),
and ok (got what was expected). Nothing is downloaded; every file is generated in a temporary folder.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from llm_backend.client import OpenAIChatClient  # noqa: E402
from llm_backend.errors import BackendError, BackendTimeoutError, StreamInterruptedError  # noqa: E402
from llm_backend.settings import Settings  # noqa: E402
from llm_backend.testing import FakeOpenAIServer, FakeReply  # noqa: E402
from tests.evaluation.conftest import TINY_TASK, write_tiny  # noqa: E402
from tests.faults.conftest import RAGENT, cli_env, ragent, server_process  # noqa: E402
from tests.faults.full_disk import run_isolated  # noqa: E402
from tests.knowledge import hostile  # noqa: E402

Row = tuple[str, str, str, str, bool]
ROWS: list[Row] = []


def row(case: str, expected: str, got: str, lost: bool, ok: bool) -> None:
    """Record one line of the table (and show it at once)."""
    ROWS.append((case, expected, got, "yes" if lost else "no", ok))
    print(f"{'ok ' if ok else 'BAD'} {case}: {got}", file=sys.stderr, flush=True)


def short(text: str, n: int = 110) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def first_error(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.startswith("error:")]
    return lines[0] if lines else stderr.strip().splitlines()[-1] if stderr.strip() else "(nothing on stderr)"


# -- the bad-file corpus, in one ingest through the CLI ----------------------------------------------------------------
def bad_files(work: Path) -> None:
    trap = hostile.make_link_trap(work / "links")
    folder = trap["folder"]
    hostile.write_zip_bomb_docx(folder / "bomb.docx", 300 * hostile.MiB)  # default limit 256 MiB
    hostile.write_many_pages_pdf(folder / "manual.pdf", 3000)  # default limit 2000 pages
    hostile.write_deep_pdf(folder / "deep.pdf", 50_000)
    hostile.write_sparse(folder / "giant.txt", 1024 * hostile.MiB)
    hostile.write_long_line(folder / "one line.txt", 10 * hostile.MiB)
    hostile.write_deep_html(folder / "deep.html", 100_000)
    hostile.write_encrypted_pdf(folder / "restricted.pdf", user_password="")
    hostile.write_encrypted_pdf(folder / "locked.pdf", user_password="pw")
    (folder / "corrupt.pdf").write_bytes(b"%PDF-1.4\n this is not really a pdf")
    home = work / "home"
    ragent(["kb", "create", "k", "--embedder", "none"], home)
    t0 = time.perf_counter()
    done = ragent(["kb", "ingest", "k", str(folder), "--no-progress", "--json"], home, timeout=900)
    seconds = time.perf_counter() - t0
    report = json.loads(done.stdout) if done.returncode == 0 else {"failed": [], "added": []}
    reasons = {Path(f["path"]).name: f["reason"] for f in report["failed"]}
    added = sorted(Path(p).name for p in report["added"])
    search = ragent(["kb", "search", "k", "root secret-token-4711", "--mode", "bm25", "--json"], home)
    leaked = "secret-token-4711" in search.stdout
    raw = [ln for ln in done.stderr.splitlines() if "pypdf" in ln or "WARNING" in ln]
    row("ingest exit / raw library lines on stderr", "exit 0, no raw line", f"exit {done.returncode}, {len(raw)} raw lines, {seconds:.0f} s for the batch", False, done.returncode == 0 and not raw)
    expect = {
        "link.txt": ("symlink to a file outside", "skipped: link.txt -> outside the folder"),
        "etc": ("symlink to a folder outside", "skipped: etc -> outside the folder"),
        "broken.md": ("broken symlink", "skipped: broken.md -> broken link"),
        "bomb.docx": ("docx zip bomb, 300 MiB unpacked", "zip bomb"),
        "manual.pdf": ("pdf of 3,000 pages", "3000 pages"),
        "deep.pdf": ("pdf with an array nested 50,000 deep", "pdf"),
        "giant.txt": ("1 GiB text file (sparse)", "too large"),
        "one line.txt": ("10 MiB single line", "RAGENT_MAX_LINE_CHARS"),
        "deep.html": ("html nested 100,000 deep", "RAGENT_MAX_HTML_DEPTH"),
        "locked.pdf": ("encrypted pdf with a password", "encrypted: "),
        "corrupt.pdf": ("corrupt pdf (no EOF marker)", "EOF marker not found"),
    }
    for name, (case, needle) in expect.items():
        got = reasons.get(name, "ingested" if name in added else "(not reported)")
        ok = needle in got and got.count("EOF marker not found") <= 1
        row(case, f"reported: …{needle}…", short(got), False, ok)
    row("symlink loop inside (sub/loop -> ..) and inside link", "followed once", f"added {added}", False,
        added == ["notes.md", "restricted.pdf"])
    row("encrypted pdf, empty user password", "opened", "ingested" if "restricted.pdf" in added else reasons.get("restricted.pdf", "?"), False, "restricted.pdf" in added)
    row("file outside the folder readable through search", "0 files read from outside", "secret found" if leaked else "0 files read from outside", leaked, not leaked)


# -- killed and concurrent processes -------------------------------------------------------------------------------
def slow_ingest(home: Path, name: str, folder: Path, per_text: float) -> subprocess.Popen[str]:
    args = [sys.executable, str(REPO / "tests" / "knowledge" / "slow_cli.py"), str(per_text), "kb", "ingest", name, str(folder), "--no-progress"]
    return subprocess.Popen(args, cwd=REPO, env=cli_env(home), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def manifest_ids(home: Path, name: str) -> list[str]:
    data = json.loads((home / "kb" / name / "manifest.json").read_text())
    return sorted(cid for f in data["files"].values() for cid in f["chunk_ids"])


def corpus(folder: Path, files: int = 40) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(files):
        (folder / f"doc{i:02d}.md").write_text(f"# Doc {i}\n\n" + f"Sentence {i} about retrieval and ranking. " * 60, encoding="utf-8")
    return folder


def killed_ingest(work: Path) -> None:
    docs = corpus(work / "docs")
    clean, home = work / "clean", work / "home"
    for h in (clean, home):
        ragent(["kb", "create", "k", "--embedder", "hash"], h)
    ragent(["kb", "ingest", "k", str(docs), "--no-progress"], clean)
    want = manifest_ids(clean, "k")
    proc = slow_ingest(home, "k", docs, 0.05)  # ~4 s of embedding
    deadline = time.monotonic() + 120
    committed = 0
    while time.monotonic() < deadline and proc.poll() is None and committed < 3:
        time.sleep(0.05)
        with contextlib.suppress(OSError, ValueError):  # not written yet, or being replaced
            committed = len(json.loads((home / "kb" / "k" / "manifest.json").read_text())["files"])
    alive = proc.poll() is None
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    again = ragent(["kb", "ingest", "k", str(docs), "--no-progress"], home)
    got = manifest_ids(home, "k")
    listed = json.loads(ragent(["kb", "list", "--json"], home).stdout)[0]
    same = got == want and listed["chunks"] == len(want) and len(set(got)) == len(got)
    said = short(again.stdout, 80) if again.returncode == 0 else short(first_error(again.stderr), 80)
    row("kill -9 mid-ingest, then the same command", "same chunk ids and count as a clean run",
        f"killed {'mid-run' if alive else 'AFTER the run'} with {committed} of 40 files committed; rerun: {len(got)} chunks, ids "
        f"{'identical' if got == want else 'DIFFERENT'}; {said}", not same, same and again.returncode == 0 and alive)


def two_ingests(work: Path) -> None:
    docs = corpus(work / "docs2")
    home = work / "home2"
    ragent(["kb", "create", "k", "--embedder", "hash"], home)
    a = slow_ingest(home, "k", docs, 0.005)
    time.sleep(3)
    b = subprocess.run([*RAGENT, "kb", "ingest", "k", str(docs), "--no-progress"], cwd=REPO, env=cli_env(home), capture_output=True, text=True)
    a.wait(300)
    ids = manifest_ids(home, "k")
    ok = a.returncode == 0 and b.returncode != 0 and "Traceback" not in b.stderr and len(ids) == len(set(ids))
    row("two ingests of one base at once", "second refused clearly, base intact", f"second: exit {b.returncode}: {short(first_error(b.stderr), 90)}; {len(ids)} chunks", False, ok)


def eval_kill_9(work: Path) -> None:
    n = 16
    write_tiny(work / "data", n=n)
    task = work / "tiny.yaml"
    task.write_text(TINY_TASK)
    run_dir, home = work / "run-k9", work / "home-k9"
    with server_process() as server:
        base = [*RAGENT, "eval", "run", str(task), "--data-dir", str(work / "data"), "--out", str(run_dir), "--no-cache", "-c", "2", "--no-report", "--base-url", server.url]
        proc = subprocess.Popen(base, cwd=REPO, env=cli_env(home), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        samples = run_dir / "samples.jsonl"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (samples.is_file() and samples.read_text().count("\n") >= 5):
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        before = samples.read_text().count("\n")
        again = subprocess.run(base, cwd=REPO, env=cli_env(home), capture_output=True, text=True)
    ids = [json.loads(line)["sample_id"] for line in samples.read_text().splitlines()]
    ok = again.returncode == 0 and sorted(ids, key=int) == [str(i) for i in range(n)]
    row("kill -9 mid-eval, then the same command", "every sample once, none lost", f"{before} saved before the kill, {len(ids)} after, {len(set(ids))} distinct", not ok, ok)


def server_killed(work: Path) -> None:
    home = work / "home-ask"
    docs = work / "ask-docs"
    docs.mkdir()
    (docs / "r.md").write_text("# Retrieval\n\nChroma stores the vectors. BM25 finds the words.\n", encoding="utf-8")
    ragent(["kb", "create", "k", "--embedder", "none"], home)
    ragent(["kb", "ingest", "k", str(docs), "--no-progress"], home)
    cases: list[tuple[str, list[str]]] = [
        ("model server killed mid-stream: kb ask", ["kb", "ask", "k", "What stores the vectors?", "--mode", "bm25"]),
        ("model server killed mid-request: agent run", ["agent", "run", "What is 6 times 7?", "--tools", "calculator", "-q"]),
    ]
    for case, args in cases:
        with server_process() as server:
            server.kill_mid_stream(after=1.0)
            done = ragent([*args, "--base-url", server.url], home)
        ok = done.returncode != 0 and "Traceback" not in done.stderr and "error:" in done.stderr
        row(case, "clear message, no traceback", short(first_error(done.stderr)), False, ok)
    n = 12
    write_tiny(work / "data-e", n=n)
    task = work / "tiny-e.yaml"
    task.write_text(TINY_TASK)
    run_dir = work / "run-e"
    base = ["eval", "run", str(task), "--data-dir", str(work / "data-e"), "--out", str(run_dir), "--no-cache", "-c", "2", "--no-report"]
    with server_process() as server:
        server.kill_mid_stream(after=2.0)
        first = ragent([*base, "--base-url", server.url], home, timeout=180)
        port = server.port
    with server_process(port) as again:
        second = ragent([*base, "--base-url", again.url], home, timeout=180)
    ids = [json.loads(line)["sample_id"] for line in (run_dir / "samples.jsonl").read_text().splitlines()]
    ok = first.returncode != 0 and "Traceback" not in first.stderr and second.returncode == 0 and sorted(ids, key=int) == [str(i) for i in range(n)]
    row("model server killed mid-eval, then the same command", "clear message; resumes, every sample once",
        short(first_error(first.stderr), 70) + f" → rerun exit {second.returncode}, {len(ids)}/{n} samples", not ok, ok)


# -- the server answering badly (one client, in process) ---------------------------------------------------------------
def bad_answers() -> None:
    def chat(url: str, **settings: Any) -> str:
        client = OpenAIChatClient(Settings.load(base_url=url, **settings))
        return client.chat([{"role": "user", "content": "hi"}]).text

    def attempt(fn: Callable[[], str]) -> tuple[str, type[BaseException] | None]:
        try:
            return fn(), None
        except BaseException as exc:
            return short(f"{type(exc).__name__}: {exc}", 100), type(exc)

    with FakeOpenAIServer([FakeReply(status=500), FakeReply(status=500), "fine"]) as server:
        got, exc = attempt(lambda: chat(server.url, max_retries=3))
        row("server answers 500 twice, then 200", "retried with backoff, answer", f"{got!r} after {len(server.chat_requests())} requests", False, exc is None and got == "fine")
    with FakeOpenAIServer([FakeReply(status=500)] * 3) as server:
        got, exc = attempt(lambda: chat(server.url, max_retries=2))
        row("server answers 500 to the end", "clear error after retries", got, False, exc is not None and issubclass(exc, BackendError))
    with FakeOpenAIServer([FakeReply(text="late", delay=3.0)] * 2) as server:
        got, exc = attempt(lambda: chat(server.url, max_retries=1, timeout=0.5))
        row("server does not answer in time", "clear timeout error", got, False, exc is BackendTimeoutError)
    with FakeOpenAIServer([FakeReply(text="one two three four five six", drop_after=3)]) as server:
        client = OpenAIChatClient(Settings.load(base_url=server.url, max_retries=0))
        partial = ""
        try:
            for chunk in client.stream([{"role": "user", "content": "hi"}]):
                partial += chunk.delta
            got, ok = "stream completed?!", False
        except StreamInterruptedError as exc:
            got, ok = f"StreamInterruptedError, partial {exc.partial!r} kept", exc.partial == partial != ""
        row("SSE stream cut off", "not retried (text shown); partial kept", got, False, ok)
    import http.server
    import threading

    from tests.llm_backend.test_faults_client import _Malformed

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Malformed)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    got, exc = attempt(lambda: chat(f"http://127.0.0.1:{httpd.server_port}/v1", max_retries=0))
    httpd.shutdown()
    row("server answers malformed JSON", "clear error", got, False, exc is not None and issubclass(exc, BackendError))


def full_disk(work: Path) -> None:
    result = run_isolated(work / "disk")
    if result is None:
        row("full disk under the data home", "clear error, base readable", "NOT RUN: cannot mount a tmpfs here", False, False)
        return
    ok = result["full_rc"] == 1 and "Traceback" not in str(result["full_stderr"]) and result["search_rc"] == 0 and result["again_rc"] == 0
    same = result["chunks"] == result["clean_chunks"]
    row("full disk under the data home (2 MiB tmpfs)", "clear error; keyword search works; rerun after freeing space = clean run",
        short(first_error(str(result["full_stderr"])), 70) + f" → search exit {result['search_rc']}; rerun: {result['chunks']} chunks vs clean {result['clean_chunks']}",
        not same, ok and same)


def main() -> None:
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ragent-faults-") as tmp:
        work = Path(tmp)
        for step in (bad_files, killed_ingest, two_ingests, eval_kill_9, server_killed):
            sub = work / step.__name__
            sub.mkdir()
            try:
                step(sub)
            except Exception as exc:  # a crash of the harness is a row too, not the end of the table
                row(step.__name__, "runs", f"harness error {type(exc).__name__}: {short(str(exc))}", False, False)
        bad_answers()
        full_disk(work)
    print("| case | expected | got | lost data | ok |\n|---|---|---|---|---|")
    for case, expected, got, lost, ok in ROWS:
        print(f"| {case} | {expected} | {got.replace('|', '/')} | {lost} | {'yes' if ok else '**NO**'} |")
    bad = sum(1 for r in ROWS if not r[4])
    print(f"\n{len(ROWS)} cases, {bad} not as expected, {sum(1 for r in ROWS if r[3] == 'yes')} with data lost; {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
