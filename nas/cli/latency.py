"""``nas latency SPEC``: the measured latency of a network and the lookup table's prediction of it.

The measurement and the table belong to the registered ``latency`` evaluator (``evaluators/``);
this command builds it through the registry, like a plug-in's would be.

``nas latency --fit MEASUREMENTS.csv --space SPACE --out MODEL.json`` fits a latency model to
measurements taken on another device (``nas.latency_model``); ``nas latency SPEC --model
MODEL.json`` prints its prediction, and a search's ``latency: {model: MODEL.json}`` rewards by it.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import nas
from nas import registry
from nas.api import check_size
from nas.latency_model import (
    AUTO,
    DEFAULT_COLUMN,
    FEATURE_SETS,
    FOLDS,
    fit,
    load_model,
    read_measurements,
    save_model,
)

# Flags of the measurement on this machine, and their defaults: refused with --fit or --model.
MEASUREMENT_FLAGS = {
    "resolution": None,
    "batch_size": 1,
    "threads": 1,
    "num_classes": 1000,
    "device": "cpu",
    "table": None,
    "method": "network",
}


def add_latency_command(commands: Any, positive_int: Any) -> None:
    latency = commands.add_parser(
        "latency",
        help="measured and lookup-table latency of a network on this machine; a latency model fitted to "
        "another device's measurements (--fit)",
    )
    latency.add_argument("spec", nargs="?", help="preset name, genotype JSON file or search run directory")
    latency.add_argument("--resolution", type=positive_int, help="input size (default: the network's own)")
    latency.add_argument("--batch-size", type=positive_int, default=1, help="images per forward pass (default 1)")
    latency.add_argument("--threads", type=positive_int, default=1, help="intra-op threads (default 1)")
    latency.add_argument("--num-classes", type=positive_int, default=1000, help="classifier outputs (default 1000)")
    latency.add_argument("--device", default="cpu", help="torch device (default cpu)")
    latency.add_argument(
        "--table",
        metavar="FILE.json",
        help="lookup table file (default: $NAS_LATENCY_TABLE or ~/.cache/nas-engine/latency.json)",
    )
    latency.add_argument(
        "--method",
        choices=("network", "alone"),
        default="network",
        help="how the table measures an entry it lacks: inside the network that needs it (default) or alone",
    )
    latency.add_argument("--json", action="store_true", help="print the figures as JSON")
    fitting = latency.add_argument_group("a device that is not here: fit a latency model to its measurements")
    fitting.add_argument(
        "--fit",
        metavar="MEASUREMENTS.csv",
        help="CSV with a header: an architecture column (arch, architecture or genotype: the space's notation "
        "or genotype JSON) and a latency column in ms; at least 20 architectures (100 recommended)",
    )
    fitting.add_argument("--space", help="the space of the measured architectures (with --fit), e.g. nb201")
    fitting.add_argument("--column", default=DEFAULT_COLUMN, help=f"the latency column (default {DEFAULT_COLUMN})")
    fitting.add_argument(
        "--features",
        default=AUTO,
        help=f"feature set: {AUTO} (chosen by cross-validation, the default) or one of {', '.join(FEATURE_SETS)}",
    )
    fitting.add_argument("--out", metavar="MODEL.json", help="the fitted model's file (with --fit)")
    fitting.add_argument(
        "--model", metavar="MODEL.json", help="predict SPEC's latency by a fitted model instead of measuring it"
    )
    latency.set_defaults(run=cmd_latency)


def latency_report(
    spec: Any,
    *,
    resolution: int | None = None,
    batch_size: int = 1,
    threads: int = 1,
    num_classes: int = 1000,
    device: str = "cpu",
    table: str | None = None,
    method: str = "network",
) -> dict[str, Any]:
    """Measured (median, p10, p90) and predicted latency of ``spec`` with the device's fingerprint, and the
    prediction's error against the measurement (taken after the prediction, which may measure the table's
    missing entries in the same network: then the error is the machine's drift between the two)."""
    import torch  # lazy: the command line parses and checks without torch

    try:
        torch.empty(1, device=device)
    except (RuntimeError, AssertionError, TypeError) as error:
        raise ValueError(f"device: {device!r} is not usable here ({str(error).splitlines()[0]})") from None
    resolved = nas.resolve(spec)
    evaluator = registry.evaluators.get("latency")(
        resolved.space,
        table=table,
        resolution=resolution,
        batch_size=batch_size,
        threads=threads,
        num_classes=num_classes,
        measure=True,
        device=device,
        method=method,
    )
    evaluator.prepare()
    check_size(evaluator.lower(resolved.genotype))  # a network too large to build is refused before allocating
    metrics = evaluator.evaluate(resolved.genotype)
    if "error" in metrics:
        raise ValueError(metrics["error"])
    predicted, measured = metrics["latency_ms"], metrics["measured_ms"]
    predicted_p10 = evaluator.table.predict(evaluator.lower(resolved.genotype)).p10_ms or None  # no new entry now
    return {
        "spec": resolved.name or str(spec),
        "space": resolved.space.name,
        "resolution": metrics["latency_resolution"],
        "batch_size": batch_size,
        "threads": threads,
        "measured_ms": measured,
        "measured_p10_ms": metrics["measured_p10_ms"],
        "measured_p90_ms": metrics["measured_p90_ms"],
        "predicted_ms": predicted,
        "prediction_error": (predicted - measured) / measured,
        "predicted_p10_ms": predicted_p10,
        "prediction_error_p10": predicted_p10 / metrics["measured_p10_ms"] - 1 if predicted_p10 else None,
        "fingerprint": evaluator.table.fingerprint,
        "table": str(evaluator.table.path),
        "table_key": evaluator.table.key,
        "table_method": evaluator.table.method,
        "table_entries_measured_now": evaluator.table.measured,
    }


def fit_report(
    measurements: str, space_name: str, out: str, *, column: str = DEFAULT_COLUMN, features: str = AUTO
) -> dict[str, Any]:
    """Fit a latency model to the measurements in ``measurements``, write it to ``out`` and describe it."""
    registry.spaces.check("space", space_name)
    if features != AUTO and features not in FEATURE_SETS:
        raise ValueError(f"features: {features!r} is not a feature set; valid: {[AUTO, *FEATURE_SETS]}")
    space = registry.spaces.get(space_name)
    genotypes, latencies = read_measurements(measurements, space, column)
    try:
        model = fit(space, genotypes, latencies, features, source=f"{measurements}: {column}")
    except ValueError as error:
        raise ValueError(f"{measurements}: {error}") from None
    save_model(model, out)
    return {"model": out, **model.to_json()}


def cmd_latency(args: argparse.Namespace) -> None:
    if args.fit is not None:
        _check_fit_flags(args)
        _print_fit(fit_report(args.fit, args.space, args.out, column=args.column, features=args.features), args.json)
        return
    fit_only = [flag for flag in ("space", "out") if getattr(args, flag) is not None]
    fit_only += [
        flag for flag, default in (("column", DEFAULT_COLUMN), ("features", AUTO)) if getattr(args, flag) != default
    ]
    if fit_only:
        raise ValueError(f"--{fit_only[0].replace('_', '-')}: a setting of --fit MEASUREMENTS.csv")
    if args.spec is None:
        raise ValueError("nas latency: give a SPEC (preset, genotype file or run directory), or --fit MEASUREMENTS.csv")
    if args.model is not None:
        _refuse_measurement_flags(args, "--model predicts the device the model was fitted to")
        _print_prediction(model_report(args.spec, args.model), args.json)
        return
    report = latency_report(
        args.spec,
        resolution=args.resolution,
        batch_size=args.batch_size,
        threads=args.threads,
        num_classes=args.num_classes,
        device=args.device,
        table=args.table,
        method=args.method,
    )
    if args.json:
        print(json.dumps(report, indent=2))
        return
    fingerprint = report["fingerprint"]
    print(
        f"{report['spec']} ({report['space']}) at {report['resolution']}x{report['resolution']}, batch "
        f"{report['batch_size']}, {report['threads']} thread(s) on {fingerprint['device']} "
        f"({fingerprint['processor']}, "
        f"torch {fingerprint['torch']})"
    )
    print(
        f"measured:  {report['measured_ms']:.3f} ms median (p10 {report['measured_p10_ms']:.3f}, "
        f"p90 {report['measured_p90_ms']:.3f})"
    )
    print(
        f"predicted: {report['predicted_ms']:.3f} ms from the lookup table ({100 * report['prediction_error']:+.1f}%; "
        f"{report['table_entries_measured_now']} entries measured now, {report['table_method']} method, "
        f"table {report['table']})"
    )


def model_report(spec: Any, model_path: str) -> dict[str, Any]:
    """The latency of ``spec`` predicted by the fitted model in ``model_path``."""
    resolved = nas.resolve(spec)
    model = load_model(model_path, resolved.space)
    return {
        "spec": resolved.name or str(spec),
        "space": resolved.space.name,
        "predicted_ms": model.predict(resolved.space, resolved.genotype),
        "model": model_path,
        "features": model.feature_set,
        "source": model.source,
    }


def _check_fit_flags(args: argparse.Namespace) -> None:
    if args.spec is not None:
        raise ValueError(f"--fit: fits a model to measurements; give no SPEC (got {args.spec!r})")
    if args.model is not None:
        raise ValueError("--model: predicts a SPEC by a model already fitted; not with --fit")
    needs = {"space": "the space of the measured architectures, e.g. nb201", "out": "the model file to write"}
    for flag, what in needs.items():
        if getattr(args, flag) is None:
            raise ValueError(f"--fit: needs --{flag} ({what})")
    _refuse_measurement_flags(args, "--fit fits measurements taken elsewhere")


def _refuse_measurement_flags(args: argparse.Namespace, why: str) -> None:
    for flag, default in MEASUREMENT_FLAGS.items():
        if getattr(args, flag) != default:
            raise ValueError(f"--{flag.replace('_', '-')}: a setting of the measurement on this machine; {why}")


def _print_fit(report: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(report, indent=2))
        return
    chosen, scores = report["features"], report["cross_validation"]
    print(
        f"fitted {chosen} ({len(report['weights'])} weights and a bias of {report['bias_ms']:.4g} ms) to "
        f"{report['rows']} measurements of {report['space']} ({report['source']}); wrote {report['model']}"
    )
    for name, score in sorted(scores.items(), key=lambda item: -item[1]["within_10"]):
        mark = "  <- chosen" if name == chosen else ""
        print(
            f"  {name:<11} held out ({FOLDS}-fold): {100 * score['within_10']:5.1f}% within ±10%, "
            f"{100 * score['within_5']:5.1f}% within ±5%, median error {100 * score['median_error']:.1f}%{mark}"
        )


def _print_prediction(report: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(report, indent=2))
        return
    print(
        f"{report['spec']} ({report['space']}): {report['predicted_ms']:.3f} ms predicted by {report['model']} "
        f"({report['features']}, fitted to {report['source']})"
    )
