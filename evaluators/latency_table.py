"""A latency lookup table measured on this device, and the ``latency`` evaluator built on it.

NetAdapt (arXiv 1804.03230 §3.2) and MnasNet-style searches ask for the latency of thousands of
networks that differ in a few layers. Measuring each whole network costs a second or more; a
layer-wise lookup table measures every distinct layer once and predicts a network as the sum of
its parts. Here a part is an IR record, which is its own key: a ``BlockSpec`` of a ``ChainNet``
(op, widths, stride, input size, options) with the stem and head blocks, the classifier (global
pool and linear layers) at its input size; for a ``CellNet`` the stem, each live placed ``CellSpec``
(which network states it reads is left out of its key: that changes nothing it runs) and the head
with the classifier. Which function splits an IR into parts is chosen by its ``kind``. Entries are
measured lazily the first time a network needs them, by one of two ``methods``:

- ``network`` (the default): the network that lacks an entry is compiled and timed whole, each
  part inside it (``measure_in_context``), and the parts it lacked take their share of its median.
  Parts timed alone keep their weights and input hot in cache and summed 15-29% below their
  networks on this project's CPU; timed in their network they sum to it (``benchmarks/latency_lut.py``,
  the figures in benchmarks/README.md). A key that occurs twice in the network gets the mean of both.
- ``alone``: each part timed by itself (``measure``), the table of earlier versions.

Each entry records how it was measured: the method, the network's digest, the time and the machine's
load average then.

The table is one JSON file holding one table per device fingerprint, batch size and method (processor,
machine, cores, threads, torch version, device): a table measured elsewhere is never used for this
machine, and one file can hold the tables of several machines. A write re-reads the file, merges
its new entries into what another process wrote meanwhile and replaces the file atomically (two
processes saving at the same instant may lose one's new entries, which are then measured again). The default file is
``$NAS_LATENCY_TABLE`` or ``$XDG_CACHE_HOME/nas-engine/latency.json`` (``~/.cache`` without it).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from evaluators.latency import (
    Latency,
    check_measure_options,
    check_measure_settings,
    device_fingerprint,
    fingerprint_key,
    measure,
    measure_in_context,
    measure_network,
)
from evaluators.latency_parts import Part, split
from nas.cell_ir import CellNet, Network
from nas.compile import compile as compile_ir
from nas.errors import quoted
from nas.evaluator import EvaluatorBase
from nas.files import atomic_write_text, read_user_file
from nas.latency_model import LatencyModel, load_model
from nas.space import SearchSpace

logger = logging.getLogger(__name__)

TABLE_VERSION = 2  # 2: entries hold the mean, which predictions sum
# A table entry is a layer of well under a few ms: half a second of runs gives a median of dozens of
# them, and a NetAdapt iteration measures a hundred or more new layers.
ENTRY_MAX_SECONDS = 0.5
METHODS = ("network", "alone")  # how a missing entry is measured (the module docstring)
MAX_TABLE_BYTES = 256 * 2**20  # a table entry is about 200 bytes


def default_table_path() -> Path:
    """``$NAS_LATENCY_TABLE``, else ``$XDG_CACHE_HOME/nas-engine/latency.json`` (``~/.cache`` by default)."""
    if os.environ.get("NAS_LATENCY_TABLE"):
        return Path(os.environ["NAS_LATENCY_TABLE"])
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "nas-engine" / "latency.json"


@dataclass(frozen=True)
class Prediction:
    """A network's predicted latency: the sum of its parts' table entries (milliseconds).

    ``total_ms`` sums each part's ``mean_ms`` (alone: its mean; in its network: its share of the
    network's median), ``p10_ms`` their 10th percentiles (a part's own, or its share of the network's),
    the figure that varied least between measurements on this project's shared CPU.
    """

    total_ms: float
    parts: tuple[tuple[str, float], ...]  # (path in the IR, ms)
    p10_ms: float = 0.0


class LatencyTable:
    """Latency (mean, median, p10, p90) per IR record on one device, thread count and batch size; measured on
    first use.

    ``path`` is the JSON file (``default_table_path()`` if None); ``method`` how a missing entry is
    measured (``METHODS``, the module docstring); ``measure_options`` go to ``measure`` or
    ``measure_in_context`` (repetitions, precision). Nothing is read or measured until a latency is
    asked for.
    """

    def __init__(
        self,
        path: str | Path | None = None,
        *,
        device: str | torch.device = "cpu",
        threads: int = 1,
        batch_size: int = 1,
        method: str = "network",
        **measure_options: Any,
    ) -> None:
        check_measure_settings(batch_size, threads)
        check_measure_options(measure_options)
        if method not in METHODS:
            raise ValueError(f"method: {method!r} is not a way to measure a table's entries; valid: {list(METHODS)}")
        self.method = method
        self.path = Path(path) if path is not None else default_table_path()
        try:
            self.device = torch.device(device)
        except (RuntimeError, TypeError):
            raise ValueError(f"device: {device!r} is not a torch device; valid: 'cpu', 'cuda', 'cuda:0', ...") from None
        self.threads, self.batch_size = threads, batch_size
        self.measure_options = {"max_seconds": ENTRY_MAX_SECONDS, **measure_options}
        self._entries: dict[str, dict[str, Any]] | None = None
        self._new: dict[str, dict[str, Any]] = {}  # measured here, not yet saved
        self.measured = 0  # entries measured by this object (the rest came from the file)

    @property
    def fingerprint(self) -> dict[str, Any]:
        return device_fingerprint(self.device, self.threads)

    @property
    def key(self) -> str:
        """The name of this device's table in the file: fingerprint, batch size and (but ``alone``, the
        method of the tables before there were two) method."""
        suffix = "" if self.method == "alone" else f"-{self.method}"
        return f"{fingerprint_key(self.fingerprint)}-batch{self.batch_size}{suffix}"

    def __len__(self) -> int:
        return len(self._table())

    def _read_file(self) -> dict[str, Any]:
        if not self.path.exists():
            return {"version": TABLE_VERSION, "tables": {}}
        try:
            data = json.loads(read_user_file(self.path, MAX_TABLE_BYTES, "a latency table (JSON)"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
            raise ValueError(
                f"{self.path}: cannot read the latency table ({error}); move it away or give another --table"
            ) from None
        if (
            not isinstance(data, dict)
            or data.get("version") != TABLE_VERSION
            or not isinstance(data.get("tables"), dict)
        ):
            raise ValueError(
                f"{self.path}: not a latency table of this version ({TABLE_VERSION}); move it away or "
                "give another --table"
            )
        return data

    def _table(self) -> dict[str, dict[str, Any]]:
        if self._entries is None:
            stored = self._read_file()["tables"].get(self.key, {})
            entries = stored.get("entries", {}) if isinstance(stored, dict) else None
            if not isinstance(entries, dict) or not all(
                isinstance(e, dict) and "mean_ms" in e for e in entries.values()
            ):
                raise ValueError(
                    f"{self.path}: the table of this machine ({self.key}) is malformed; move the file away "
                    "or give another --table"
                )
            bad = next((key for key, entry in entries.items() if not _usable_ms(entry["mean_ms"])), None)
            if bad is not None:  # a NaN or a negative time would be summed into every prediction
                raise ValueError(
                    f"{self.path}: the entry {quoted(bad)} of this machine's table has mean_ms "
                    f"{quoted(entries[bad]['mean_ms'])}, not a positive number of milliseconds; move the file "
                    "away or give another --table"
                )
            self._entries = dict(entries)
        return self._entries

    def lookup(self, key: str, build: Callable[[], tuple[nn.Module, list[torch.Tensor]]]) -> float:
        """The mean ms of entry ``key``; ``build()`` gives ``(module, inputs)`` to measure it alone if absent.

        The mean, not the median: a part's times are skewed to the right (a slow memory placement, an
        interrupt), and the median of a sum of many such parts is close to the sum of their means,
        not of their medians. The median is kept in the entry beside it.
        """
        table = self._table()
        if key not in table:
            module, inputs = build()
            module = module.to(self.device)
            inputs = [tensor.to(self.device) for tensor in inputs]
            latency = measure(module, inputs, threads=self.threads, **self.measure_options)
            self._add(key, {**_entry(latency), "measured": _how("alone")})
        return float(table[key]["mean_ms"])

    def _add(self, key: str, entry: dict[str, Any]) -> None:
        self._table()[key] = self._new[key] = entry
        self.measured += 1

    def _measure_network(self, ir: Network, parts: list[Part]) -> None:
        """Time ``ir``'s network with each part inside it; add the entries it lacks (``network`` method)."""
        network = compile_ir(ir, seed=0).to(self.device)
        located = [part.locate(network) for part in parts[:-1] if part.locate is not None]
        latency, shares = measure_in_context(
            network,
            self.images(3, ir.resolution).to(self.device),
            located,
            threads=self.threads,
            **self.measure_options,
        )
        digest = hashlib.sha256(json.dumps([part.key for part in parts]).encode()).hexdigest()[:16]
        by_key: dict[str, list[float]] = {}
        for part, share in zip(parts, shares):
            by_key.setdefault(part.key, []).append(share)
        table = self._table()
        for key, values in by_key.items():
            if key not in table:
                mean = sum(values) / len(values)
                self._add(
                    key,
                    {
                        "mean_ms": mean,  # its share of the network's median
                        "p10_ms": mean * latency.p10_ms / latency.median_ms,
                        "network_median_ms": latency.median_ms,
                        "network_p10_ms": latency.p10_ms,
                        "repetitions": latency.repetitions,
                        "measured": {**_how("network"), "network": digest},
                    },
                )

    def save(self) -> None:
        """Merge the entries measured here into the file (another process may have added its own)."""
        if not self._new:
            return
        data = self._read_file()
        stored = data["tables"].get(self.key)
        if not isinstance(stored, dict) or not isinstance(
            stored.get("entries"), dict
        ):  # none yet, or one without entries
            stored = data["tables"][self.key] = {"fingerprint": self.fingerprint, "batch_size": self.batch_size}
            stored["entries"] = {}
        stored["entries"].update(self._new)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.path, json.dumps(data, sort_keys=True) + "\n")
        self._entries = {**stored["entries"], **(self._entries or {})}
        self._new = {}

    def predict(self, ir: Network) -> Prediction:
        """The network's latency as the sum of its parts, measuring any part the table lacks (then saved)."""
        parts = split(ir, self.images)
        try:
            if self.method == "network" and any(part.key not in self._table() for part in parts):
                self._measure_network(ir, parts)
            values = [(part.path, self.lookup(part.key, part.build)) for part in parts]
        finally:
            self.save()
        p10 = sum(float(self._table()[part.key].get("p10_ms", 0.0)) for part in parts)
        return Prediction(sum(ms for _, ms in values), tuple(values), p10)

    def images(self, channels: int, size: int) -> torch.Tensor:
        return torch.randn(self.batch_size, channels, size, size, generator=torch.Generator().manual_seed(0))


def _usable_ms(value: Any) -> bool:
    """True for a time a prediction can sum: a finite number of milliseconds > 0 (not a bool)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < float("inf")


def _how(method: str) -> dict[str, Any]:
    """How an entry was measured: the method, when (UTC) and the machine's 1-minute load average then."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return {"method": method, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "load": load}


def _entry(latency: Latency) -> dict[str, Any]:
    return {
        "median_ms": latency.median_ms,
        "p10_ms": latency.p10_ms,
        "p90_ms": latency.p90_ms,
        "mean_ms": latency.mean_ms,
        "repetitions": latency.repetitions,
    }


class LatencyEvaluator(EvaluatorBase[Any]):
    """Latency of a genotype's network at full size (``space.lower(genotype)``), from the lookup table.

    Registered as the ``latency`` evaluator; the MnasNet objective of ``nas search``, ``nas
    latency`` and NetAdapt use it. ``resolution`` overrides the genotype's input size,
    ``num_classes`` its classifier (default 1000, ImageNet's, as ``nas materialize`` builds).
    ``measure`` also times the whole compiled network (metrics ``measured_ms``, ``measured_p10_ms``,
    ``measured_p90_ms``); those are timings, not functions of the genotype. ``model`` (a file
    written by ``nas latency --fit``, ``nas.latency_model``) predicts ``latency_ms`` on the device
    it was fitted to instead of the table on this machine; ``method`` how the table measures a missing
    entry (``METHODS``: in its network, the default, or alone); it predicts only the networks it was
    fitted on, so ``resolution`` and ``measure`` are refused with it. The data settings of
    ``make_evaluator`` (dataset, seed) are taken and ignored: latency needs no data.
    """

    def __init__(
        self,
        space: SearchSpace[Any],
        seed: int = 0,
        dataset: Any = None,
        data_dir: Any = None,
        download: bool = False,
        *,
        table: str | Path | None = None,
        resolution: int | None = None,
        batch_size: int = 1,
        threads: int = 1,
        num_classes: int = 1000,
        measure: bool = False,
        device: str = "cpu",
        model: str | Path | None = None,
        method: str = "network",
        **measure_options: Any,
    ) -> None:
        for name, value in (("resolution", resolution), ("num_classes", num_classes)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{name}: must be a positive integer, got {value!r}")
        if not isinstance(measure, bool):
            raise ValueError(f"measure: expected true or false, got {measure!r}")
        self.model: LatencyModel | None = None
        if model is not None:
            if not isinstance(model, (str, Path)) or not str(model):
                raise ValueError(f"model: expected the path of a fitted latency model (JSON), got {model!r}")
            for name, value in (("resolution", resolution), ("measure", measure or None)):
                if value is not None:
                    raise ValueError(
                        f"{name}: a fitted latency model (model) predicts the device it was fitted to, at the "
                        "networks it was fitted on; drop one of them"
                    )
            self.model = load_model(model, space)
        self.space, self.resolution, self.num_classes, self.measure = space, resolution, num_classes, measure
        self.table = LatencyTable(
            table, device=device, threads=threads, batch_size=batch_size, method=method, **measure_options
        )
        self.measure_options = measure_options  # the whole network: the harness's defaults unless given

    def prepare(self) -> None:
        """Check the device and read the table file now, so that either fails before the first trial."""
        if self.model is not None:
            return  # the fitted model was read and checked when the evaluator was made
        try:
            torch.empty(1, device=self.table.device)
            self.table.fingerprint  # noqa: B018  (names the device: fails for a GPU that is not there)
        except (RuntimeError, AssertionError) as error:
            raise ValueError(
                f"device: {str(self.table.device)!r} is not usable here "
                f"({str(error).splitlines()[0] if str(error) else type(error).__name__})"
            ) from None
        len(self.table)

    def metrics(self) -> tuple[str, ...]:
        measured = ("measured_ms", "measured_p10_ms", "measured_p90_ms") if self.measure else ()
        return ("latency_ms", "latency_resolution", *measured)

    def lower(self, genotype: Any) -> Network:
        macro = {} if self.resolution is None else {"resolution": self.resolution}
        return self.space.lower(genotype, num_classes=self.num_classes, **macro)

    def predict_ms(self, genotype: Any) -> float:
        """The table's (or the fitted model's) latency of ``genotype``'s network (``ValueError`` if it
        cannot be lowered or the model cannot predict it)."""
        return self._predict(self.lower(genotype))

    def _predict(self, ir: Network) -> float:
        if self.model is not None:
            if not isinstance(ir, CellNet):
                raise ValueError(f"a fitted latency model predicts cell networks, not {type(ir).__name__}")
            return self.model.predict_ir(ir)
        return self.table.predict(ir).total_ms

    def evaluate(self, genotype: Any, trial_id: int = 0) -> dict[str, Any]:
        """``latency_ms`` (predicted) and ``latency_resolution``; with ``measure`` the measured figures."""
        try:
            ir = self.lower(genotype)
            metrics: dict[str, Any] = {
                "latency_ms": self._predict(ir),
                "latency_resolution": ir.resolution,
            }
            if self.measure:
                measured = measure_network(
                    compile_ir(ir, seed=0),
                    ir.resolution,
                    batch_size=self.table.batch_size,
                    threads=self.table.threads,
                    device=self.table.device,
                    **self.measure_options,
                )
                metrics.update(
                    measured_ms=measured.median_ms, measured_p10_ms=measured.p10_ms, measured_p90_ms=measured.p90_ms
                )
        except Exception as error:
            return {"error": f"latency: {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"}
        return metrics
