"""``nas search``: flags, an optional YAML config, and the call into the search run (``nas.search.run``).

Flags override the config file; the config file overrides the defaults. Keys of the config are
the long flag names with underscores, plus the mappings ``evaluator_options`` (options of the
evaluator, e.g. the proxy's ``num_cells``, ``penultimate_filters``, ``batch_size``,
``learning_rate``; older files call it ``proxy``), ``controller_options`` (e.g. ``batch_size`` or
``learning_rate`` of the RNN controller), ``latency`` (options of the lookup-table latency an
objective reads: ``table``, ``threads``, ...), ``early_stop_options`` (ASHA's ``grace_period``,
``reduction_factor``, ``brackets``) and ``backend_options`` (e.g. ``retries`` of the ray backend).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from nas import registry
from nas.cli.common import EXECUTION_FLAGS, TrialProgress, add_execution_flags, listed, settings_from_args
from nas.journal import Record
from nas.progress import listening
from nas.search.run import run_search
from nas.search.settings import SearchSettings

FLAGS = (
    "space",
    "controller",
    "evaluator",
    "budget",
    "dataset",
    "data_dir",
    "download",
    "epochs",
    "seed",
    "threads",
    "storage",
    "study_name",
    "repeats",
    "final_top",
    "final_epochs",
    "final_repeats",
    "objective",
    "latency_target_ms",
    "latency_weight",
    "latency_metric",
    "warm_start",
    "warm_start_top",
    "warm_start_scores",
) + EXECUTION_FLAGS


def add_search_command(commands: Any) -> None:
    search = commands.add_parser("search", help="run (or resume) an architecture search")
    search.add_argument("--space", help=listed(registry.spaces, "nasnet"))
    search.add_argument("--controller", help=listed(registry.controllers, "reinforce"))
    search.add_argument("--evaluator", help=listed(registry.evaluators, "proxy"))
    search.add_argument("--budget", type=int, help="finished evaluations to reach (default 20)")
    search.add_argument("--dataset", help=listed(registry.datasets, "digits") + "; digits is bundled")
    search.add_argument("--data-dir", help="folder of the data set (cifar10, imagefolder)")
    search.add_argument(
        "--download", action="store_true", default=None, help="allow downloading CIFAR-10 into --data-dir"
    )
    search.add_argument("--epochs", type=int, help="proxy training epochs per candidate")
    search.add_argument("--out", help="run directory (journal, controller state, report)")
    search.add_argument("--seed", type=int, help="search seed (default 0)")
    search.add_argument("--threads", type=int, help="intra-op threads per evaluation (default 1)")
    search.add_argument(
        "--repeats",
        type=int,
        help="evaluations per candidate with independent seeds and "
        "validation splits; the reward is their mean (default 1)",
    )
    search.add_argument(
        "--final-top",
        type=int,
        help="after the search, evaluate the best K candidates again "
        "and choose best.json among them (default 0: no final stage)",
    )
    search.add_argument("--final-epochs", type=int, help="training epochs of the final stage (default: --epochs)")
    search.add_argument("--final-repeats", type=int, help="fresh seeds per candidate in the final stage (default 3)")
    search.add_argument(
        "--objective",
        metavar="NAME",
        help="the reward: "
        + listed(registry.objectives, "accuracy")
        + "; metric:NAME[:min|max] rewards any metric the evaluator returns, mnas the MnasNet "
        "reward accuracy * (latency / target) ** weight",
    )
    search.add_argument("--latency-target-ms", type=float, help="latency target T of the mnas objective (ms)")
    search.add_argument("--latency-weight", type=float, help="exponent w of the mnas objective (default -0.07)")
    search.add_argument(
        "--latency-metric",
        metavar="NAME",
        help="the metric mnas reads the latency from (default "
        "latency_ms: the lookup table's latency of the full-size network)",
    )
    search.add_argument(
        "--warm-start",
        type=int,
        metavar="N",
        help="score N random architectures with zero-cost proxies first and evaluate the best of them "
        "before the controller's own proposals (default 0: no warm start)",
    )
    search.add_argument(
        "--warm-start-top", type=int, metavar="K", help="how many of them are evaluated first (default budget / 10)"
    )
    search.add_argument(
        "--warm-start-scores",
        type=lambda text: [name for name in text.split(",") if name],
        metavar="A,B",
        help="zero-cost scores whose rank mean orders them (default jacov,params)",
    )
    add_execution_flags(search)
    search.add_argument("--storage", help="Optuna storage URL (default sqlite:///OUT/study.db)")
    search.add_argument("--study-name", help="study name inside --storage (default nas-search)")
    search.add_argument("--config", metavar="FILE.yaml", help="settings file; flags override it")
    search.add_argument("--no-progress", action="store_true", help="one line per trial instead of a bar")
    search.set_defaults(run=cmd_search)


def cmd_search(args: argparse.Namespace) -> None:
    settings = settings_from_args(args, SearchSettings, FLAGS)
    with (
        TrialProgress(settings.budget, False if args.no_progress else None) as progress,
        listening(progress.candidate_progress if progress.interactive else None),
    ):
        best, stats = run_search(settings, on_record=progress.update, on_final=_print_final, on_estimate=_print_line)
    out = Path(settings.out)
    if best is None:
        print(f"no successful evaluation in {out}; see {out / 'report.md'}")
        return
    startup = f", {stats.backend} start-up {stats.startup_seconds:.1f} s" if stats.backend != "local" else ""
    stopped = f"; {stats.early_stopped} stopped early" if stats.early_stopped else ""
    print(
        f"best reward {best.result.reward:.4f} (trial {best.trial_id}){stopped}; wrote {out / 'best.json'} and "
        f"{out / 'report.md'}; loop overhead {100 * stats.overhead_fraction:.2f}% of {stats.wall_seconds:.1f} s"
        f"{startup}"
    )


def _print_line(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _print_final(pair: tuple[Record, Record], replayed: bool, done: int, total: int) -> None:
    """One line per candidate of the final stage."""
    search_record, record = pair
    outcome = f"failed ({record.result.error})" if record.result.failed else f"final reward {record.result.reward:.4f}"
    print(
        f"final stage {done}/{total}: trial {search_record.trial_id} (search reward "
        f"{search_record.result.reward:.4f}): {outcome}" + (" (recorded before)" if replayed else ""),
        file=sys.stderr,
        flush=True,
    )
