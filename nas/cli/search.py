"""``nas search``: flags, an optional YAML config, and the call into ``nas.search.run``.

Flags override the config file; the config file overrides the defaults. Keys of the config are
the long flag names with underscores, plus two mappings: ``proxy`` (options of the proxy
evaluator, e.g. ``num_cells``, ``penultimate_filters``, ``batch_size``, ``learning_rate``) and
``controller_options`` (e.g. ``batch_size`` or ``learning_rate`` of the RNN controller), and
``latency`` (options of the latency evaluator of ``--objective mnas``: ``table``, ``threads``, ...),
``early_stop_options`` (ASHA's ``grace_period``, ``reduction_factor``, ``brackets``) and
``backend_options`` (e.g. ``retries`` of the ray backend).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from nas import registry
from nas.search.run import SearchSettings

if TYPE_CHECKING:
    from nas.journal import Record

_FLAGS = ("space", "controller", "evaluator", "budget", "dataset", "data_dir", "download", "epochs", "seed",
          "threads", "storage", "study_name", "repeats", "final_top", "final_epochs", "final_repeats", "objective",
          "latency_target_ms", "latency_weight")
EXECUTION_FLAGS = ("backend", "workers", "address", "cpus_per_trial", "gpus_per_trial", "early_stop")


def _listed(known: registry.Registry, default: str) -> str:
    """Help text naming what is registered now (built-ins and installed plug-ins)."""
    return f"one of: {', '.join(known.names())} (default {default})"


def add_search_command(commands: Any) -> None:
    search = commands.add_parser("search", help="run (or resume) an architecture search")
    search.add_argument("--space", help=_listed(registry.spaces, "nasnet"))
    search.add_argument("--controller", help=_listed(registry.controllers, "reinforce"))
    search.add_argument("--evaluator", help=_listed(registry.evaluators, "proxy"))
    search.add_argument("--budget", type=int, help="finished evaluations to reach (default 20)")
    search.add_argument("--dataset", help=_listed(registry.datasets, "digits") + "; digits is bundled")
    search.add_argument("--data-dir", help="folder of the data set (cifar10, imagefolder)")
    search.add_argument("--download", action="store_true", default=None,
                        help="allow downloading CIFAR-10 into --data-dir")
    search.add_argument("--epochs", type=int, help="proxy training epochs per candidate")
    search.add_argument("--out", help="run directory (journal, controller state, report)")
    search.add_argument("--seed", type=int, help="search seed (default 0)")
    search.add_argument("--threads", type=int, help="intra-op threads per evaluation (default 1)")
    search.add_argument("--repeats", type=int, help="evaluations per candidate with independent seeds and "
                        "validation splits; the reward is their mean (default 1)")
    search.add_argument("--final-top", type=int, help="after the search, evaluate the best K candidates again "
                        "and choose best.json among them (default 0: no final stage)")
    search.add_argument("--final-epochs", type=int, help="training epochs of the final stage (default: --epochs)")
    search.add_argument("--final-repeats", type=int, help="fresh seeds per candidate in the final stage (default 3)")
    search.add_argument("--objective", choices=("accuracy", "mnas"), help="reward: accuracy (default) or the MnasNet "
                        "reward accuracy * (latency / target) ** weight, latency from the lookup table at full size")
    search.add_argument("--latency-target-ms", type=float, help="latency target T of the mnas objective (ms)")
    search.add_argument("--latency-weight", type=float, help="exponent w of the mnas objective (default -0.07)")
    add_execution_flags(search)
    search.add_argument("--storage", help="Optuna storage URL (default sqlite:///OUT/study.db)")
    search.add_argument("--study-name", help="study name inside --storage (default nas-search)")
    search.add_argument("--config", metavar="FILE.yaml", help="settings file; flags override it")
    search.add_argument("--no-progress", action="store_true", help="one line per trial instead of a bar")
    search.set_defaults(run=cmd_search)


def add_execution_flags(parser: argparse.ArgumentParser, early_stop: bool = True) -> None:
    """The flags of ``nas.backend.BackendSettings``, shared by the commands that run evaluations."""
    parser.add_argument("--backend", help=_listed(registry.backends, "local") + "; ray runs --workers evaluations "
                        "at once")
    parser.add_argument("--workers", type=int, help="evaluations at once (ray; default 1)")
    parser.add_argument("--address", help="an existing Ray cluster (host:port, or auto); default: start a local Ray")
    parser.add_argument("--cpus-per-trial", type=int, help="CPUs, and intra-op threads, of one evaluation (ray; "
                        "default 1)")
    parser.add_argument("--gpus-per-trial", type=float, help="GPUs of one evaluation, may be fractional (ray; default 0)")
    if early_stop:
        parser.add_argument("--early-stop", choices=("asha",), help="stop poor candidates early with Ray Tune's "
                            "ASHA on the per-epoch validation accuracy (ray)")


def load_config(path: str, settings_class: type = SearchSettings) -> dict[str, Any]:
    """Read a YAML file of ``settings_class`` fields; unknown keys and malformed files are ``ValueError``s."""
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
    valid = {f.name for f in dataclasses.fields(settings_class)}
    unknown = sorted(set(data) - valid)
    if unknown:
        raise ValueError(f"{path}: unknown setting {unknown[0]!r}; valid: {sorted(valid)}")
    return data


def settings_from_args(args: argparse.Namespace, settings_class: type = SearchSettings,
                       flags: tuple[str, ...] = _FLAGS + EXECUTION_FLAGS) -> Any:
    """``settings_class`` from the config file, overridden by the ``flags`` given, validated."""
    values: dict[str, Any] = load_config(args.config, settings_class) if args.config else {}
    for name in flags + ("out",):
        flag = getattr(args, name, None)
        if flag is not None:
            values[name] = flag
    if not values.get("out"):
        raise ValueError("--out: a run directory is required (flag or config key 'out')")
    settings = settings_class(**values)
    settings.validate()
    return settings


def cmd_search(args: argparse.Namespace) -> None:
    from nas.search.run import run_search

    settings = settings_from_args(args)
    with _Progress(settings.budget, False if args.no_progress else None) as progress:
        best, stats = run_search(settings, on_record=progress.update, on_final=_print_final)
    out = Path(settings.out)
    if best is None:
        print(f"no successful evaluation in {out}; see {out / 'report.md'}")
        return
    startup = f", {stats.backend} start-up {stats.startup_seconds:.1f} s" if stats.backend != "local" else ""
    stopped = f"; {stats.early_stopped} stopped early" if stats.early_stopped else ""
    print(f"best reward {best.result.reward:.4f} (trial {best.trial_id}){stopped}; wrote {out / 'best.json'} and "
          f"{out / 'report.md'}; loop overhead {100 * stats.overhead_fraction:.2f}% of {stats.wall_seconds:.1f} s"
          f"{startup}")


def _print_final(pair: tuple[Record, Record], replayed: bool, done: int, total: int) -> None:
    """One line per candidate of the final stage."""
    search_record, record = pair
    outcome = (f"failed ({record.result.error})" if record.result.failed
               else f"final reward {record.result.reward:.4f}")
    print(f"final stage {done}/{total}: trial {search_record.trial_id} (search reward "
          f"{search_record.result.reward:.4f}): {outcome}" + (" (recorded before)" if replayed else ""),
          file=sys.stderr, flush=True)


class _Progress:
    """A rich progress bar on a terminal; one line per trial otherwise (logs, CI)."""

    def __init__(self, budget: int, enabled: bool | None) -> None:
        self.budget, self.done, self.best = budget, 0, None
        self.interactive = sys.stderr.isatty() if enabled is None else enabled
        self.bar: Any = None

    def __enter__(self) -> _Progress:
        if self.interactive:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                TextColumn("best {task.fields[best]}"), TimeElapsedColumn(), transient=False)
            self.bar.start()
            self.task = self.bar.add_task("search", total=self.budget, completed=0, best="-")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()

    def update(self, record: Record, replayed: bool, finished: int) -> None:
        """Show the finished evaluations in the journal and the best reward told so far."""
        self.done = finished
        if not record.result.failed and (self.best is None or record.result.reward > self.best):
            self.best = record.result.reward
        best = "-" if self.best is None else f"{self.best:.4f}"
        if self.bar is not None:
            self.bar.update(self.task, completed=self.done, best=best)
        elif not replayed:
            outcome = (f"failed ({record.result.error})" if record.result.failed
                       else f"reward {record.result.reward:.4f}")
            print(f"trial {record.trial_id}: {outcome}; {self.done}/{self.budget} done, best {best}",
                  file=sys.stderr, flush=True)
