"""``nas search``: flags, an optional YAML config, and the call into ``nas.runs``.

Flags override the config file; the config file overrides the defaults. Keys of the config are
the long flag names with underscores, plus two mappings: ``proxy`` (options of the proxy
evaluator, e.g. ``num_cells``, ``penultimate_filters``, ``batch_size``, ``learning_rate``) and
``controller_options`` (e.g. ``batch_size`` or ``learning_rate`` of the RNN controller).
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

import yaml

from nas.runs import DATASETS, SearchSettings

_FLAGS = ("space", "controller", "budget", "dataset", "data_dir", "download", "epochs", "seed", "storage",
          "study_name")


def add_search_command(commands: Any) -> None:
    search = commands.add_parser("search", help="run (or resume) an architecture search")
    search.add_argument("--space", help="nasnet, mobilenetv3 or efficientnet (default nasnet)")
    search.add_argument("--controller", help="reinforce, random or evolution (default reinforce)")
    search.add_argument("--budget", type=int, help="finished evaluations to reach (default 20)")
    search.add_argument("--dataset", choices=DATASETS, help="default digits (bundled, nothing downloaded)")
    search.add_argument("--data-dir", help="folder of cifar10 / imagefolder data")
    search.add_argument("--download", action="store_true", default=None,
                        help="allow downloading CIFAR-10 into --data-dir")
    search.add_argument("--epochs", type=int, help="proxy training epochs per candidate")
    search.add_argument("--out", help="run directory (journal, controller state, report)")
    search.add_argument("--seed", type=int, help="search seed (default 0)")
    search.add_argument("--storage", help="Optuna storage URL (default sqlite:///OUT/study.db)")
    search.add_argument("--study-name", help="study name inside --storage (default nas-search)")
    search.add_argument("--config", metavar="FILE.yaml", help="settings file; flags override it")
    search.add_argument("--no-progress", action="store_true", help="one line per trial instead of a bar")
    search.set_defaults(run=cmd_search)


def load_config(path: str) -> dict[str, Any]:
    """Read a YAML settings file; unknown keys and malformed files are ``ValueError``s."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file") from None
    except yaml.YAMLError as error:
        raise ValueError(f"{path}: malformed YAML ({str(error).splitlines()[0]})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of settings at the top level")
    valid = {f.name for f in dataclasses.fields(SearchSettings)}
    unknown = sorted(set(data) - valid)
    if unknown:
        raise ValueError(f"{path}: unknown setting {unknown[0]!r}; valid: {sorted(valid)}")
    return data


def settings_from_args(args: argparse.Namespace) -> SearchSettings:
    values: dict[str, Any] = load_config(args.config) if args.config else {}
    for name in _FLAGS + ("out",):
        flag = getattr(args, name, None)
        if flag is not None:
            values[name] = flag
    if not values.get("out"):
        raise ValueError("--out: a run directory is required (flag or config key 'out')")
    settings = SearchSettings(**values)
    settings.validate()
    return settings


def cmd_search(args: argparse.Namespace) -> None:
    from nas.runs import run_search

    settings = settings_from_args(args)
    best, stats = run_search(settings, progress=False if args.no_progress else None)
    out = Path(settings.out)
    if best is None:
        print(f"no successful evaluation in {out}; see {out / 'report.md'}")
        return
    print(f"best reward {best.result.reward:.4f} (trial {best.trial_id}); wrote {out / 'best.json'} and "
          f"{out / 'report.md'}; loop overhead {100 * stats.overhead_fraction:.2f}% of {stats.wall_seconds:.1f} s")
