"""One model, optional head: `analytic_flops(cfg, size, head=...)` and `analytic_params(cfg,
head=...)` against fvcore's own total of the built model and its parameter count, for the
classifier (head None) and the Semantic FPN given as a name, a dict or a HeadConfig."""
from __future__ import annotations

import warnings

import pytest
import torch

from twins_nas import build_model, get_preset
from twins_nas.models import HeadConfig, TwinsSegmentation
from twins_nas.profile import analytic_flops, analytic_params, count_flops
from twins_nas.profile.flops import SDPA, sdpa_flop_jit

pytestmark = pytest.mark.usefixtures("single_thread")


def fvcore_total(model: torch.nn.Module, size: tuple[int, int]) -> int:
    """fvcore's total of one eval forward, with the one handle fvcore 0.1.5 lacks (SDPA)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fvcore.nn import FlopCountAnalysis  # heavy import: see README
    model.eval()
    with torch.no_grad():
        fca = FlopCountAnalysis(model, torch.zeros(1, model.cfg.in_chans, *size)).set_op_handle(SDPA, sdpa_flop_jit)
        fca.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
        return int(fca.total())


@pytest.mark.parametrize("name", ["twins-pcpvt-s", "twins-svt-s"])
@pytest.mark.parametrize("size", [(96, 160), (131, 97)])
def test_dense_flops_are_fvcores_total(name, size):
    cfg = get_preset(name)
    head = HeadConfig(num_classes=19)
    model = build_model(cfg, head=head)
    assert isinstance(model, TwinsSegmentation)
    rep = analytic_flops(cfg, size, head=head)
    assert rep.total == fvcore_total(model, size)
    assert set(rep.parts) == {"backbone", "neck", "head"} and sum(rep.part_totals.values()) == rep.total
    assert rep.by_category == rep.parts["backbone"] and rep.by_category["head"] == 0  # no classifier
    assert analytic_flops(cfg, size, head="semantic-fpn").total > rep.total  # 150 classes, not 19


@pytest.mark.parametrize("name", ["twins-pcpvt-s", "twins-svt-s"])
def test_classifier_flops_are_fvcores_total(name):
    cfg, size = get_preset(name), (96, 160)
    rep = analytic_flops(cfg, size)
    assert rep.total == fvcore_total(build_model(cfg), size)
    assert rep.parts == {} and sum(rep.by_category.values()) == rep.total and rep.by_category["head"] > 0


@pytest.mark.parametrize("name", ["twins-pcpvt-s", "twins-svt-s", "twins-svt-b"])
@pytest.mark.parametrize("head", [None, "semantic-fpn", {"type": "semantic-fpn", "num_classes": 21, "channels": 64}])
def test_params_are_the_built_models(name, head):
    with torch.device("meta"):
        model = build_model(name, head=head)
    assert analytic_params(get_preset(name), head=head) == sum(p.numel() for p in model.parameters())


def test_count_flops_takes_the_head_and_checks_a_built_model():
    cfg, head = get_preset("twins-svt-s"), HeadConfig(num_classes=5, neck_channels=32, channels=16)
    cfg = cfg.replace(stages=[dict(s.model_dump(mode="json"), depth=1) for s in cfg.stages])
    traced = count_flops(cfg, (64, 96), head=head)
    assert traced == analytic_flops(cfg, (64, 96), head=head)
    model = build_model(cfg, head=head)
    assert count_flops(model, (64, 96)) == traced
    with pytest.raises(ValueError, match="not the model's"):
        count_flops(model, (64, 96), head="semantic-fpn")
    with pytest.raises(ValueError, match="not the model's"):
        count_flops(build_model(cfg), (64, 96), head=head)
