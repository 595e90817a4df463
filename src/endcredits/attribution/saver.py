"""Saving and resuming features, apart from computing them: one feature directory, written and reopened.

A feature directory holds, per checkpoint m, ``features-MMM.npy`` (float32 ``[n, dim]``, memory-mapped),
for training works ``weights-MMM.npy`` (TRAK's Q, ``[n]``) and, when asked, ``curvature-MMM.npy``
(``[dim, dim]`` float64); beside them ``ids.json`` (the row order), ``settings.json`` (the features
settings that made them, when the caller has ``AttributionSettings``) and ``features.json``: the format,
what the featurizer recorded (checkpoint hashes, projection, k, seed, chunk size, plan) and which rows of
each checkpoint are written. That record is replaced atomically after the rows it counts are flushed,
so an interrupted run leaves a directory that resumes: rows recorded as written are kept, any others
computed, by one process or by shards in any order.

Features are a cache. A directory recorded with another format, other ids, other settings or another
featurizer is refused, showing both values; the way out is a new directory (the text pipeline names
each directory by its settings' fingerprint and the format), never a mix of old and new.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
from numpy.lib.format import open_memmap

from endcredits.attribution.settings import AttributionSettings
from endcredits.errors import LimitExceededError, ManifestError, ValidationError

if TYPE_CHECKING:
    from endcredits.attribution.task import AttributionTask

FORMAT = "endcredits.features/4"
"""Version 4: the record names the eigen basis the features were projected with (``basis_sha256``, its file
``basis.npz`` beside them; null for other projections); version 3: every checkpoint after the first
projected with its own seed (``featurizer.checkpoint_seed``);
version 2: ``settings.json`` beside the features, and rows written recorded as ranges."""

METADATA_NAME = "features.json"
IDS_NAME = "ids.json"
SETTINGS_NAME = "settings.json"
PARTIAL_SUFFIX = ".partial"
RANGES_MAX = 1_000_000
"""Written row ranges recorded per checkpoint (shards finishing out of order leave gaps)."""


def features_name(m: int) -> str:
    return f"features-{m:03d}.npy"


def weights_name(m: int) -> str:
    return f"weights-{m:03d}.npy"


def curvature_name(m: int) -> str:
    return f"curvature-{m:03d}.npy"


def ids_sha256(ids: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(ids).encode("utf-8", "surrogatepass")).hexdigest()


def _write_json(path: Path, value: Any) -> None:
    partial = path.with_name(path.name + PARTIAL_SUFFIX)
    partial.write_text(json.dumps(value, indent=1, sort_keys=True))
    os.replace(partial, path)


def _read_metadata(path: Path) -> dict[str, Any]:
    try:
        metadata = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ManifestError(f"{path} is not a readable feature record ({type(exc).__name__}); delete it") from exc
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        found = metadata.get("format") if isinstance(metadata, dict) else None
        raise ManifestError(
            f"{path.parent} holds features in format {found!r}, not {FORMAT}; features are a cache: delete that"
            " directory to rebuild them, or featurize into another one"
        )
    return metadata


def _merged(ranges: Iterable[Sequence[int]]) -> list[list[int]]:
    out: list[list[int]] = []
    for start, stop in sorted((int(a), int(b)) for a, b in ranges):
        if out and start <= out[-1][1]:
            out[-1][1] = max(out[-1][1], stop)
        elif stop > start:
            out.append([start, stop])
    return out


def _rows(ranges: Sequence[Sequence[int]]) -> int:
    return sum(stop - start for start, stop in ranges)


class FeatureSaver:
    """One feature directory being written: ``begin`` creates it or checks and resumes it, ``write`` and
    ``commit`` add rows, ``finish`` checks that it is complete and opens it. No I/O before ``begin``.

    ``header`` is what the featurizer records about itself (``Featurizer.header``): it must hold ``role``,
    ``dim``, ``curvature`` and ``checkpoint_sha256`` (one per checkpoint).
    """

    def __init__(
        self,
        directory: Path,
        header: Mapping[str, Any],
        ids: Sequence[str],
        *,
        settings: AttributionSettings | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.ids = list(ids)
        self.n = len(self.ids)
        self.models = len(header["checkpoint_sha256"])
        self.dim = int(header["dim"])
        self.train = header["role"] == "train"
        self.settings = settings
        self.record: dict[str, Any] = {"format": FORMAT, "n": self.n, "ids_sha256": ids_sha256(self.ids), **header}
        self.rows_done: list[list[list[int]]] = [[] for _ in range(self.models)]
        self.curvature_done = [False] * self.models
        self._maps: dict[str, Any] = {}

    # -- the directory --------------------------------------------------------------------------

    def begin(self) -> None:
        """Create the directory, its files and record; or, when a record is there, check it and resume."""
        metadata_path = self.directory / METADATA_NAME
        if metadata_path.exists():
            recorded = _read_metadata(metadata_path)
            self._check_recorded(recorded)
            self.rows_done = [_merged(r) for r in recorded["rows_done"]]
            self.curvature_done = [bool(c) for c in recorded["curvature_done"]]
            return
        self._check_disk()
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / IDS_NAME).write_text(json.dumps(self.ids))
        if self.settings is not None:
            _write_json(self.directory / SETTINGS_NAME, self.settings.features_dict())
        for m in range(self.models):
            open_memmap(self._path(features_name(m)), mode="w+", dtype=np.float32, shape=(self.n, self.dim)).flush()
            if self.train:
                open_memmap(self._path(weights_name(m)), mode="w+", dtype=np.float32, shape=(self.n,)).flush()
        self._save_record()

    def _check_recorded(self, recorded: Mapping[str, Any]) -> None:
        where = str(self.directory)
        if recorded.get("ids_sha256") != self.record["ids_sha256"] or recorded.get("n") != self.n:
            raise ManifestError(
                f"{where} holds features of other work ids (ids hash {recorded.get('ids_sha256')}, n"
                f" {recorded.get('n')}); featurize these works into a new directory"
            )
        saved = _read_settings(self.directory)
        if self.settings is not None:
            self.settings.check_saved(saved or {}, where)
        elif saved is not None:
            raise ManifestError(f"{where} holds features made with attribution settings; pass the same settings")
        differ = [key for key in self.record if key != "plan" and recorded.get(key) != self.record[key]]
        if differ or recorded.get("plan") != self.record.get("plan"):
            shown = ", ".join(f"{key}: recorded {recorded.get(key)!r}, now {self.record[key]!r}" for key in differ)
            raise ManifestError(
                f"{where} was featurized with other arguments ({shown or 'the projection plan'}); features are a"
                " cache: delete that directory to start over, or use a new one"
            )

    def _check_disk(self) -> None:
        """Refuse, saying how many bytes are needed, when the files will not fit under the directory."""
        needed = self.models * (self.n * self.dim * 4 + (self.n * 4 if self.train else 0))
        needed += self.models * self.dim * self.dim * 8 if self.record.get("curvature") else 0
        probe = self.directory
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        free = shutil.disk_usage(probe).free
        if needed > free:
            raise LimitExceededError(
                f"features of {self.n} examples x {self.dim} dims x {self.models} checkpoints need {needed} bytes;"
                f" {probe} has {free} bytes free. Lower k or featurize in shards"
            )

    # -- rows -----------------------------------------------------------------------------------

    def is_done(self, m: int, start: int, stop: int) -> bool:
        """Whether rows ``[start, stop)`` of checkpoint ``m`` are written and recorded."""
        return any(a <= start and stop <= b for a, b in self.rows_done[m])

    def rows_written(self, m: int) -> int:
        return _rows(self.rows_done[m])

    def write(
        self, m: int, start: int, features: npt.NDArray[np.float32], weights: npt.NDArray[np.float32] | None
    ) -> None:
        """Put rows ``[start, start + len(features))`` of checkpoint ``m`` on disk (``commit`` records them)."""
        stop = start + features.shape[0]
        if not 0 <= start <= stop <= self.n or features.shape[1:] != (self.dim,):
            raise ValidationError(f"rows [{start}, {stop}) x {features.shape[1:]} do not fit [{self.n}, {self.dim}]")
        if (weights is None) == self.train:
            raise ValidationError("training works are written with their weights (Q); outputs without")
        target = self._map(features_name(m))
        target[start:stop] = features
        target.flush()
        if weights is not None:
            q = self._map(weights_name(m))
            q[start:stop] = weights
            q.flush()

    def commit(self, models: Iterable[int], start: int, stop: int) -> None:
        """Record rows ``[start, stop)`` of each checkpoint in ``models`` as written (after ``write``)."""
        for m in models:
            self.rows_done[m] = _merged(self.rows_done[m] + [[start, stop]])
            if len(self.rows_done[m]) > RANGES_MAX:
                raise LimitExceededError(f"over RANGES_MAX={RANGES_MAX} row ranges recorded; use larger shards")
        self._save_record()

    def write_curvature(self, m: int, kernel: npt.NDArray[np.float64]) -> None:
        """Save and record checkpoint ``m``'s Gauss-Newton kernel."""
        path = self._path(curvature_name(m))
        partial = path.with_name(path.name + PARTIAL_SUFFIX)
        with partial.open("wb") as f:
            np.save(f, kernel)
        os.replace(partial, path)
        self.curvature_done[m] = True
        self._save_record()

    def finish(self) -> FeatureSet:
        """Close the memory maps and open the directory, checked complete."""
        self._maps.clear()
        return FeatureSet.open(self.directory, ids=self.ids, settings=self.settings)

    def discard(self) -> None:
        """Remove every file this saver writes (after a failure that must leave nothing)."""
        self._maps.clear()
        names = [METADATA_NAME, IDS_NAME, SETTINGS_NAME] + [
            f(m) for m in range(self.models) for f in (features_name, weights_name, curvature_name)
        ]
        for name in names:
            for path in (self._path(name), self._path(name + PARTIAL_SUFFIX)):
                path.unlink(missing_ok=True)

    def _path(self, name: str) -> Path:
        return self.directory / name

    def _map(self, name: str) -> Any:
        if name not in self._maps:
            self._maps[name] = open_memmap(self._path(name), mode="r+")
        return self._maps[name]

    def _save_record(self) -> None:
        _write_json(
            self._path(METADATA_NAME),
            {**self.record, "rows_done": self.rows_done, "curvature_done": self.curvature_done},
        )


def _read_settings(directory: Path) -> dict[str, Any] | None:
    path = directory / SETTINGS_NAME
    if not path.exists():
        return None
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ManifestError(f"{path} is not readable ({type(exc).__name__}); delete {directory}") from exc
    if not isinstance(saved, dict):
        raise ManifestError(f"{path} is not a settings object; delete {directory}")
    return saved


@dataclass(frozen=True)
class FeatureSet:
    """A complete feature directory, opened read-only (memory-mapped)."""

    directory: Path
    manifest: Mapping[str, Any]
    """The directory's ``features.json``."""
    ids: tuple[str, ...]

    @classmethod
    def open(
        cls,
        directory: Path,
        *,
        ids: Sequence[str] | None = None,
        task: AttributionTask | None = None,
        settings: AttributionSettings | None = None,
    ) -> FeatureSet:
        """Open and check a complete feature directory; ``ids``, the checkpoints of ``task`` and ``settings``,
        when given, must match what it recorded."""
        directory = Path(directory)
        manifest = _read_metadata(directory / METADATA_NAME)
        stored = json.loads((directory / IDS_NAME).read_text())
        if not isinstance(stored, list) or ids_sha256(stored) != manifest["ids_sha256"]:
            raise ManifestError(f"{directory / IDS_NAME} does not match its record; featurize again")
        if ids is not None and list(ids) != stored:
            first = next((i for i, (a, b) in enumerate(zip(ids, stored)) if a != b), min(len(ids), len(stored)))
            raise ManifestError(
                f"features in {directory} are for other work ids (first difference at row {first}; {len(stored)}"
                f" stored, {len(ids)} given); featurize the manifest's works"
            )
        if task is not None and list(task.checkpoint_sha256s) != manifest["checkpoint_sha256"]:
            raise ManifestError(f"features in {directory} were computed for other checkpoints; featurize again")
        if settings is not None:
            settings.check_saved(_read_settings(directory) or {}, str(directory))
        n = manifest["n"]
        rows = [_rows(r) for r in manifest["rows_done"]]
        curvature_missing = manifest.get("curvature") and not all(manifest["curvature_done"])
        if rows != [n] * len(manifest["checkpoint_sha256"]) or curvature_missing:
            raise ManifestError(f"features in {directory} are incomplete; run featurize again to finish them")
        return cls(directory, manifest, tuple(stored))

    @property
    def models(self) -> int:
        return len(self.manifest["checkpoint_sha256"])

    def features(self, m: int) -> npt.NDArray[np.float32]:
        array: npt.NDArray[np.float32] = np.load(self.directory / features_name(m), mmap_mode="r")
        return array

    def weights(self, m: int) -> npt.NDArray[np.float32]:
        array: npt.NDArray[np.float32] = np.load(self.directory / weights_name(m), mmap_mode="r")
        return array

    def curvature(self, m: int) -> npt.NDArray[np.float64]:
        if not self.manifest.get("curvature"):
            raise ValidationError(f"{self.directory} has no curvature; featurize with curvature=True")
        array: npt.NDArray[np.float64] = np.load(self.directory / curvature_name(m))
        return array

    def features_per_model(self) -> list[npt.NDArray[np.float32]]:
        return [self.features(m) for m in range(self.models)]

    def weights_per_model(self) -> list[npt.NDArray[np.float32]]:
        return [self.weights(m) for m in range(self.models)]

    def curvature_per_model(self) -> list[npt.NDArray[np.float64]]:
        return [self.curvature(m) for m in range(self.models)]


__all__ = [
    "FORMAT",
    "IDS_NAME",
    "METADATA_NAME",
    "SETTINGS_NAME",
    "FeatureSaver",
    "FeatureSet",
    "curvature_name",
    "features_name",
    "ids_sha256",
    "weights_name",
]
