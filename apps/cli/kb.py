"""`ragent kb`: create, ingest, list, delete, search and ask knowledge bases.

Heavy libraries (chromadb, torch, jieba) are imported inside the commands so ``ragent --help`` stays fast.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer

app = typer.Typer(
    help="Knowledge bases: create, ingest files (md, txt, pdf, docx, html), search, and ask with cited answers.",
    no_args_is_help=True,
)


@contextmanager
def _errors() -> Iterator[None]:
    """Show our errors as one readable line and exit 1 (no traceback)."""
    from llm_backend.errors import RagentError

    try:
        yield
    except RagentError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from exc


def _registry(base_url: str | None = None, model: str | None = None) -> Any:
    from knowledge.registry import KnowledgeBaseRegistry
    from llm_backend.settings import Settings

    settings = Settings.load(base_url=base_url, model=model)
    return KnowledgeBaseRegistry(settings.home), settings


def _echo_json(data: Any) -> None:
    typer.echo(json.dumps(data, ensure_ascii=False, indent=2))


@app.command()
def create(
    name: str = typer.Argument(..., help="Name: letters, digits, '.', '_', '-'."),
    embedder: str = typer.Option(
        "e5", "--embedder", "-e",
        help="e5 (multilingual-e5-small on ONNX Runtime: Chinese, English, cross-lingual; default), e5-int8 (e5 quantized to int8, ~1.5-3x faster, cosine ~0.997 to e5), minilm (English, fast), minilm-int8 (MiniLM quantized to int8, ~1.4x faster, slightly different vectors), none (BM25 only, fastest), "
        "server:MODEL (the model server's /v1/embeddings), hash (tests only).",
    ),
    chunk_tokens: int = typer.Option(256, help="Chunk size in tokens of the chat model's tokenizer."),
    overlap_tokens: int = typer.Option(32, help="Overlap between consecutive chunks, in tokens."),
    tokenizer: str | None = typer.Option(
        None, help="Tokenizer for chunk budgets: a served model's name under the data home, 'minilm', or a tokenizer.json path "
        "(default: the default chat model's if converted, else minilm)."
    ),
    chroma_url: str | None = typer.Option(None, help="Chroma server (e.g. http://10.0.0.5:8000) instead of the embedded store."),
    description: str = typer.Option("", help="What the knowledge base holds."),
) -> None:
    """Create an empty knowledge base."""
    with _errors():
        registry, _ = _registry()
        kb = registry.create(
            name, embedder=embedder, chunk_tokens=chunk_tokens, overlap_tokens=overlap_tokens, tokenizer=tokenizer,
            chroma_url=chroma_url, description=description,
        )
        s = kb.manifest.splitter
        typer.echo(
            f"created knowledge base {name!r} at {kb.path} (embedder {embedder}, {s['chunk_tokens']}-token chunks with "
            f"{s['overlap_tokens']} overlap, tokenizer {s['tokenizer']}). Add files with: ragent kb ingest {name} PATH..."
        )


@app.command()
def ingest(
    name: str = typer.Argument(..., help="Knowledge base."),
    paths: list[Path] = typer.Argument(..., help="Files and folders (md, markdown, txt, pdf, docx, html)."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    progress: bool = typer.Option(
        True, "--progress/--no-progress",
        help="Show progress on stderr: a bar on a terminal, else a line every $RAGENT_PROGRESS_INTERVAL s (default 5).",
    ),
    strict: bool = typer.Option(False, help="Exit with status 2 when any file failed."),
) -> None:
    """Add, update and remove files: unchanged files are skipped, changed ones replaced, deleted ones dropped.
    Ctrl-C stops within a second or two and keeps every finished file; run the same command again to resume."""
    from apps.cli.progress import exit_now, ingest_view, stop_on_signals

    with stop_on_signals() as stop, _errors():
        with ingest_view(progress) as view:
            if view is not None:  # at once: the imports below take a second or more
                view.write(f"{name}: opening the knowledge base")
            from knowledge.ingest import ingest as run_ingest

            registry, _ = _registry()
            kb = registry.open(name)
            report = run_ingest(kb, paths, progress=stop.follow(view), stop=stop.event)
        if as_json:
            _echo_json({"knowledge_base": name, **report.to_dict()})
        else:
            typer.echo(f"{name}: {report.summary()}")
            for err in report.failed:
                typer.secho(f"  failed: {err.path}: {err.reason}", fg=typer.colors.YELLOW, err=True)
            if report.ignored:
                typer.echo(f"  ignored {len(report.ignored)} files of unsupported types (e.g. {report.ignored[0]})")
        if report.stopped:
            _say_stopped(name, paths, report, kb, stop.signum)
            if stop.signum is not None:  # a real signal: leave within the 2 s a stop may take
                exit_now(stop.exit_code, close=kb.store.close)
            raise typer.Exit(stop.exit_code)
    if strict and report.failed:
        raise typer.Exit(2)


def _say_stopped(name: str, paths: list[Path], report: Any, kb: Any, signum: int | None) -> None:
    """What a stopped ingestion kept, and how to resume (stderr)."""
    import shlex
    import signal

    what = "Ctrl-C" if signum in (None, signal.SIGINT) else signal.Signals(signum).name
    kept = report.added + report.updated
    chunks = sum(len(kb.manifest.files[k].chunk_ids) for k in kept if k in kb.manifest.files)
    command = " ".join(["ragent", "kb", "ingest", shlex.quote(name), *(shlex.quote(str(p)) for p in paths)])
    cached = ""
    extra = report.chunks_embedded - chunks
    if extra > 0 and getattr(kb.embedder, "cache", None) is not None:
        cached = f"; {extra} chunks of those are embedded already and cached, so the rerun does not embed them again"
    if not kept and not report.pending:
        typer.secho(f"stopped by {what} before any file was read; nothing was changed.", fg=typer.colors.YELLOW, err=True)
        return
    typer.secho(
        f"stopped by {what}: kept the {len(kept)} files finished in this run ({chunks} chunks)"
        f"{'; ' + str(len(report.unchanged)) + ' more were already up to date' if report.unchanged else ''}; "
        f"{len(report.pending)} files not done{cached}.\nRun the same command again to resume: {command}",
        fg=typer.colors.YELLOW, err=True,
    )


@app.command("list")
def list_(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List knowledge bases."""
    with _errors():
        registry, _ = _registry()
        items = registry.list()
        if as_json:
            _echo_json(items)
            return
        if not items:
            typer.echo("no knowledge bases yet; create one with: ragent kb create NAME")
            return
        from rich.console import Console
        from rich.table import Table

        table = Table("name", "embedder", "files", "chunks", "chunk tokens", "store")
        for it in items:
            if "error" in it:
                table.add_row(it["name"], "[red]damaged[/red]", "", "", "", it["error"][:60])
                continue
            files = str(it["files"]) + (f" ({it['incomplete_files']} incomplete)" if it["incomplete_files"] else "")
            table.add_row(it["name"], it["embedder"], files, str(it["chunks"]), str(it["chunk_tokens"]), it["store"])
        Console().print(table)


@app.command()
def delete(
    name: str = typer.Argument(..., help="Knowledge base."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
) -> None:
    """Delete a knowledge base (its index; your files are not touched)."""
    with _errors():
        registry, _ = _registry()
        kb = registry.open(name)
        if not yes:
            typer.confirm(f"delete knowledge base {name!r} ({kb.manifest.n_chunks()} chunks)?", abort=True)
        registry.delete(name)
        typer.echo(f"deleted knowledge base {name!r}")


def _retriever(name: str, mode: str, embedder: str | None, settings: Any) -> Any:
    from core.rag import open_retriever
    from knowledge.embedders import make_embedder

    emb = make_embedder(embedder) if embedder else None
    if embedder == "none":
        from knowledge.registry import KnowledgeBaseRegistry

        KnowledgeBaseRegistry(settings.home).open(name).check_embedder(None)
    return open_retriever(name, mode=mode, embedder=emb, settings=settings)


@app.command()
def search(
    name: str = typer.Argument(..., help="Knowledge base."),
    query: str = typer.Argument(..., help="What to look for."),
    k: int = typer.Option(5, "-k", help="How many hits."),
    mode: str = typer.Option("hybrid", help="hybrid, dense or bm25."),
    embedder: str | None = typer.Option(None, help="Query embedder; must be the one the base was built with (default)."),
    filter_: list[str] = typer.Option([], "--filter", help="Metadata filter KEY=VALUE (source, title, page, section, format); repeatable."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Search without the model: the chunks that best match the query."""
    with _errors():
        from core.rag.filters import parse_filter_args

        _, settings = _registry()
        retriever = _retriever(name, mode, embedder, settings)
        filters = parse_filter_args(filter_)
        hits = retriever.retrieve(query, k, filters=filters) if filters else retriever.retrieve(query, k)
        if as_json:
            _echo_json([{"chunk_id": h.chunk_id, "score": h.score, "text": h.text, "meta": h.meta} for h in hits])
            return
        if not hits:
            typer.echo("no matching chunks")
        for i, h in enumerate(hits, 1):
            meta = h.meta
            where = Path(str(meta.get("source", ""))).name + (f" · {meta['section']}" if meta.get("section") else "")
            where += f" · p. {meta['page']}" if meta.get("page") else ""
            typer.secho(f"[{i}] {h.score:.4f}  {where}", bold=True)
            text = " ".join(h.text.split())
            typer.echo(f"    {text[:300]}{' …' if len(text) > 300 else ''}")


@app.command()
def ask(
    name: str = typer.Argument(..., help="Knowledge base."),
    question: str = typer.Argument(..., help="Your question."),
    k: int = typer.Option(4, "-k", help="Passages in the prompt (at most)."),
    mode: str = typer.Option("hybrid", help="hybrid, dense or bm25."),
    rerank: str | None = typer.Option(None, help="Reranker: llm, server[:MODEL], or the path of a cross-encoder folder."),
    context_tokens: int = typer.Option(1000, help="Token budget for the passages in the prompt (CPU prompt processing is slow)."),
    max_tokens: int = typer.Option(384, help="Longest answer, in tokens."),
    history: Path | None = typer.Option(None, help="JSON file with earlier messages [{role, content}] for a follow-up question."),
    filter_: list[str] = typer.Option([], "--filter", help="Metadata filter KEY=VALUE; repeatable."),
    base_url: str | None = typer.Option(None, help="Model server URL (default: settings)."),
    model: str | None = typer.Option(None, help="Served model name (default: the server's first)."),
    as_json: bool = typer.Option(False, "--json", help="Print the answer, citations and usage as JSON (no streaming)."),
    refuse: bool = typer.Option(
        True, "--refuse/--no-refuse",
        help="English questions: say so and quote the closest passage, without asking the model, when the passages seem not to answer "
             "(e5 closeness and shared words, or a figure of the question that no passage states). --no-refuse always asks the model.",
    ),
) -> None:
    """Answer a question from the knowledge base, with numbered citations [n] to its sources."""
    with _errors():
        from core.rag import answer, make_reranker
        from core.rag.filters import parse_filter_args
        from knowledge.tokenizer import default_tokenizer
        from llm_backend.client import OpenAIChatClient
        from llm_backend.errors import ConfigError

        _, settings = _registry(base_url, model)
        client = OpenAIChatClient(settings)
        retriever = _retriever(name, mode, None, settings)
        past: list[dict[str, Any]] = []
        if history is not None:
            try:
                past = json.loads(history.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise ConfigError(f"--history {history}: not a readable JSON list of messages ({exc})") from exc
        on_segment: Callable[[Any], None] | None = None
        if not as_json:
            def on_segment(segment: Any) -> None:
                # the model's checked sentences plain, quotations of the passages in cyan (the text also says so)
                typer.secho(segment.text, nl=False, fg=typer.colors.CYAN if segment.kind == "quote" else None)

        result = answer(
            question,
            retriever=retriever,
            client=client,
            history=past,
            reranker=make_reranker(rerank, client=client),
            k=k,
            context_tokens=context_tokens,
            tokenizer=default_tokenizer(settings.models_dir),
            filters=parse_filter_args(filter_) or None,
            on_segment=on_segment,
            max_tokens=max_tokens,
            answerability=None if refuse else False,
        )
        if as_json:
            _echo_json({"knowledge_base": name, **result.to_dict()})
            return
        typer.echo("")
        if result.dropped:
            typer.secho(
                f"({len(result.dropped)} sentence(s) of the model stated a number or name that no passage holds; "
                "they were left out and the passage is quoted instead.)", dim=True,
            )
        if result.citations:
            typer.echo("\nSources:")
            for c in result.citations:
                how = " (matched by its words and figures)" if c.inferred else ""
                typer.echo(f"  [{c.number}] {c.label}{how}")
        if result.query != question:
            typer.echo(f"(searched for: {result.query})")
