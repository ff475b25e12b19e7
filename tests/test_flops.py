"""Model FLOPs per token (speedlab.train.flops.flops_per_token, which the trainer reports)
against torch's own FlopCounterMode.

The formula is 6 x parameters (forward and backward of every matmul, the tied head included)
plus 12 x layers x d_model x seq_len for attention (QK^T and AV, forward and backward, over the
full T x T score matrix). FlopCounterMode counts the matmuls torch runs; SDPA is run with its
math backend so that the attention bmms are counted too (the CPU's fused kernel is not). Terms
that differ: the formula also counts 6 FLOPs for each non-matmul parameter (norm gains, q_gain,
skip weights), which are elementwise; a causal flash kernel skips about half of the attention
FLOPs the formula (and the math backend) count. Measured 2026-12-02: ratio 1.0027 on the
quickstart model (4x128, seq 256), 1.0038 at smoke scale (2x64, seq 128).
"""

import pytest
import torch
import yaml
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from conftest import REPO
from speedlab.config import run_config, validate
from speedlab.train.loop import flops_per_token
from speedlab.train.models import build_model


@pytest.mark.parametrize("scale", [None, "smoke"])
def test_flops_per_token_matches_torch_s_flop_counter(scale):
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["scale"] = scale
    cfg = run_config(validate(config), "quickstart", "uniform")
    model = build_model(cfg["model"], 1024)
    batch, seq = 2, cfg["train"]["seq_len"]
    idx, targets = torch.randint(0, 1024, (2, batch, seq))
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        model(idx, targets).backward()
    measured = counter.get_total_flops() / (batch * seq)
    formula = flops_per_token(sum(p.numel() for p in model.parameters()), cfg["model"], seq)
    print(f"scale {scale}: formula / FlopCounterMode = {formula / measured:.4f}")
    assert formula / measured == pytest.approx(1.0, abs=0.05)
    attention = 12 * cfg["model"]["n_layer"] * cfg["model"]["d_model"] * seq
    matmuls = counter.get_flop_counts()["Global"]
    assert sum(v for k, v in matmuls.items() if "bmm" in str(k)) == attention * batch * seq
    assert formula >= measured  # the extra: 6 x the elementwise parameters
