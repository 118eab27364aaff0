"""The registry of knowledge bases: one folder per base under ``<data home>/kb/NAME``.

Example::

    registry = KnowledgeBaseRegistry(Settings.load().home)
    kb = registry.create("book", embedder="e5")
    registry.list()           # [{'name': 'book', 'embedder': 'e5', 'files': 0, ...}]
    registry.delete("book")
"""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from knowledge.base import KnowledgeBase
from knowledge.embedders import make_embedder
from knowledge.errors import KnowledgeBaseError, KnowledgeBaseExistsError, KnowledgeBaseNotFoundError
from knowledge.manifest import Manifest
from knowledge.splitter import TokenSplitter
from knowledge.store import ChromaStore
from knowledge.tokenizer import default_tokenizer, load_tokenizer
from llm_backend.errors import ConfigError, did_you_mean

if TYPE_CHECKING:
    from llm_backend.client import OpenAIChatClient

log = logging.getLogger(__name__)

_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,62}[A-Za-z0-9])?$")

DEFAULT_EMBEDDER = "e5"
"""multilingual-e5-small: the one offline model that retrieves well in Chinese and English (see FACTS.md); slow
to ingest on a CPU, so ``--embedder none`` (BM25 only) is the fast choice and ``minilm`` the fast English one."""
DEFAULT_CHUNK_TOKENS = 256
DEFAULT_OVERLAP_TOKENS = 32


def validate_name(name: str) -> str:
    """A knowledge-base name: letters, digits, ``.``, ``_``, ``-``; at most 64 characters."""
    if not _NAME.match(name or ""):
        raise ConfigError(
            f"invalid knowledge base name {name!r}: use 1-64 letters, digits, '.', '_' or '-', starting and ending "
            "with a letter or digit (e.g. 'happy-llm')."
        )
    return name


class KnowledgeBaseRegistry:
    """Create, open, list and delete knowledge bases under ``home / "kb"``. ``models_dir`` (default
    ``home / "models"``) is where the chat model's tokenizer is found."""

    def __init__(self, home: Path, *, models_dir: Path | None = None, client: OpenAIChatClient | None = None) -> None:
        self.home = Path(home)
        self.root = self.home / "kb"
        self.models_dir = models_dir or self.home / "models"
        self.client = client
        self.embedding_cache = self.home / "cache" / "embeddings.sqlite3"
        """Passage vectors shared by this home's knowledge bases (:mod:`knowledge.embedcache`)."""

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if (p / "manifest.json").is_file())

    def exists(self, name: str) -> bool:
        return (self.root / name / "manifest.json").is_file()

    def create(
        self,
        name: str,
        *,
        embedder: str = DEFAULT_EMBEDDER,
        chunk_tokens: int = DEFAULT_CHUNK_TOKENS,
        overlap_tokens: int = DEFAULT_OVERLAP_TOKENS,
        tokenizer: str | None = None,
        chroma_url: str | None = None,
        description: str = "",
    ) -> KnowledgeBase:
        """Create an empty knowledge base. The embedder and splitter settings are fixed for its lifetime."""
        validate_name(name)
        if self.exists(name):
            raise KnowledgeBaseExistsError(f"knowledge base {name!r} already exists; ingest into it, or delete it first with `ragent kb delete {name}`.")
        make_embedder(embedder, client=self.client)  # validates the name; models load later
        tok = load_tokenizer(tokenizer, self.models_dir) if tokenizer else default_tokenizer(self.models_dir)
        splitter = TokenSplitter(tok, chunk_tokens=chunk_tokens, overlap_tokens=overlap_tokens)
        collection = f"ragent-{name}"
        store: dict[str, Any] = {"kind": "http", "url": chroma_url, "collection": collection} if chroma_url else {"kind": "persistent", "collection": collection}
        manifest = Manifest(name=name, embedder=embedder, splitter=splitter.settings(), store=store, description=description)
        directory = self.root / name
        directory.mkdir(parents=True, exist_ok=True)
        manifest.save(directory / "manifest.json")
        log.info("created knowledge base %s (embedder %s, %s)", name, embedder, splitter.settings())
        return KnowledgeBase(directory, manifest, models_dir=self.models_dir, client=self.client, embedding_cache=self.embedding_cache)

    def open(self, name: str) -> KnowledgeBase:
        """Open an existing knowledge base; the error lists the known ones and the closest name."""
        if not self.exists(name):
            known = self.names()
            listing = f"Known knowledge bases: {', '.join(known)}. " if known else "There are no knowledge bases yet. "
            raise KnowledgeBaseNotFoundError(
                f"no knowledge base named {name!r} in {self.root}. {did_you_mean(name, known)}{listing}"
                f"Create it with `ragent kb create {name}`."
            )
        directory = self.root / name
        return KnowledgeBase(
            directory, Manifest.load(directory / "manifest.json"), models_dir=self.models_dir, client=self.client, embedding_cache=self.embedding_cache
        )

    def list(self) -> list[dict[str, Any]]:
        """A summary of every knowledge base (a damaged one is listed with its error)."""
        out = []
        for name in self.names():
            try:
                out.append(self.open(name).summary())
            except KnowledgeBaseError as exc:
                out.append({"name": name, "error": str(exc)})
        return out

    def delete(self, name: str) -> None:
        """Delete a knowledge base: its folder, and its collection when it lives on a Chroma server. A base of the
        same name can be created again at once, in this process too."""
        kb = self.open(name)
        with kb.writing():
            if kb.manifest.store.get("kind") == "http":
                kb.store.drop()
                kb.store.close()
            else:
                # Before the folder goes: a later store at this path must not reuse this process's cached system.
                ChromaStore.release_path(kb.path / "chroma")
        shutil.rmtree(kb.path)
        log.info("deleted knowledge base %s", name)
