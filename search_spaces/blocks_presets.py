"""The seed papers' published networks as genotypes of the ``blocks`` space (data tables).

Sources (paper-facts §6 and the reference code named there): ShuffleNet V2 widths of torchvision
``shufflenetv2.py`` (paper Table 5); ShuffleNet v1 widths of paper Table 1 (1x, groups 1-8;
megvii ``ShuffleNet-Series``); SE-ResNet-50 / SE-ResNeXt-50 (32x4d) as timm ``resnet.py``
(``Bottleneck`` with ``attn_layer='se'``); DPN-68/92 as timm ``dpn.py`` (k_r, groups, k_sec,
inc_sec); CondenseNet-74 (C = G = 4) as ShichenLiu/CondenseNet (stages 4-6-8-10-8, growth
8-16-32-64-128, a bare 3x3/2 stem of 2 x 8 channels, 2x2 average-pool transitions).
"""

from __future__ import annotations

from search_spaces.blocks_genotype import (
    BlocksGenotype,
    BottleneckStage,
    DenseStage,
    DualPathStage,
    ShuffleNetV1Stage,
    ShuffleNetV2Stage,
)

SHUFFLENET_V2_WIDTHS = {  # stage 2-4 outputs, conv5
    "x0.5": ((48, 96, 192), 1024),
    "x1.0": ((116, 232, 464), 1024),
    "x1.5": ((176, 352, 704), 1024),
    "x2.0": ((244, 488, 976), 2048),
}
SHUFFLENET_V1_WIDTHS = {
    1: (144, 288, 576),
    2: (200, 400, 800),
    3: (240, 480, 960),
    4: (272, 544, 1088),
    8: (384, 768, 1536),
}
STAGE_DEPTHS = (4, 8, 4)  # ShuffleNet v1 and v2


def shufflenet_v2(size: str) -> BlocksGenotype:
    widths, head = SHUFFLENET_V2_WIDTHS[size]
    return BlocksGenotype(
        tuple(ShuffleNetV2Stage(w, d) for w, d in zip(widths, STAGE_DEPTHS)), stem_channels=24, head_channels=head
    )


def shufflenet_v1(groups: int) -> BlocksGenotype:
    return BlocksGenotype(
        tuple(ShuffleNetV1Stage(w, d, groups) for w, d in zip(SHUFFLENET_V1_WIDTHS[groups], STAGE_DEPTHS)),
        stem_channels=24,
    )


def se_resnet50(groups: int, width_per_group: int) -> BlocksGenotype:
    """ResNet-50's stages (3, 4, 6, 3) with SE; bottleneck width ``planes * width_per_group / 64 * groups``."""
    stages = tuple(
        BottleneckStage(planes * 4, depth, planes * width_per_group // 64 * groups, groups, True, 1 if i == 0 else 2)
        for i, (planes, depth) in enumerate(zip((64, 128, 256, 512), (3, 4, 6, 3)))
    )
    return BlocksGenotype(stages, stem_channels=64, stem_kernel=7)


def dpn(
    small: bool, init: int, k_r: int, groups: int, depths: tuple[int, ...], increments: tuple[int, ...]
) -> BlocksGenotype:
    """timm ``DPN``: residual width 64, 128, 256, 512 (x4 unless ``small``), bottleneck ``k_r * base / 64``.
    The closing BN is followed by ReLU: timm declares ``fc_act_layer='elu'`` but builds its layer from a
    norm layer already bound to ReLU, and it is timm's outputs we match."""
    stages = tuple(
        DualPathStage(base * (1 if small else 4), inc, depth, k_r * base // 64, groups, 1 if i == 0 else 2)
        for i, (base, depth, inc) in enumerate(zip((64, 128, 256, 512), depths, increments))
    )
    return BlocksGenotype(stages, stem_channels=init, stem_kernel=3 if small else 7, head_norm="relu", bn_eps=1e-3)


def condensenet(
    depths: tuple[int, ...],
    growths: tuple[int, ...],
    groups: int,
    condense_factor: int,
    condensed: bool = False,
    classifier_keep: float = 1.0,
) -> BlocksGenotype:
    stages = tuple(
        DenseStage(growth, depth, groups, condense_factor, 4, 1 if i == 0 else 2)
        for i, (depth, growth) in enumerate(zip(depths, growths))
    )
    return BlocksGenotype(
        stages,
        stem_channels=2 * growths[0],
        stem_pool=False,
        stem_norm=False,
        head_norm="relu",
        condensed=condensed,
        classifier_keep=classifier_keep,
    )


PRESETS: dict[str, BlocksGenotype] = {
    **{f"shufflenet-v2-{size}": shufflenet_v2(size) for size in SHUFFLENET_V2_WIDTHS},
    **{f"shufflenet-v1-g{groups}-x1.0": shufflenet_v1(groups) for groups in SHUFFLENET_V1_WIDTHS},
    "seresnet50": se_resnet50(1, 64),
    "seresnext50-32x4d": se_resnet50(32, 4),
    "dpn68": dpn(True, 10, 128, 32, (3, 4, 12, 3), (16, 32, 32, 64)),
    "dpn92": dpn(False, 64, 96, 32, (3, 4, 20, 3), (16, 32, 24, 128)),
    "condensenet-74": condensenet((4, 6, 8, 10, 8), (8, 16, 32, 64, 128), 4, 4),
    # The deployment form, as the reference converts it (4,773,944 parameters): load the state dict of
    # ``nas.condense(model, classifier_keep=0.5)``.
    "condensenet-74-condensed": condensenet(
        (4, 6, 8, 10, 8), (8, 16, 32, 64, 128), 4, 4, condensed=True, classifier_keep=0.5
    ),
}
