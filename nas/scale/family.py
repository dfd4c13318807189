"""The compound-scaled family of a ``nas scale`` run: ``scaling.json``, ``scaling.md``, ``scaling.png``.

The best grid point (highest proxy accuracy; ties: the earlier trial) scales the base for
phi = 0 (the base itself) ... ``phi_max`` at the base's own full resolution (arXiv 1905.11946
eq. 3). Every member is built on the meta device and counted, so the table holds the real,
rounded cost (``macs_ratio``, to the base) beside the formula's ``2**phi``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from nas.api import Resolved, load_genotype, space_of
from nas.files import atomic_write_text
from nas.journal import Journal
from nas.scaling import compound_multipliers
from nas.serialization import genotype_json, read_json_file
from nas.spaces.scaling import COST_CLASSES, CompoundPoint, CompoundScalingSpace, full_cost
from nas.storage import study_names

FAMILY_FILE = "scaling.json"
SCALE_STUDY = "nas-scale"  # the grid's study in OUT/study.db


def build_family(
    journal: Journal,
    space: CompoundScalingSpace,
    base: Resolved,
    *,
    spec: str,
    dataset: str,
    grid: dict[str, Any],
    phi_max: int,
    num_classes: int = COST_CLASSES,
) -> dict[str, Any]:
    """The content of ``scaling.json``: the grid's result, every evaluated point, and the family.

    ``base`` is the base network the run's ``spec`` resolved to; ``grid`` its settings (step, high,
    tolerance, constraint and how many points it has).

    Costs are counted at ``num_classes`` (1000: what ``nas materialize`` builds by default, and
    the class count of every point's ``macs_ratio`` in the journal, so the two ratios agree).
    """
    ranked = journal.ranked()
    points = [_point_row(record) for record in sorted(journal.records.values(), key=lambda r: r.trial_id)]
    family: dict[str, Any] = {
        "base": {"spec": spec, "name": base.name, "genotype": base.to_json()},
        "dataset": dataset,
        "num_classes": num_classes,
        "grid": {**grid, "evaluated": len(points)},
        "alpha": None,
        "beta": None,
        "gamma": None,
        "constraint": None,
        "best_trial": None,
        "accuracy": None,
        "points": points,
        "models": [],
    }
    if not ranked:
        return family
    best = ranked[0]
    point = space.genotype_from_dict(best.genotype["genotype"])
    family.update(
        alpha=point.alpha,
        beta=point.beta,
        gamma=point.gamma,
        constraint=point.constraint,
        best_trial=best.trial_id,
        accuracy=best.result.reward,
    )
    base_macs = full_cost(space.base_space, space.base_genotype, num_classes)["macs"]
    family["models"] = [_member(space, point, phi, num_classes, base_macs) for phi in range(phi_max + 1)]
    return family


def _point_row(record: Any) -> dict[str, Any]:
    metrics = record.result.metrics
    row = {
        "trial": record.trial_id,
        **{
            key: metrics.get(key)
            for key in ("alpha", "beta", "gamma", "constraint", "macs_ratio", "full_params", "full_macs")
        },
    }
    row["accuracy"] = None if record.result.failed else record.result.reward
    if record.result.failed:
        row["error"] = record.result.error
    return row


def _member(
    space: CompoundScalingSpace, point: CompoundPoint, phi: int, num_classes: int, base_macs: int
) -> dict[str, Any]:
    """Member ``phi``: the base scaled by alpha^phi, beta^phi, gamma^phi, built and counted at full size."""
    multipliers = compound_multipliers(point.alpha, point.beta, point.gamma, phi)
    row: dict[str, Any] = {
        "phi": phi,
        "width": multipliers.width,
        "depth": multipliers.depth,
        "resolution_multiplier": multipliers.resolution,
        "2**phi": 2.0**phi,
    }
    try:
        genotype = space.scaled(point, phi)
        cost = full_cost(space.base_space, genotype, num_classes)
    except ValueError as error:  # beyond the base space's bounds: listed, not built
        return {**row, "error": str(error).splitlines()[0]}
    return {
        **row,
        "resolution": cost["resolution"],
        "params": cost["params"],
        "macs": cost["macs"],
        "macs_ratio": cost["macs"] / base_macs,
        "genotype": genotype_json(space.base_space.name, genotype),
    }


def write_family(out: Path, family: dict[str, Any]) -> None:
    """``scaling.json``, ``scaling.md`` and ``scaling.png`` (written atomically)."""
    from nas.plotting import plot_family  # lazy: reading a family (nas show, materialize --phi) draws nothing

    atomic_write_text(out / FAMILY_FILE, json.dumps(family, indent=2) + "\n")
    atomic_write_text(out / "scaling.md", family_markdown(family))
    plot_family(family, out / "scaling.png")


def family_markdown(family: dict[str, Any]) -> str:
    """The family and the grid as Markdown tables."""
    base, grid = family["base"], family["grid"]
    lines = [
        f"# Compound scaling of {base['name'] or base['spec']}",
        "",
        f"Grid: step {grid['step']:g} over [1, {grid['high']:g}], |{_constraint_label(grid)} - 2| <= "
        f"{grid['tolerance']:g}: {grid['points']} points, {grid['evaluated']} evaluated on {family['dataset']}.",
        "",
    ]
    if family["alpha"] is None:
        return "\n".join(lines + ["No point was evaluated successfully: no family.", ""])
    lines += [
        f"Best (trial {family['best_trial']}, proxy accuracy {family['accuracy']:.4f}): alpha (depth) "
        f"{family['alpha']:g}, beta (width) {family['beta']:g}, gamma (resolution) {family['gamma']:g}; "
        f"alpha * beta^2 * gamma^2 = {family['constraint']:.4f}.",
        "",
        f"## Family ({family['num_classes']} classes)",
        "",
        "| phi | width | depth | resolution | params | MACs | MACs / base | 2^phi |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for model in family["models"]:
        if "error" in model:
            lines.append(
                f"| {model['phi']} | {model['width']:.4f} | {model['depth']:.4f} | - | - | - | - | "
                f"{model['2**phi']:g} |  (not built: {model['error']})"
            )
            continue
        lines.append(
            f"| {model['phi']} | {model['width']:.4f} | {model['depth']:.4f} | {model['resolution']} | "
            f"{model['params']:,} | {model['macs'] / 1e6:,.1f}M | {model['macs_ratio']:.3f} | "
            f"{model['2**phi']:g} |"
        )
    lines += [
        "",
        "## Evaluated points (best first)",
        "",
        "| trial | alpha | beta | gamma | alpha*beta^2*gamma^2 | MACs ratio | accuracy |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    ordered = sorted(family["points"], key=lambda p: (p["accuracy"] is None, -(p["accuracy"] or 0), p["trial"]))
    for point in ordered:
        accuracy = "failed" if point["accuracy"] is None else f"{point['accuracy']:.4f}"
        ratio = "-" if point["macs_ratio"] is None else f"{point['macs_ratio']:.3f}"
        constraint = "-" if point["constraint"] is None else f"{point['constraint']:.4f}"
        lines.append(
            f"| {point['trial']} | {point['alpha']} | {point['beta']} | {point['gamma']} | {constraint} | "
            f"{ratio} | {accuracy} |"
        )
    return "\n".join(lines) + "\n"


def _constraint_label(grid: dict[str, Any]) -> str:
    return "alpha*beta^2*gamma^2" if grid["constraint"] == "formula" else "MACs ratio"


def read_family(directory: str | Path) -> dict[str, Any] | None:
    """The ``scaling.json`` of a ``nas scale`` run directory, or None if ``directory`` has none."""
    path = Path(directory) / FAMILY_FILE
    if not Path(directory).is_dir() or not path.is_file():
        return None
    family = read_json_file(path)
    kinds = {"base": dict, "grid": dict, "points": list, "models": list, "dataset": str, "num_classes": int}
    if (
        not isinstance(family, dict)
        or any(not isinstance(family.get(key), kind) for key, kind in kinds.items())
        or any(not isinstance(model, dict) or not isinstance(model.get("phi"), int) for model in family["models"])
    ):
        raise ValueError(
            f"{path}: not a scaling.json written by nas scale (edited or damaged); rerun the same "
            "nas scale command to write it again from the journal"
        )
    return family


def family_member(directory: str | Path, phi: int) -> Resolved:
    """Member ``phi`` of the family in ``directory`` (``nas materialize DIR --phi K``)."""
    family = read_family(directory)
    if family is None:
        if Path(directory).is_dir() and SCALE_STUDY in study_names(Path(directory)):
            raise ValueError(
                f"{directory}: a nas scale run whose grid has not finished; rerun the same nas scale "
                "command to resume it"
            )
        raise ValueError(f"{directory}: --phi needs a nas scale run directory (with {FAMILY_FILE})")
    built = {model.get("phi"): model for model in family["models"] if isinstance(model, dict) and "genotype" in model}
    if phi not in built:
        raise ValueError(f"--phi: {phi} is not a member of the family in {directory}; valid: {sorted(built)}")
    genotype = load_genotype(built[phi]["genotype"])
    name = family["base"].get("name") or "base" if isinstance(family.get("base"), dict) else "base"
    return Resolved(space_of(genotype), genotype, f"{name} scaled, phi={phi}")
