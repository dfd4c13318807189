"""A latency model fitted to a device's measurements: the latency of cells on a device we do not have.

The lookup table (``evaluators.latency_table``) times a network's parts on this machine. A phone, an
Edge TPU or a Jetson is not here; what a user has is a few end-to-end measurements taken on it. A
``LatencyModel`` is fitted to them (``fit``) and predicts every other architecture of the space,
so that ``--objective mnas`` can target that device (the ``latency`` evaluator's ``model`` option).

The model is the lookup table's idea with the device's numbers: a fixed overhead plus a cost per
op, summed over the cells of the network, ``latency_ms = bias + sum(weight[f] * count[f])``. The
counts come from the network's cell IR (``nas.cell_ir.CellNet``: every placed cell's DAG), so any
space that lowers to cells can be fitted; the measured example is NAS-Bench-201 (``nb201``), whose
15,625 cells HW-NAS-Bench timed on six devices (``benchmarks/hw_nas_bench_fit.py``). Two choices
define a feature set, ``PRUNING-GRANULARITY``:

- *pruning*, what of the cell the device runs: ``all`` every edge as built (PyTorch's eager
  network, a simulated accelerator); ``used`` only the edges whose result reaches the cell's output
  (a graph compiler's dead-code elimination: an edge into a node that only ``zero`` edges read
  costs nothing); ``live`` also drops the edges reading a state that is always zero (constant
  folding). Every set also counts the combines (``combine:add``: one fewer than the edges a node
  adds) and ``alive``, the cells whose output depends on their input (a cell that outputs zeros
  lets a compiler fold the whole network).
- *granularity*: ``ops`` one cost per op kind (a 3x3 convolution costs the same on every edge, as
  the parts of a lookup table do); ``edges`` one cost per op on each edge of the cell (an edge's
  position matters on HW-NAS-Bench's Jetson).

``fit`` with ``features="auto"`` chooses the set by 5-fold cross-validation on the measurements (the
fraction of held-out predictions within ±10%, then the median error), since devices differ: on
HW-NAS-Bench the simulated accelerators are ``all-ops`` to the last digit, the Edge TPU
``live-ops``, the phone ``used-ops``, the Jetson ``used-edges`` (benchmarks/README.md). The weights
fit relative errors (a fast cell counts as much as a slow one) robustly, by Tukey's bisquare on the
relative residuals (``solve``), so that the few measurements no such model explains (HW-NAS-Bench's
phone timed some networks at 0.003 ms: a compiler folded them away) do not pull the fit. A model
file is JSON, written atomically; features that were equal in every measured network are folded into
the bias and kept with their value, and a network where one differs (an op the measurements never
had) is refused rather than extrapolated.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nas.cell_ir import CellGraph, CellNet
from nas.errors import quoted
from nas.files import atomic_write_text, read_user_file
from nas.space import SearchSpace

FORMAT = "nas-latency-model"
VERSION = 1
PRUNINGS: tuple[str, ...] = ("all", "used", "live")
GRANULARITIES: tuple[str, ...] = ("ops", "edges")
FEATURE_SETS: tuple[str, ...] = tuple(f"{p}-{g}" for p in PRUNINGS for g in GRANULARITIES)
AUTO = "auto"
ZERO_OPS = frozenset({"zero"})  # ops whose result is zeros whatever they read (NAS-Bench-201's ``none``)
MIN_ROWS = 20  # HELP (Lee et al., NeurIPS 2021) adapts to a new device from about 20 measurements
FOLDS = 5
TOLERANCE = 0.10  # the cross-validation's criterion: a prediction within ±10% of the measurement
OUTLIER = 0.5  # Tukey's bisquare constant on relative residuals: a measurement 50% off the model gets no weight
MAX_REWEIGHTING = 50
ARCH_COLUMNS = ("arch", "architecture", "genotype")
DEFAULT_COLUMN = "latency_ms"
MAX_MEASUREMENTS_BYTES = 64 * 2**20
MAX_MODEL_BYTES = 4 * 2**20


def cell_features(graph: CellGraph, pruning: str, granularity: str, prefix: str = "") -> dict[str, float]:
    """The counts of one cell (see the module docstring): ``op:NAME`` or ``edge:NODE<SOURCE:NAME``,
    ``combine:KIND`` and ``alive``; ``prefix`` names reduction cells apart from normal ones."""
    inputs, nodes = graph.num_inputs, graph.nodes
    nonzero = [True] * inputs + [False] * len(nodes)
    for k, node in enumerate(nodes):
        nonzero[inputs + k] = any(edge.op not in ZERO_OPS and nonzero[edge.source] for edge in node.inputs)
    used = [pruning == "all"] * graph.num_states
    for state in graph.output:
        used[state] = True
    for k in reversed(range(len(nodes))):
        for edge in nodes[k].inputs:
            if used[inputs + k] and _runs(edge.op, nonzero[edge.source], pruning):
                used[edge.source] = True
    counts: dict[str, float] = {}

    def add(key: str, value: float = 1.0) -> None:
        counts[prefix + key] = counts.get(prefix + key, 0.0) + value

    for k, node in enumerate(nodes):
        if not used[inputs + k]:
            continue
        running = [edge for edge in node.inputs if _runs(edge.op, nonzero[edge.source], pruning)]
        for edge in running:
            add(f"op:{edge.op}" if granularity == "ops" else f"edge:{inputs + k}<{edge.source}:{edge.op}")
        if len(running) > 1:
            add(f"combine:{node.combine}", len(running) - 1)
    if len(graph.output) > 1:
        add(f"combine:{graph.output_combine}", len(graph.output) - 1)
    if any(nonzero[state] for state in graph.output):
        add("alive")
    return counts


def _runs(op: str, source_nonzero: bool, pruning: str) -> bool:
    """Whether an edge is run (given that its node is): every edge as built, or none of the zero ones."""
    if pruning == "all":
        return True
    return op not in ZERO_OPS and (source_nonzero or pruning == "used")


def network_features(ir: CellNet, feature_set: str) -> dict[str, float]:
    """The counts of every built cell of ``ir`` (a cell nothing reads is not built), summed."""
    pruning, granularity = split_feature_set(feature_set)
    live = ir.live_states()
    counts: dict[str, float] = {}
    for i, cell in enumerate(ir.cells):
        if i + 1 not in live:
            continue
        prefix = "reduction " if cell.reduction else ""
        for key, value in cell_features(cell.graph, pruning, granularity, prefix).items():
            counts[key] = counts.get(key, 0.0) + value
    return counts


def split_feature_set(name: str) -> tuple[str, str]:
    """``"used-ops"`` -> ``("used", "ops")``; ``ValueError`` naming the valid sets."""
    if name not in FEATURE_SETS:
        raise ValueError(f"features: {quoted(name)} is not a feature set; valid: {[AUTO, *FEATURE_SETS]}")
    pruning, _, granularity = name.partition("-")
    return pruning, granularity


def lower_cells(space: SearchSpace[Any], genotype: Any) -> CellNet:
    """The space's network of ``genotype`` (its own defaults), which must be a cell network."""
    ir = space.lower(genotype)
    if not isinstance(ir, CellNet):
        raise ValueError(
            f"space {space.name!r} lowers to a {getattr(ir, 'kind', type(ir).__name__)} network; a fitted "
            "latency model counts the ops of cells (a space that lowers to a CellNet, e.g. nb201); "
            "for chain networks use the lookup table"
        )
    return ir


@dataclass(frozen=True)
class LatencyModel:
    """``latency_ms = bias_ms + sum(weights[f] * count[f])`` over the counts of one feature set.

    ``fixed`` holds the features that had one value in every measured network (folded into the
    bias); ``resolution`` is the input size of the measured networks; ``cross_validation`` the
    held-out errors of every feature set tried (``within_5``, ``within_10``, ``median_error``,
    ``parameters``); ``source`` says where the measurements came from.
    """

    space: str
    feature_set: str
    bias_ms: float
    weights: Mapping[str, float]
    fixed: Mapping[str, float]
    resolution: int
    rows: int
    cross_validation: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    source: str = ""

    def predict_ir(self, ir: CellNet) -> float:
        """The predicted latency of the network ``ir`` (ms); ``ValueError`` outside what was measured."""
        if ir.resolution != self.resolution:
            raise ValueError(
                f"latency model: fitted on networks at {self.resolution} px, not {ir.resolution}; it predicts "
                "only the networks it was fitted on"
            )
        counts = network_features(ir, self.feature_set)
        for key in sorted(set(counts) | set(self.fixed)):
            if key not in self.weights and counts.get(key, 0.0) != self.fixed.get(key, 0.0):
                raise ValueError(
                    f"latency model: this network has {_count(counts.get(key, 0.0))} {quoted(key)} where every "
                    f"measured one had {_count(self.fixed.get(key, 0.0))}; fit the model on measurements "
                    "that vary it"
                )
        return self.bias_ms + sum(weight * counts.get(key, 0.0) for key, weight in self.weights.items())

    def predict(self, space: SearchSpace[Any], genotype: Any) -> float:
        """The predicted latency of ``genotype``'s network (ms)."""
        self.check_space(space)
        return self.predict_ir(lower_cells(space, genotype))

    def check_space(self, space: SearchSpace[Any]) -> None:
        if space.name != self.space:
            raise ValueError(f"latency model: fitted on space {self.space!r}, not {space.name!r}")

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "space": self.space,
            "features": self.feature_set,
            "bias_ms": self.bias_ms,
            "weights": dict(sorted(self.weights.items())),
            "fixed": dict(sorted(self.fixed.items())),
            "resolution": self.resolution,
            "rows": self.rows,
            "cross_validation": {name: dict(scores) for name, scores in self.cross_validation.items()},
            "source": self.source,
        }

    @classmethod
    def from_json(cls, data: Any) -> LatencyModel:
        """The model a JSON object describes; ``ValueError`` naming the first field that is wrong."""
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"not a latency model (its 'format' is not {FORMAT!r})")
        if data.get("version") != VERSION:
            raise ValueError(f"version: {quoted(data.get('version'))}, but this engine reads version {VERSION}")
        for name in ("space", "features", "source"):
            if not isinstance(data.get(name), str):
                raise ValueError(f"{name}: expected a string, got {quoted(data.get(name))}")
        split_feature_set(data["features"])
        if not _finite(data.get("bias_ms")):
            raise ValueError(f"bias_ms: expected a number, got {quoted(data.get('bias_ms'))}")
        for name in ("weights", "fixed"):
            table = data.get(name)
            if not isinstance(table, dict) or not all(_finite(value) for value in table.values()):
                raise ValueError(f"{name}: expected an object of numbers")
        for name in ("resolution", "rows"):
            value = data.get(name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected a positive integer, got {quoted(value)}")
        scores = data.get("cross_validation", {})
        if not isinstance(scores, dict) or not all(isinstance(entry, dict) for entry in scores.values()):
            raise ValueError("cross_validation: expected an object of objects")
        return cls(
            data["space"],
            data["features"],
            float(data["bias_ms"]),
            {str(key): float(value) for key, value in data["weights"].items()},
            {str(key): float(value) for key, value in data["fixed"].items()},
            data["resolution"],
            data["rows"],
            scores,
            data["source"],
        )


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _count(value: float) -> str:
    return str(int(value)) if value == int(value) else f"{value:g}"


def save_model(model: LatencyModel, path: str | Path) -> None:
    """Write ``model`` to ``path`` as JSON, atomically (whole or absent, never torn)."""
    atomic_write_text(path, json.dumps(model.to_json(), indent=2) + "\n")


def load_model(path: str | Path, space: SearchSpace[Any] | None = None) -> LatencyModel:
    """The model in the file ``path`` (of ``space``, if given); a one-line ``ValueError`` naming the file."""
    raw = read_user_file(path, MAX_MODEL_BYTES, "a latency model (JSON)")
    try:
        model = LatencyModel.from_json(json.loads(raw))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise ValueError(f"{path}: not a latency model ({type(error).__name__}: {error})") from None
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None
    if space is not None:
        try:
            model.check_space(space)
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from None
    return model


def read_measurements(
    path: str | Path, space: SearchSpace[Any], column: str = DEFAULT_COLUMN
) -> tuple[list[Any], list[float]]:
    """The genotypes and latencies (ms) of a CSV file with a header: an architecture column (``arch``,
    ``architecture`` or ``genotype``: the space's notation or a genotype's JSON) and ``column``.

    A ``ValueError`` names the file and the line of the first bad row.
    """
    raw = read_user_file(path, MAX_MEASUREMENTS_BYTES, "a CSV file of measurements")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a text file (CSV of measurements, UTF-8)") from None
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if not header:
        raise ValueError(f"{path}: empty; expected a CSV header with an architecture column and {column!r}")
    names = [name.strip() for name in header]
    arch = next((name for name in ARCH_COLUMNS if name in names), None)
    if arch is None:
        raise ValueError(f"{path}: no architecture column (one of {list(ARCH_COLUMNS)}); columns: {names[:20]}")
    if column not in names:
        raise ValueError(f"{path}: no column {column!r} (name the latency column with --column); columns: {names[:20]}")
    arch_at, latency_at = names.index(arch), names.index(column)
    genotypes: list[Any] = []
    latencies: list[float] = []
    try:
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue
            where = f"{path}, line {reader.line_num}"
            if len(row) != len(names):
                raise ValueError(f"{where}: {len(row)} fields, but the header has {len(names)}")
            genotypes.append(_genotype(space, row[arch_at].strip(), where))
            latencies.append(_latency(row[latency_at].strip(), where, column))
    except csv.Error as error:
        raise ValueError(f"{path}, line {reader.line_num}: not CSV ({error})") from None
    return genotypes, latencies


def _genotype(space: SearchSpace[Any], text: str, where: str) -> Any:
    try:
        if text.startswith("{"):
            return space.genotype_from_dict(json.loads(text))
        from_string = getattr(space, "from_string", None)
        if from_string is None:
            raise ValueError(f"space {space.name!r} has no architecture strings; give the genotype's JSON")
        return from_string(text)
    except (ValueError, TypeError, json.JSONDecodeError, RecursionError) as error:
        raise ValueError(f"{where}: not an architecture of {space.name} ({str(error).splitlines()[0]})") from None


def _latency(text: str, where: str, column: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{where}: {column} {text!r} is not a positive number of milliseconds")
    return value


def fit(
    space: SearchSpace[Any],
    genotypes: Sequence[Any],
    latencies: Sequence[float],
    features: str = AUTO,
    source: str = "",
) -> LatencyModel:
    """The model of ``latencies`` (ms) measured on ``genotypes``, of the feature set ``features`` or, with
    ``"auto"``, of the set that predicts held-out measurements best (see the module docstring)."""
    if features != AUTO:
        split_feature_set(features)
    if len(genotypes) != len(latencies):
        raise ValueError(f"{len(genotypes)} architectures but {len(latencies)} latencies")
    y = np.asarray(latencies, dtype=float)
    if not np.all(np.isfinite(y)) or np.any(y <= 0):
        raise ValueError("latencies: every one must be a positive number of milliseconds")
    irs: dict[Any, CellNet] = {}
    for genotype in genotypes:
        if genotype not in irs:
            irs[genotype] = lower_cells(space, genotype)
    if len(irs) < MIN_ROWS:
        raise ValueError(
            f"{len(irs)} distinct architectures measured; fitting needs at least {MIN_ROWS} "
            "(100 or more choose the features better: benchmarks/README.md)"
        )
    resolutions = {ir.resolution for ir in irs.values()}
    if len(resolutions) > 1:
        raise ValueError(f"the measured networks have different input sizes {sorted(resolutions)}; fit one at a time")
    candidates = FEATURE_SETS if features == AUTO else (features,)
    matrices = {name: _matrix([network_features(irs[g], name) for g in genotypes]) for name in candidates}
    scores: dict[str, dict[str, float]] = {}
    for name, (_, x) in matrices.items():
        parameters = int(np.linalg.matrix_rank(np.column_stack([np.ones(len(y)), x])))  # independent weights
        if features == AUTO and parameters > len(irs) // 2:
            continue  # too many weights for the measurements: held-out errors would only say so
        errors = _cross_validate(x, y)
        scores[name] = {
            "within_5": float(np.mean(errors <= 0.05)),
            "within_10": float(np.mean(errors <= TOLERANCE)),
            "median_error": float(np.median(errors)),
            "parameters": float(parameters),
        }
    best = max(scores, key=lambda name: (scores[name]["within_10"], -scores[name]["median_error"]))
    keys, x = matrices[best]
    varying = _varying(x)
    coefficients = solve(np.column_stack([np.ones(len(y)), x[:, varying]]), y)
    fixed = {keys[j]: float(x[0, j]) for j in range(len(keys)) if j not in set(varying)}
    return LatencyModel(
        space=space.name,
        feature_set=best,
        bias_ms=float(coefficients[0]),
        weights={keys[j]: float(w) for j, w in zip(varying, coefficients[1:])},
        fixed=fixed,
        resolution=resolutions.pop(),
        rows=len(y),
        cross_validation=scores,
        source=source,
    )


def _matrix(rows: Sequence[Mapping[str, float]]) -> tuple[list[str], np.ndarray]:
    keys = sorted({key for row in rows for key in row})
    return keys, np.array([[row.get(key, 0.0) for key in keys] for row in rows], dtype=float).reshape(len(rows), -1)


def _varying(x: np.ndarray) -> list[int]:
    """The columns whose value is not the same in every row."""
    return [j for j in range(x.shape[1]) if np.ptp(x[:, j]) > 0]


def solve(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Weights that fit relative errors robustly: Tukey's bisquare on the relative residuals
    ``(x @ w) / y - 1`` by iteratively reweighted least squares, so that a measurement more than
    ``OUTLIER`` off the model (a network a compiler folded away, a disturbed run) gets no weight and
    the others are fitted to their relative error. The bisquare is not convex: it starts from least
    squares of absolute errors (which a tiny outlier cannot pull) and of relative errors (which a
    huge one cannot), and keeps the solution of lower loss. The minimum-norm solution where the
    columns are dependent (one-hot edges sum to a constant)."""
    starts = (np.linalg.lstsq(x, y, rcond=None)[0], np.linalg.lstsq(x / y[:, None], np.ones(len(y)), rcond=None)[0])
    solutions = [_bisquare(x, y, start) for start in starts]
    losses = [float(np.sum(_tukey_loss(x @ weights / y - 1))) for weights in solutions]
    return solutions[int(np.argmin(losses))]


def _bisquare(x: np.ndarray, y: np.ndarray, weights: np.ndarray) -> np.ndarray:
    for _ in range(MAX_REWEIGHTING):
        residual = np.abs(x @ weights / y - 1)
        scale = np.where(residual < OUTLIER, 1 - (residual / OUTLIER) ** 2, 0.0) / y
        if np.count_nonzero(scale) < x.shape[1]:
            break  # too few measurements agree with this model: keep the last one
        update = np.linalg.lstsq(x * scale[:, None], y * scale, rcond=None)[0]
        if np.allclose(update, weights, rtol=1e-9, atol=1e-12):
            return np.asarray(update)
        weights = update
    return np.asarray(weights)


def _tukey_loss(residual: np.ndarray) -> np.ndarray:
    inside = np.minimum(np.abs(residual) / OUTLIER, 1.0)
    return OUTLIER**2 / 6 * (1 - (1 - inside**2) ** 3)


def _cross_validate(x: np.ndarray, y: np.ndarray, folds: int = FOLDS) -> np.ndarray:
    """The relative error of every measurement predicted by a model fitted without its fold."""
    order = np.random.default_rng(0).permutation(len(y))
    design = np.column_stack([np.ones(len(y)), x])
    errors = np.empty(len(y))
    for fold in range(folds):
        held = order[fold::folds]
        kept = np.setdiff1d(order, held)
        weights = solve(design[kept], y[kept])
        errors[held] = np.abs(design[held] @ weights / y[held] - 1)
    return errors
