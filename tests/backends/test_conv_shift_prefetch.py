"""conv_shift's prefetch stream: each weight panel it multiplies names the panel it multiplies next."""

from __future__ import annotations

import pytest
from tensorsmith.backends.numba.k_conv_shift import KC_CONV, next_weight_panel
from tensorsmith.backends.numba.k_microkernel import MR


@pytest.mark.parametrize(("taps", "npm", "ci_all", "mp_first", "mp_end"), [
    (9, 4, 2 * KC_CONV + 5, 1, 3),  # 3x3, three K blocks, the item's channel panels 1..2 of 4
    (1, 6, 64, 0, 6),  # 1x1, one K block, all panels
    (1, 2, KC_CONV, 1, 2),  # one panel: every next is the next K block's or the item's last
])
def test_each_panel_names_the_one_the_loop_multiplies_next(taps, npm, ci_all, mp_first, mp_end) -> None:
    """In conv_shift's order (tap, K block, channel panel) the named offset is the next panel's; the last names
    its own."""
    order = [(((tap * npm + mp) * ci_all + pc) * MR, tap, mp, pc)
             for tap in range(taps) for pc in range(0, ci_all, KC_CONV) for mp in range(mp_first, mp_end)]
    for here, there in zip(order, order[1:] + [order[-1]]):
        a_off, tap, mp, pc = here
        assert next_weight_panel(a_off, tap, mp, pc, mp_first, mp_end, npm, ci_all, taps) == there[0]
