"""The study file: a YAML mapping, every key documented in docs/study.md."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from fspo_bench.errors import FspoBenchError
from fspo_bench.records import RunSpec
from fspo_bench.runner import make_method, resolve_judge_name

DEFAULT_CONSENT = ("CONSENT TEXT PLACEHOLDER: replace this with the consent text your ethics "
                   "board approved (what the study is, what is stored, how to withdraw).")


@dataclass(frozen=True)
class StudyConfig:
    """A parsed study file. ``comparisons`` are (method, reference) pairs of method names."""

    title: str
    domain: str
    model: str
    comparisons: list[tuple[str, str]]
    database: Path
    data: str = "builtin"
    consent: str = DEFAULT_CONSENT
    instructions: str = ""
    backend: str = "hf"
    backend_options: dict[str, Any] = field(default_factory=dict)
    generation: dict[str, Any] = field(default_factory=dict)
    checkpoints: dict[str, str] = field(default_factory=dict)
    shots: int = 4
    questions: int = 3
    allow_tie: bool = True
    seed: int = 0
    cache: Path | None = None
    judges: dict[str, dict[str, Any]] = field(default_factory=dict)
    rate_limit: int = 60
    rate_window_s: float = 60.0

    @property
    def methods(self) -> list[str]:
        """Every method named in a comparison, in first-seen order."""
        return list(dict.fromkeys(m for pair in self.comparisons for m in pair))

    def run_spec(self, method: str) -> RunSpec:
        """The run spec whose backend and decoding parameters generate ``method``'s responses."""
        return RunSpec(method=method, domains=[self.domain], model=self.model,
                       backend=self.backend, data=self.data, shots=self.shots, seed=self.seed,
                       checkpoint=self.checkpoints.get(method), generation=self.generation,
                       backend_options=self.backend_options)


_REQUIRED = ("title", "domain", "model", "comparisons")
_KNOWN = {"title", "domain", "model", "comparisons", "database", "data", "consent",
          "instructions", "backend", "backend_options", "generation", "checkpoints", "shots",
          "questions", "allow_tie", "seed", "cache", "judges", "rate_limit"}


def _comparisons(value: Any) -> list[tuple[str, str]]:
    pairs = []
    for item in value if isinstance(value, list) else [None]:
        if isinstance(item, str) and " vs " in item:
            item = [part.strip() for part in item.split(" vs ")]
        if not (isinstance(item, list) and len(item) == 2 and all(isinstance(m, str) and m
                                                                  for m in item)
                and item[0] != item[1]):
            raise FspoBenchError(f"comparisons: each item must be 'METHOD vs REFERENCE' (two "
                                 f"different method names), not {item!r}")
        pairs.append((item[0], item[1]))
    return pairs


def _judges(value: Any) -> dict[str, dict[str, Any]]:
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return {name: {} for name in value}
    if isinstance(value, dict) and all(isinstance(v, dict) or v is None for v in value.values()):
        return {name: dict(options or {}) for name, options in value.items()}
    raise FspoBenchError("judges: a list of judge names, or a mapping of judge name to options")


def _positive_int(raw: dict[str, Any], key: str, default: int) -> int:
    value = raw.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise FspoBenchError(f"{key}: must be a whole number of at least 1, not {value!r}")
    return value


def _mapping(raw: dict[str, Any], key: str) -> dict[str, Any]:
    value = raw.get(key) or {}
    if not isinstance(value, dict):
        raise FspoBenchError(f"{key}: must be a mapping, not {value!r}")
    return dict(value)


def _number(raw: dict[str, Any], key: str, default: float, kind: type) -> Any:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (
            kind is int and not isinstance(value, int)):
        raise FspoBenchError(f"{key}: must be a number, not {value!r}")
    return kind(value)


def parse_study(raw: Any, base: Path) -> StudyConfig:
    """A StudyConfig from the decoded YAML; relative paths are relative to ``base``."""
    if not isinstance(raw, dict):
        raise FspoBenchError("a study file must be a YAML mapping")
    unknown = sorted(set(raw) - _KNOWN)
    if unknown:
        raise FspoBenchError(f"unknown key(s) {', '.join(unknown)}; see docs/study.md")
    missing = [k for k in _REQUIRED if k not in raw]
    if missing:
        raise FspoBenchError(f"missing key(s) {', '.join(missing)}; see docs/study.md")
    rate = raw.get("rate_limit", {})
    if not isinstance(rate, dict) or set(rate) - {"requests", "window_s"}:
        raise FspoBenchError("rate_limit: a mapping with 'requests' and 'window_s'")

    def path(value: Any) -> Path:
        p = Path(str(value)).expanduser()
        return p if p.is_absolute() else base / p

    return StudyConfig(
        title=str(raw["title"]), domain=str(raw["domain"]), model=str(raw["model"]),
        comparisons=_comparisons(raw["comparisons"]),
        database=path(raw.get("database", "study.sqlite")),
        data=str(raw.get("data", "builtin")),
        consent=str(raw.get("consent", DEFAULT_CONSENT)),
        instructions=str(raw.get("instructions", "")),
        backend=str(raw.get("backend", "hf")),
        backend_options=_mapping(raw, "backend_options"),
        generation=_mapping(raw, "generation"),
        checkpoints={str(k): str(path(v)) for k, v in _mapping(raw, "checkpoints").items()},
        shots=_positive_int(raw, "shots", 4),
        questions=_positive_int(raw, "questions", 3),
        allow_tie=bool(raw.get("allow_tie", True)),
        seed=_number(raw, "seed", 0, int),
        cache=path(raw["cache"]) if raw.get("cache") else None,
        judges=_judges(raw.get("judges", [])),
        rate_limit=_positive_int(rate, "requests", 60),
        rate_window_s=_number(rate, "window_s", 60.0, float),
    )


def load_study(path: Path, database: Path | None = None) -> StudyConfig:
    """Read a study file; ``database`` overrides its ``database`` key."""
    import yaml

    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FspoBenchError(f"{path}: no such study file") from None
    except yaml.YAMLError as exc:
        raise FspoBenchError(f"{path}: not valid YAML: {exc}") from None
    try:
        config = parse_study(raw, Path(path).resolve().parent)
    except FspoBenchError as exc:
        raise FspoBenchError(f"{path}: {exc}") from None
    if database is not None:
        config = replace(config, database=database)
    return config


def check_study(config: StudyConfig) -> None:
    """Fail before serving anyone: every method and judge must exist, and methods that run a
    trained checkpoint must have one (their plugin's shipped one counts on the embedded
    model)."""
    for name in config.methods:
        method = make_method(config.run_spec(name), name, config.domain)
        if method.needs_checkpoint and not method.checkpoint:
            raise FspoBenchError(f"method {name!r} needs a trained checkpoint: add it under "
                                 f"'checkpoints' in the study file")
    for name in config.judges:
        resolve_judge_name(name)
