"""Pictures of architectures (dispatched on the IR's ``kind``) and of a search's history.

Figures are built with matplotlib's object API (``matplotlib.figure.Figure``), which renders to
files without pyplot, so importing this module selects no backend and touches no global state.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import networkx as nx
from matplotlib.figure import Figure

from nas.cell_ir import CellGraph, CellNet, Network
from nas.files import atomic_write_bytes
from nas.ir import ChainNet, IRKind

_COLORS = {"input": "#9ecae1", "block": "#fdd0a2", "output": "#a1d99b"}


def state_names(graph: CellGraph) -> list[str]:
    """Input k is h_{i-k} (NASNet's h_i, h_{i-1}: the previous cell's output, the one before), node k is bk."""
    inputs = ["h_i"] + [f"h_{{i-{k}}}" for k in range(1, graph.num_inputs)]
    return inputs + [f"b{k}" for k in range(len(graph.nodes))]


def cell_graph(graph: CellGraph) -> nx.DiGraph:
    """The cell as a DiGraph: inputs, nodes and "out"; an edge carries its op name (several edges between the
    same two states are joined with " + "), an edge into "out" the output's combine ("concat" or "add")."""
    names = state_names(graph)
    result = nx.DiGraph()
    result.add_nodes_from(names[: graph.num_inputs], kind="input")
    for k, node in enumerate(graph.nodes):
        name = names[graph.num_inputs + k]
        result.add_node(name, kind="block", combine=node.combine)
        for edge in node.inputs:
            if result.has_edge(names[edge.source], name):  # several edges from one state
                result.edges[names[edge.source], name]["op"] += f" + {edge.op}"
            else:
                result.add_edge(names[edge.source], name, op=edge.op, output=False)
    result.add_node("out", kind="output")
    for index in graph.output:
        result.add_edge(names[index], "out", op=graph.output_combine, output=True)
    return result


def cell_types(ir: CellNet) -> list[tuple[str, CellGraph]]:
    """The distinct cells of a network, normal first: ``[("normal", graph), ("reduction", graph)]``; a kind
    with several distinct graphs numbers them ("normal 2", ...)."""
    found: dict[str, list[CellGraph]] = {}
    for cell in ir.cells:
        graphs = found.setdefault("reduction" if cell.reduction else "normal", [])
        if cell.graph not in graphs:
            graphs.append(cell.graph)
    return [
        (kind if j == 0 else f"{kind} {j + 1}", graph)
        for kind in sorted(found, key=lambda kind: kind != "normal")
        for j, graph in enumerate(found[kind])
    ]


def _plot_cell_net(ir: CellNet, path: str | Path, title: str = "") -> None:
    plot_cells([(f"{kind} cell", graph) for kind, graph in cell_types(ir)], path)


def _cell_pictures(ir: CellNet, directory: Path, title: str) -> list[Path]:
    paths = []
    for kind, graph in cell_types(ir):
        paths.append(directory / f"{kind.replace(' ', '-')}.png")
        plot_cells([(f"{kind} cell", graph)], paths[-1])
    return paths


def _chain_pictures(ir: ChainNet, directory: Path, title: str) -> list[Path]:
    plot_chain(ir, directory / "architecture.png", title)
    return [directory / "architecture.png"]


def plot_architecture(ir: Network, path: str | Path, title: str = "") -> None:
    """One PNG of any IR: the cells side by side for a ``CellNet``, the block widths for a ``ChainNet``."""
    _picture_functions(ir)[0](ir, path, title)


def architecture_pictures(ir: Network, directory: str | Path, title: str = "") -> list[Path]:
    """The pictures of a search's best architecture in ``directory``: one PNG per distinct cell of a ``CellNet``
    (``normal.png``, ``reduction.png``), ``architecture.png`` for a ``ChainNet``; returns their paths."""
    return _picture_functions(ir)[1](ir, Path(directory), title)


def _picture_functions(ir: Network) -> tuple[Any, Any]:
    functions = _PICTURES.get(getattr(ir, "kind", None))  # type: ignore[arg-type]
    if functions is None:
        raise TypeError(
            f"plot_architecture() takes an IR of kind {sorted(_PICTURES)} (ChainNet, CellNet), got {type(ir).__name__}"
        )
    return functions


def _save(figure: Figure, path: str | Path) -> None:
    """Render to memory, then write atomically: a failed write leaves no partial PNG."""
    buffer = io.BytesIO()
    figure.savefig(buffer, dpi=120, format="png")
    atomic_write_bytes(path, buffer.getvalue())


def _layers(graph: nx.DiGraph) -> None:
    for node in nx.topological_sort(graph):
        preds = list(graph.predecessors(node))
        graph.nodes[node]["layer"] = 0 if not preds else 1 + max(graph.nodes[p]["layer"] for p in preds)


def draw_cell(cell: CellGraph, axis: Any, title: str) -> None:
    """Draw one cell on ``axis``: states left to right by depth, ops on the edges."""
    graph = cell_graph(cell)
    _layers(graph)
    position = nx.multipartite_layout(graph, subset_key="layer")
    colors = [_COLORS[graph.nodes[n]["kind"]] for n in graph.nodes]
    labels = {n: f"{n}\n({graph.nodes[n]['combine']})" if graph.nodes[n]["kind"] == "block" else n for n in graph.nodes}
    nx.draw_networkx_nodes(graph, position, ax=axis, node_color=colors, node_size=1400, edgecolors="#444444")
    nx.draw_networkx_labels(graph, position, labels=labels, ax=axis, font_size=7)
    op_edges = [(u, v) for u, v, d in graph.edges(data=True) if not d["output"]]
    concat_edges = [(u, v) for u, v, d in graph.edges(data=True) if d["output"]]
    nx.draw_networkx_edges(
        graph,
        position,
        edgelist=op_edges,
        ax=axis,
        arrows=True,
        arrowsize=12,
        node_size=1400,
        connectionstyle="arc3,rad=0.08",
    )
    # Edges into the output are dashed and curved, so a skipped-over state stays visible.
    nx.draw_networkx_edges(
        graph,
        position,
        edgelist=concat_edges,
        ax=axis,
        arrows=True,
        arrowsize=10,
        node_size=1400,
        style="dashed",
        edge_color="#2ca25f",
        connectionstyle="arc3,rad=0.25",
    )
    edge_labels = {(u, v): d["op"] for u, v, d in graph.edges(data=True) if not d["output"]}
    nx.draw_networkx_edge_labels(
        graph,
        position,
        edge_labels=edge_labels,
        ax=axis,
        font_size=6,
        label_pos=0.6,
        bbox={"alpha": 0.7, "color": "white"},
    )
    axis.set_title(title)
    axis.axis("off")


def plot_cells(cells: Sequence[tuple[str, CellGraph]], path: str | Path) -> None:
    """One PNG with every ``(title, graph)`` side by side."""
    figure = Figure(figsize=(8 * len(cells), 6))
    axes = figure.subplots(1, len(cells), squeeze=False)
    for axis, (title, graph) in zip(axes[0], cells):
        draw_cell(graph, axis, title)
    figure.tight_layout()
    _save(figure, path)


def plot_chain(ir: ChainNet, path: str | Path, title: str = "") -> None:
    """Bar chart of every block's output width (and expansion width, where the op has one);
    stride-2 blocks are marked."""
    blocks = [block for _, block in ir.named_blocks()]
    figure = Figure(figsize=(max(6, 0.45 * len(blocks)), 4))
    axis = figure.subplots()
    index = range(len(blocks))
    expansion = [b.option("expand_channels") or b.in_channels for b in blocks]
    axis.bar(index, expansion, color="#fdd0a2", label="expansion / input")
    axis.bar(index, [b.out_channels for b in blocks], color="#6baed6", label="output")
    for i, block in enumerate(blocks):
        if block.stride == 2:
            axis.annotate("s2", (i, block.out_channels), ha="center", va="bottom", fontsize=7)
    axis.set_xlabel("block")
    axis.set_ylabel("channels")
    axis.set_title(title or f"{len(blocks)} blocks at {ir.resolution} px")
    axis.legend()
    figure.tight_layout()
    _save(figure, path)


# How each kind of IR (``ir.kind``) is pictured: (one PNG of the network, a search's pictures of its best).
_PICTURES: dict[IRKind, tuple[Any, Any]] = {
    "chain": (plot_chain, _chain_pictures),
    "cell": (_plot_cell_net, _cell_pictures),
}


def plot_history(
    rewards: Sequence[float | None], path: str | Path, title: str = "search", optimum: float | None = None
) -> None:
    """Reward per trial (failed trials marked), the best reward so far and, where a benchmark table
    knows it, the best reward any candidate gets (the gap to it is the regret)."""
    figure = Figure(figsize=(7, 4))
    axis = figure.subplots()
    best, running = [], float("-inf")
    for reward in rewards:
        running = max(running, reward) if reward is not None else running
        best.append(running if running != float("-inf") else None)
    done = [(i, r) for i, r in enumerate(rewards) if r is not None]
    failed = [i for i, r in enumerate(rewards) if r is None]
    if done:
        axis.scatter([i for i, _ in done], [r for _, r in done], s=14, color="#3182bd", label="trial reward")
    axis.plot(
        range(len(best)), [b if b is not None else float("nan") for b in best], color="#e6550d", label="best so far"
    )
    if failed:
        low = min((r for _, r in done), default=0.0)
        axis.scatter(failed, [low] * len(failed), marker="x", color="#999999", label="failed")
    if optimum is not None:
        axis.axhline(optimum, color="#31a354", linestyle="--", label=f"known optimum {optimum:.4f}")
        axis.set_ylim(top=optimum + 0.05 * (optimum - min((r for _, r in done), default=optimum - 1)))
    axis.set_xlabel("trial")
    axis.set_ylabel("reward")
    axis.set_title(title)
    axis.legend(loc="lower right")
    figure.tight_layout()
    _save(figure, path)


def plot_family(family: dict[str, Any], path: str | Path) -> None:
    """A ``nas scale`` run (``nas.scale.family``): the family's measured MACs against phi with the
    base x 2^phi line, and the proxy accuracy of every grid point evaluated (depth alpha against
    resolution gamma, width beta written beside each point, the best one ringed)."""
    figure = Figure(figsize=(11, 4.5))
    cost, grid = figure.subplots(1, 2)
    built = [model for model in family["models"] if "macs" in model]
    if built:
        base = next((m["macs"] for m in built if m["phi"] == 0), built[0]["macs"] / built[0]["2**phi"])
        phis = [model["phi"] for model in built]
        cost.plot(phis, [model["macs"] / 1e6 for model in built], "o-", color="#3182bd", label="measured (rounded)")
        cost.plot(phis, [base * 2.0**phi / 1e6 for phi in phis], "--", color="#e6550d", label="base x 2^phi")
        cost.set_yscale("log")
        cost.legend(loc="upper left")
    cost.set_xlabel("phi")
    cost.set_ylabel("MACs (millions)")
    cost.set_title("family: cost against phi")
    done = [p for p in family["points"] if p["accuracy"] is not None]
    if done:
        dots = grid.scatter(
            [p["alpha"] for p in done],
            [p["gamma"] for p in done],
            c=[p["accuracy"] for p in done],
            cmap="viridis",
            s=60,
        )
        figure.colorbar(dots, ax=grid, label="proxy accuracy")
        for point in done:
            grid.annotate(
                f"b{point['beta']:g}",
                (point["alpha"], point["gamma"]),
                fontsize=6,
                xytext=(3, 3),
                textcoords="offset points",
            )
    failed = [p for p in family["points"] if p["accuracy"] is None and p["alpha"] is not None]
    if failed:
        grid.scatter(
            [p["alpha"] for p in failed], [p["gamma"] for p in failed], marker="x", color="#999999", label="failed"
        )
        grid.legend(loc="upper right")
    if family["alpha"] is not None:
        grid.scatter([family["alpha"]], [family["gamma"]], s=220, facecolors="none", edgecolors="#e6550d")
    grid.set_xlabel("alpha (depth)")
    grid.set_ylabel("gamma (resolution)")
    grid.set_title("grid at phi = 1 (b = beta, width)")
    figure.tight_layout()
    _save(figure, path)


def plot_pareto(
    points: Sequence[tuple[float, float]],
    front: Sequence[tuple[float, float]],
    path: str | Path,
    target_ms: float | None = None,
    title: str = "accuracy against latency",
) -> None:
    """Every candidate as (latency ms, accuracy), the Pareto front joined and ringed, the target as a line."""
    figure = Figure(figsize=(7, 4.5))
    axis = figure.subplots()
    if points:
        axis.scatter([p[0] for p in points], [p[1] for p in points], s=16, color="#9ecae1", label="candidate")
    if front:
        ordered = sorted(front)
        axis.step([p[0] for p in ordered], [p[1] for p in ordered], where="post", color="#e6550d", linewidth=1)
        axis.scatter(
            [p[0] for p in ordered],
            [p[1] for p in ordered],
            s=50,
            facecolors="none",
            edgecolors="#e6550d",
            label="Pareto front",
        )
    if target_ms is not None:
        axis.axvline(target_ms, linestyle="--", color="#636363", label=f"target {target_ms:g} ms")
    axis.set_xlabel("latency (ms, lookup table, full-size network)")
    axis.set_ylabel("proxy accuracy")
    axis.set_title(title)
    axis.legend(loc="lower right")
    figure.tight_layout()
    _save(figure, path)


def plot_netadapt(document: dict[str, Any], path: str | Path) -> None:
    """A NetAdapt run (``nas.netadapt.outputs``): every proposal and the chosen trajectory as accuracy
    against predicted latency, from the start to the final network after its long-term fine-tune."""
    figure = Figure(figsize=(7, 4.5))
    axis = figure.subplots()
    proposals = [p for it in document["iterations"] for p in it["proposals"] if p["accuracy"] is not None]
    if proposals:
        axis.scatter(
            [p["predicted_ms"] for p in proposals],
            [p["accuracy"] for p in proposals],
            s=10,
            color="#c6dbef",
            label="proposal (short fine-tune)",
        )
    start = document["start"]
    path_points = [(start["latency_ms"], start["accuracy"])] + [
        (it["chosen"]["predicted_ms"], it["chosen"]["accuracy"]) for it in document["iterations"] if it["chosen"]
    ]
    path_points = [(x, y) for x, y in path_points if x is not None and y is not None]
    if path_points:
        axis.plot(
            [p[0] for p in path_points],
            [p[1] for p in path_points],
            "o-",
            color="#3182bd",
            label="chosen per iteration",
        )
    final = document["final"]
    axis.scatter(
        [final["predicted_ms"]],
        [final["accuracy"]],
        marker="*",
        s=160,
        color="#e6550d",
        label=f"final after {final['long_term_steps']} steps",
    )
    axis.axvline(document["target_ms"], linestyle="--", color="#636363", label=f"target {document['target_ms']:.2f} ms")
    axis.set_xlabel(f"latency (ms, lookup table, {document['resolution']} px)")
    axis.set_ylabel("validation accuracy")
    axis.set_title(f"NetAdapt: {len(document['iterations'])} iterations, {document['status']}")
    axis.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    _save(figure, path)


def plot_training(history: Sequence[dict[str, Any]], path: str | Path, title: str = "training") -> None:
    """``nas train``: loss and accuracy per epoch, training (augmented, regularised) and validation."""
    figure = Figure(figsize=(10, 4))
    loss, accuracy = figure.subplots(1, 2)
    epochs = [row["epoch"] for row in history]
    for axis, key, label in ((loss, "loss", "loss"), (accuracy, "accuracy", "accuracy")):
        axis.plot(epochs, [row[f"train_{key}"] for row in history], marker=".", color="#3182bd", label="training")
        axis.plot(
            epochs, [row[f"validation_{key}"] for row in history], marker=".", color="#e6550d", label="validation"
        )
        axis.set_xlabel("epoch")
        axis.set_ylabel(label)
        axis.legend()
    loss.set_title(title)
    accuracy.set_title("training accuracy: augmented images, train mode")
    figure.tight_layout()
    _save(figure, path)
