"""Pictures of architectures (dispatched on the IR type) and of a search's history.

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

from nas.files import atomic_write_bytes
from nas.ir import CellNet, CellTopology, ChainNet

_COLORS = {"input": "#9ecae1", "block": "#fdd0a2", "output": "#a1d99b"}


def cell_graph(topology: CellTopology) -> nx.DiGraph:
    """The cell as a DiGraph: nodes h_i, h_{i-1}, b0..b4, out; edges carry the op name."""
    names = ["h_i", "h_{i-1}"] + [f"b{k}" for k in range(len(topology.blocks))]
    graph = nx.DiGraph()
    graph.add_nodes_from(names[:2], kind="input")
    for k, block in enumerate(topology.blocks):
        graph.add_node(names[k + 2], kind="block", combine=block.combine)
        for source, op in ((block.input_a, block.op_a), (block.input_b, block.op_b)):
            if graph.has_edge(names[source], names[k + 2]):  # both inputs from one state
                graph.edges[names[source], names[k + 2]]["op"] += f" + {op}"
            else:
                graph.add_edge(names[source], names[k + 2], op=op)
    graph.add_node("out", kind="output")
    for index in topology.concat:
        graph.add_edge(names[index], "out", op="concat")
    return graph


def cell_types(ir: CellNet) -> list[tuple[str, CellTopology]]:
    """The distinct kinds of cell in a network, normal first: ``[("normal", topology), ("reduction", ...)]``."""
    found: dict[str, CellTopology] = {}
    for cell in ir.cells:
        found.setdefault("reduction" if cell.reduction else "normal", cell.topology)
    return sorted(found.items(), key=lambda item: item[0] != "normal")


def plot_architecture(ir: ChainNet | CellNet, path: str | Path, title: str = "") -> None:
    """One PNG of any IR: the cells side by side for a ``CellNet``, the block widths for a ``ChainNet``."""
    if isinstance(ir, ChainNet):
        plot_chain(ir, path, title)
    elif isinstance(ir, CellNet):
        plot_cells([(f"{kind} cell", topology) for kind, topology in cell_types(ir)], path)
    else:
        raise TypeError(f"plot_architecture() takes a ChainNet or CellNet, got {type(ir).__name__}")


def _save(figure: Figure, path: str | Path) -> None:
    """Render to memory, then write atomically: a failed write leaves no partial PNG."""
    buffer = io.BytesIO()
    figure.savefig(buffer, dpi=120, format="png")
    atomic_write_bytes(path, buffer.getvalue())


def _layers(graph: nx.DiGraph) -> None:
    for node in nx.topological_sort(graph):
        preds = list(graph.predecessors(node))
        graph.nodes[node]["layer"] = 0 if not preds else 1 + max(graph.nodes[p]["layer"] for p in preds)


def draw_cell(topology: CellTopology, axis: Any, title: str) -> None:
    """Draw one cell on ``axis``: states left to right by depth, ops on the edges."""
    graph = cell_graph(topology)
    _layers(graph)
    position = nx.multipartite_layout(graph, subset_key="layer")
    colors = [_COLORS[graph.nodes[n]["kind"]] for n in graph.nodes]
    labels = {n: f"{n}\n({graph.nodes[n]['combine']})" if graph.nodes[n]["kind"] == "block" else n
              for n in graph.nodes}
    nx.draw_networkx_nodes(graph, position, ax=axis, node_color=colors, node_size=1400, edgecolors="#444444")
    nx.draw_networkx_labels(graph, position, labels=labels, ax=axis, font_size=7)
    op_edges = [(u, v) for u, v, d in graph.edges(data=True) if d["op"] != "concat"]
    concat_edges = [(u, v) for u, v, d in graph.edges(data=True) if d["op"] == "concat"]
    nx.draw_networkx_edges(graph, position, edgelist=op_edges, ax=axis, arrows=True, arrowsize=12,
                           node_size=1400, connectionstyle="arc3,rad=0.08")
    # Concatenation into the output is dashed and curved, so a skipped-over state stays visible.
    nx.draw_networkx_edges(graph, position, edgelist=concat_edges, ax=axis, arrows=True, arrowsize=10,
                           node_size=1400, style="dashed", edge_color="#2ca25f", connectionstyle="arc3,rad=0.25")
    edge_labels = {(u, v): d["op"] for u, v, d in graph.edges(data=True) if d["op"] != "concat"}
    nx.draw_networkx_edge_labels(graph, position, edge_labels=edge_labels, ax=axis, font_size=6,
                                 label_pos=0.6, bbox={"alpha": 0.7, "color": "white"})
    axis.set_title(title)
    axis.axis("off")


def plot_cells(cells: Sequence[tuple[str, CellTopology]], path: str | Path) -> None:
    """One PNG with every ``(title, topology)`` side by side."""
    figure = Figure(figsize=(8 * len(cells), 6))
    axes = figure.subplots(1, len(cells), squeeze=False)
    for axis, (title, topology) in zip(axes[0], cells):
        draw_cell(topology, axis, title)
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


def plot_history(rewards: Sequence[float | None], path: str | Path, title: str = "search") -> None:
    """Reward per trial (failed trials marked) and the best reward so far."""
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
    axis.plot(range(len(best)), [b if b is not None else float("nan") for b in best], color="#e6550d",
              label="best so far")
    if failed:
        low = min((r for _, r in done), default=0.0)
        axis.scatter(failed, [low] * len(failed), marker="x", color="#999999", label="failed")
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
        cost.plot(phis, [base * 2.0 ** phi / 1e6 for phi in phis], "--", color="#e6550d", label="base x 2^phi")
        cost.set_yscale("log")
        cost.legend(loc="upper left")
    cost.set_xlabel("phi")
    cost.set_ylabel("MACs (millions)")
    cost.set_title("family: cost against phi")
    done = [p for p in family["points"] if p["accuracy"] is not None]
    if done:
        dots = grid.scatter([p["alpha"] for p in done], [p["gamma"] for p in done], c=[p["accuracy"] for p in done],
                            cmap="viridis", s=60)
        figure.colorbar(dots, ax=grid, label="proxy accuracy")
        for point in done:
            grid.annotate(f"b{point['beta']:g}", (point["alpha"], point["gamma"]), fontsize=6,
                          xytext=(3, 3), textcoords="offset points")
    failed = [p for p in family["points"] if p["accuracy"] is None and p["alpha"] is not None]
    if failed:
        grid.scatter([p["alpha"] for p in failed], [p["gamma"] for p in failed], marker="x", color="#999999",
                     label="failed")
        grid.legend(loc="upper right")
    if family["alpha"] is not None:
        grid.scatter([family["alpha"]], [family["gamma"]], s=220, facecolors="none", edgecolors="#e6550d")
    grid.set_xlabel("alpha (depth)")
    grid.set_ylabel("gamma (resolution)")
    grid.set_title("grid at phi = 1 (b = beta, width)")
    figure.tight_layout()
    _save(figure, path)


def plot_pareto(points: Sequence[tuple[float, float]], front: Sequence[tuple[float, float]], path: str | Path,
                target_ms: float | None = None, title: str = "accuracy against latency") -> None:
    """Every candidate as (latency ms, accuracy), the Pareto front joined and ringed, the target as a line."""
    figure = Figure(figsize=(7, 4.5))
    axis = figure.subplots()
    if points:
        axis.scatter([p[0] for p in points], [p[1] for p in points], s=16, color="#9ecae1", label="candidate")
    if front:
        ordered = sorted(front)
        axis.step([p[0] for p in ordered], [p[1] for p in ordered], where="post", color="#e6550d", linewidth=1)
        axis.scatter([p[0] for p in ordered], [p[1] for p in ordered], s=50, facecolors="none", edgecolors="#e6550d",
                     label="Pareto front")
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
        axis.scatter([p["predicted_ms"] for p in proposals], [p["accuracy"] for p in proposals], s=10,
                     color="#c6dbef", label="proposal (short fine-tune)")
    start = document["start"]
    path_points = [(start["latency_ms"], start["accuracy"])] + [
        (it["chosen"]["predicted_ms"], it["chosen"]["accuracy"]) for it in document["iterations"] if it["chosen"]]
    path_points = [(x, y) for x, y in path_points if x is not None and y is not None]
    if path_points:
        axis.plot([p[0] for p in path_points], [p[1] for p in path_points], "o-", color="#3182bd",
                  label="chosen per iteration")
    final = document["final"]
    axis.scatter([final["predicted_ms"]], [final["accuracy"]], marker="*", s=160, color="#e6550d",
                 label=f"final after {final['long_term_steps']} steps")
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
        axis.plot(epochs, [row[f"validation_{key}"] for row in history], marker=".", color="#e6550d",
                  label="validation")
        axis.set_xlabel("epoch")
        axis.set_ylabel(label)
        axis.legend()
    loss.set_title(title)
    accuracy.set_title("training accuracy: augmented images, train mode")
    figure.tight_layout()
    _save(figure, path)
