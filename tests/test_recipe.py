"""Training recipe components: the learning-rate schedule, the weight average (EMA) and the
loss weights, each doing what it claims.
"""

from __future__ import annotations

import io

import pytest
import torch

from faceswap.model.ema import WeightAverage
from faceswap.model.losses import pixel_weights
from faceswap.model.schedule import FLOOR, lr_at


def test_schedule_warms_up_then_decays_to_the_floor():
    total, base = 2000, 1e-3
    lrs = [lr_at(s, base, total) for s in range(total)]
    warmup = 100  # 5% of 2000
    assert lrs[0] == pytest.approx(base / warmup)
    assert all(a < b for a, b in zip(lrs[:warmup - 1], lrs[1:warmup]))  # rises during warm-up
    assert lrs[warmup] == pytest.approx(base)
    assert all(a >= b for a, b in zip(lrs[warmup:], lrs[warmup + 1:]))  # never rises after
    assert lrs[-1] == pytest.approx(base * FLOOR, rel=1e-3)
    assert lrs[(warmup + total) // 2] == pytest.approx(base * (FLOOR + (1 - FLOOR) / 2), rel=1e-2)
    assert lr_at(1500, base, total, decay=False) == base
    # On a time budget the decay follows the share of the time spent.
    assert lr_at(500, base, total, progress=1.0) == pytest.approx(base * FLOOR)
    assert lr_at(500, base, total, progress=0.0) == pytest.approx(base)
    # ... and so does the warm-up when the steps are few: it ends at 5% of the time, even before 200 steps.
    assert lr_at(10, base, 2 ** 62, progress=0.025) == pytest.approx(base / 2)
    assert lr_at(10, base, 2 ** 62, progress=0.06) < base and lr_at(150, base, 2 ** 62, progress=0.99) < 0.11 * base


def test_weight_average_follows_the_weights_and_survives_a_round_trip():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.BatchNorm1d(4))
    ema = WeightAverage(model, decay=0.9)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        model[0].weight.add_(1.0)
    for _ in range(200):
        ema.update(model)
    avg = ema.weights(model)
    # After many updates the average sits on the (now constant) weights.
    assert torch.allclose(avg["0.weight"], model[0].weight, atol=1e-6)
    assert not torch.allclose(avg["0.weight"], start["0.weight"])
    assert avg["1.num_batches_tracked"].dtype == torch.long
    # One update after a jump moves the average only part of the way (decay 0.9).
    with torch.no_grad():
        model[0].weight.add_(1.0)
    ema.update(model)
    moved = ema.weights(model)["0.weight"] - avg["0.weight"]
    assert torch.allclose(moved, torch.full_like(moved, 0.1), atol=1e-5)
    # Saved and loaded with weights_only, it continues the same average.
    buf = io.BytesIO()
    torch.save(ema.state_dict(), buf)
    again = WeightAverage(model, decay=0.5)
    again.load_state_dict(torch.load(io.BytesIO(buf.getvalue()), weights_only=True))
    assert again.updates == ema.updates == 201 and again.decay == 0.9
    assert all(torch.equal(again.state[k], ema.state[k]) for k in ema.state)
    with pytest.raises(ValueError):
        WeightAverage(torch.nn.Linear(2, 2)).load_state_dict(ema.state_dict())


def test_early_updates_follow_fast():
    model = torch.nn.Linear(2, 2)
    ema = WeightAverage(model, decay=0.999)
    assert ema.current_decay() == pytest.approx(0.1)  # (1 + 0) / (10 + 0): the random start is forgotten
    with torch.no_grad():
        model.weight.fill_(5.0)
    ema.update(model)
    assert torch.allclose(ema.weights(model)["weight"], torch.full((2, 2), 5.0), atol=0.6)


def test_pixel_weights_favour_the_face_and_its_eyes_and_mouth():
    aux = torch.zeros(1, 2, 8, 8)
    aux[:, 0, 2:6, 2:6] = 1.0      # the face hull
    aux[:, 1, 3, 3] = 1.0          # an eye
    assert pixel_weights(aux, 0.0, 1.0) is None
    w = pixel_weights(aux, 2.0, 0.1)
    assert w.shape == (1, 1, 8, 8)
    assert w[0, 0, 0, 0] == pytest.approx(0.1)          # background
    assert w[0, 0, 2, 2] == pytest.approx(1.0)          # face
    assert w[0, 0, 3, 3] == pytest.approx(3.0)          # eye: 1 + 2
    assert torch.equal(pixel_weights(aux, 2.0, 1.0)[0, 0, 0, 0], torch.tensor(1.0))
