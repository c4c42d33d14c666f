"""The one model registry: ``manifest.json`` beside this file, and where each model's weights are found.

Models are releases, not snapshots. Every model that ever shipped has an entry, with the SHA-256 of its
weights file and a status:

* ``default``: what ``vaezip compress`` uses; ``fast``: the smaller, quicker one; ``supported``: a former
  default (from 1.0 on, a model that was ever a release default stays installed and decodable). These
  ship in the package, in ``weights/<name>.npz``.
* ``archived``: not in the package. Its weights stay in the project's git history (``source``), and a
  file that needs them says so in one line; ``-m PATH.npz`` or ``$VAEZIP_MODEL_PATH`` makes them usable.

The manifest is written by ``vaezip export --release`` and its figures by ``benchmarks/report.py``, never by
hand. Nothing here imports torch: ``vaezip models``, ``info`` and ``--help`` stay cheap; loading a network
is ``zoo.loader``.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import ModelError

MANIFEST = Path(__file__).with_name("manifest.json")
WEIGHTS = Path(__file__).with_name("weights")
#: Folders (separated by os.pathsep) searched for ``<name>.npz`` when a model is not installed.
SEARCH_PATH_VARIABLE = "VAEZIP_MODEL_PATH"
STATUSES = ("default", "fast", "supported", "archived")
INSTALLED = ("default", "fast", "supported")


@dataclass(frozen=True)
class ZooEntry:
    """One release of a model, as the manifest records it."""

    name: str
    sha256: str            # of the weights file; a .vz file stores its first 16 bytes
    status: str            # one of STATUSES
    description: str       # architecture and what the model is for
    cpu_hours: float       # training, from the lineage's very start
    file_bytes: int
    source: str = ""       # where archived weights are: "git:<commit>:<path>"
    figures: dict = field(default_factory=dict)  # measured by benchmarks/report.py

    @property
    def file(self) -> str:
        """The weights file's name in zoo/weights."""
        return f"{self.name}.npz"

    @property
    def installed(self) -> bool:
        return self.status in INSTALLED

    def where(self) -> str:
        """How to get the weights of an archived model, in words."""
        if self.source.startswith("git:"):
            _, commit, path = self.source.split(":", 2)
            return f"`git show {commit}:{path} > {self.file}` in a clone of vaezip (docs/models.md)"
        return "docs/models.md"


def read_manifest(path: Path = MANIFEST) -> dict[str, ZooEntry]:
    """name -> entry, in the manifest's order (installed models first, the default first of all)."""
    try:
        models = json.loads(path.read_text())["models"]
        return {m["name"]: ZooEntry(**m) for m in models}
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ModelError(f"{path}: the model manifest is unreadable ({e.__class__.__name__}); "
                         "reinstall vaezip") from None


def manifest_text(entries: dict[str, ZooEntry]) -> str:
    """The manifest's JSON: installed models first (default, fast, supported), then archived, newest first."""
    order = {status: i for i, status in enumerate(STATUSES)}
    ranked = sorted(entries.values(), key=lambda e: (order[e.status], -e.cpu_hours))
    if sum(e.status == "default" for e in ranked) != 1:
        raise ModelError("the manifest must name exactly one default model")
    return json.dumps({"models": [asdict(e) for e in ranked]}, indent=1) + "\n"


def write_manifest(entries: dict[str, ZooEntry], path: Path = MANIFEST) -> None:
    text = manifest_text(entries)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)


REGISTRY: dict[str, ZooEntry] = read_manifest()
DEFAULT_MODEL = next(e.name for e in REGISTRY.values() if e.status == "default")
FAST_MODEL = next((e.name for e in REGISTRY.values() if e.status == "fast"), DEFAULT_MODEL)


def weights_path(entry: ZooEntry) -> Path:
    return WEIGHTS / entry.file


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def is_path(model: str) -> bool:
    """Whether ``-m`` names a weights file rather than a model."""
    return model.endswith(".npz") or os.sep in model or (os.altsep is not None and os.altsep in model)


def search_path() -> list[Path]:
    return [Path(p) for p in os.environ.get(SEARCH_PATH_VARIABLE, "").split(os.pathsep) if p]


def find_weights(name: str, weights_hash: bytes | None = None) -> Path:
    """The weights file of model ``name``: installed, or ``<name>.npz`` in $VAEZIP_MODEL_PATH. With
    ``weights_hash`` (the 16 bytes a .vz file stores), only a file with that hash will do.

    Raises:
        ModelError: one line naming the model, its hash, and where its weights can be found.
    """
    entry = REGISTRY.get(name)
    wanted = weights_hash.hex() if weights_hash else None
    if entry is not None and entry.installed and (wanted is None or entry.sha256.startswith(wanted)):
        return weights_path(entry)  # the loader checks the file against the manifest
    for folder in search_path():
        path = folder / f"{name}.npz"
        if path.is_file() and (wanted is None or file_sha256(path).startswith(wanted)):
            return path
    hint = f"pass its weights file with -m PATH.npz or put it in a folder named by ${SEARCH_PATH_VARIABLE}"
    if entry is not None and wanted and not entry.sha256.startswith(wanted):
        raise ModelError(f"model {name!r} with weights {wanted[:12]}… is not the release vaezip knows under that "
                         f"name ({entry.sha256[:12]}…); {hint}")
    shown = (wanted or (entry.sha256 if entry else ""))[:12]
    weights = f" (weights {shown}…)" if shown else ""
    if entry is not None:
        raise ModelError(f"model {name!r}{weights} is archived, not installed: get its weights with {entry.where()}, "
                         f"then {hint}")
    raise ModelError(f"unknown model {name!r}{weights}: `vaezip models` lists the installed ones "
                     f"({', '.join(installed_models())}); for weights of your own, {hint}")


def installed_models() -> list[str]:
    return [e.name for e in REGISTRY.values() if e.installed]



def describe(config_dict: dict) -> str:
    """An architecture in words, from a weights file's stored config."""
    c = config_dict
    parts = [f"mean-scale hyperprior N={c['n']} M={c['m']}", f"{c['levels']} rate levels (lambda {c['lambda_min']:g}"
             f"-{c['lambda_max']:.3g})"]
    if c.get("arch") == "msh-gain-cb":
        parts.append("checkerboard context")
    if c.get("conditional"):
        parts.append("per-level modulation")
    if c.get("res_blocks"):
        parts.append(f"{c['res_blocks']} residual blocks")
    return ", ".join(parts)


def record_release(entries: dict[str, ZooEntry], new: ZooEntry, archived_source: str = "") -> dict[str, ZooEntry]:
    """The manifest with ``new`` released. A new default turns the old one into ``supported`` (it stays
    installed); a new fast model archives the old fast one (its weights then live at ``archived_source``)."""
    out = dict(entries)
    for e in entries.values():
        if e.name != new.name and e.status == new.status == "default":
            out[e.name] = ZooEntry(**{**asdict(e), "status": "supported"})
        elif e.name != new.name and e.status == new.status == "fast":
            out[e.name] = ZooEntry(**{**asdict(e), "status": "archived", "source": archived_source})
    out[new.name] = new
    return out


