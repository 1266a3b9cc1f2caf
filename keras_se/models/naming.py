"""The layer names of the residual units: keras.applications' scheme, built and parsed here.

Every layer of a residual unit is named from the unit's prefix ``conv{stage}_block{index}``
(``conv3_block2_1_conv``, ``conv3_block2_se``, ``conv3_block2_out``), as in
keras.applications' ResNets, so ``model.get_layer(...)`` works, weights transfer by name
and the analysis (`keras_se.analysis`) can tell the paper's ``SE_3_2`` from a layer name.
Stages are numbered as in the paper's Table 1: the stem is ``conv1``, the first stage of
residual units ``conv2``; units are numbered from 1 within their stage.
"""

from __future__ import annotations

import re
from typing import NamedTuple

#: The number of the first stage of residual units (the stem is ``conv1``).
FIRST_STAGE = 2
#: A unit's prefix at the start of a layer name, followed by ``_`` or the end of the name.
_UNIT_PREFIX = re.compile(r"^conv(?P<stage>\d+)_block(?P<index>\d+)(?=_|$)")


class UnitName(NamedTuple):
    """The place of a residual unit named ``conv{stage}_block{index}`` (paper numbering).

    Example:
        >>> UnitName(stage=3, index=2).prefix
        'conv3_block2'
    """

    stage: int
    index: int

    @property
    def prefix(self):
        """The unit's name prefix, ``conv{stage}_block{index}``."""
        return f"conv{self.stage}_block{self.index}"


def unit_name(stage_index, unit_index):
    """The name prefix of a residual unit from its 0-based positions, as the builders loop.

    Args:
        stage_index: position of the stage in ``stackwise_num_blocks``, from 0.
        unit_index: position of the unit within its stage, from 0.

    Returns:
        ``conv{stage_index + 2}_block{unit_index + 1}``: the stem is ``conv1``.

    Example:
        >>> unit_name(0, 0), unit_name(1, 3)
        ('conv2_block1', 'conv3_block4')
        >>> parse_unit_name(unit_name(1, 3) + "_se")
        UnitName(stage=3, index=4)
    """
    for arg, value in (("stage_index", stage_index), ("unit_index", unit_index)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"`{arg}` must be an integer >= 0. Received: {arg}={value!r}")
    return UnitName(stage_index + FIRST_STAGE, unit_index + 1).prefix


def parse_unit_name(name):
    """The `UnitName` of the residual unit a layer belongs to, or None for other names.

    Reads the prefix `unit_name` builds (also keras.applications' ResNet names, and the SE
    layers `keras_se.add_squeeze_excite` inserts after them, ``conv2_block1_out_se``).

    Args:
        name: a layer name.

    Returns:
        ``UnitName(stage, index)``, the paper's numbers, or None.

    Example:
        >>> parse_unit_name("conv3_block4_se"), parse_unit_name("conv2_block1_out_se")
        (UnitName(stage=3, index=4), UnitName(stage=2, index=1))
        >>> parse_unit_name("conv1_conv") is None, parse_unit_name("se_3") is None
        (True, True)
    """
    match = _UNIT_PREFIX.match(name)
    if match is None:
        return None
    return UnitName(int(match.group("stage")), int(match.group("index")))
