"""Training recipe components: the learning-rate schedule, the weight average (EMA), the
loss weights, the pose balance of the draws and the adversarial phase's discriminators, each
doing what it claims.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from faceswap.faces.align import MEAN_FACE_68
from faceswap.model.balance import draw_weights, state_bins
from faceswap.model.ema import WeightAverage
from faceswap.model.losses import pixel_weights, reconstruction_loss, visible_face
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


def test_a_hand_over_the_face_is_not_learned():
    """Where extract found a hand over the face, the decoder is not asked to paint it: the loss does not
    depend on what it paints there (past the SSIM window's reach), everywhere else it does; a learned
    mask's target is the face less the hand."""
    gen = torch.Generator().manual_seed(0)
    aux = torch.zeros(2, 3, 64, 64)
    aux[:, 0, 8:56, 8:56] = 1.0            # the face hull
    aux[0, 2, 20:52, 16:48] = 1.0          # a hand over the first face's mouth and nose; none on the second
    assert pixel_weights(aux[1:], 0.0, 1.0) is None  # no hand in the batch: the uniform loss, as before
    target = torch.rand(2, 3, 64, 64, generator=gen)
    pred = torch.rand(2, 3, 64, 64, generator=gen).requires_grad_()
    reconstruction_loss(pred, target, pixel_weights(aux, 0.0, 1.0)).backward()
    grad = pred.grad.abs().sum(1)
    assert grad[0, 26:46, 22:42].max() == 0.0       # the hand's inside: nothing to learn
    assert (grad[0, 8:18, 8:56] > 0).all() and (grad[1, 26:46, 22:42] > 0).all()  # the face around it, the other face
    face = visible_face(aux)
    assert face[0, 0, 30, 30] == 0.0 and face[0, 0, 10, 10] == 1.0 and face[1, 0, 30, 30] == 1.0


def _adversary(size: int = 64, weight: float = 0.1, lr: float = 1e-3):
    from faceswap.model.gan import Adversary, Discriminators

    disc = Discriminators(size)
    opt = torch.optim.Adam(disc.parameters(), lr=lr, betas=(0.5, 0.999))
    return Adversary(disc, disc, opt, weight, torch.device("cpu"))


def test_the_discriminators_learn_to_tell_sharp_faces_from_smeared_ones():
    """The property the GAN phase relies on: a decoder's soft rebuild of a detailed face scores lower than
    the face itself, so the generator's adversarial loss pushes towards the detail."""
    import torch.nn.functional as F

    gen = torch.Generator().manual_seed(0)
    adversary = _adversary()
    hull = torch.zeros(8, 1, 64, 64)
    hull[:, :, 8:56, 12:52] = 1.0
    first = last = None
    for _ in range(40):
        real = torch.rand(8, 3, 64, 64, generator=gen)                       # fine detail everywhere
        smeared = F.avg_pool2d(real, 5, 1, 2, count_include_pad=False)       # the same faces, blurred
        loss = adversary.step(real, smeared, hull, real, smeared, hull, lr=1e-3)
        first = loss if first is None else first
        last = loss
    # Four logistic terms at chance are 4 ln 2; the discriminators now separate the two.
    assert first == pytest.approx(4 * 0.6931, abs=0.3) and last < 0.5 * first
    real = torch.rand(8, 3, 64, 64, generator=gen)
    smeared = F.avg_pool2d(real, 5, 1, 2, count_include_pad=False)
    with torch.no_grad():
        assert (adversary.generator_loss(smeared, hull, smeared, hull)
                > 2 * adversary.generator_loss(real, hull, real, hull))
    # Outside the face hull nothing is judged: the background can be anything.
    noise = torch.rand(8, 3, 64, 64, generator=gen)
    with torch.no_grad():
        assert torch.equal(adversary.generator_loss(smeared * hull + noise * (1 - hull), hull, smeared, hull),
                           adversary.generator_loss(smeared, hull, smeared, hull))


def test_a_gan_step_runs_on_a_tiny_model_and_moves_both_sides():
    from faceswap.model.autoencoder import FaceSwapModel, preset
    from faceswap.stages.train import Stepper, make_optimizer

    torch.manual_seed(0)
    mcfg = preset("lite")
    model = FaceSwapModel(mcfg)
    adversary = _adversary(mcfg.size, weight=0.1)
    stepper = Stepper(model, model, make_optimizer(model, 1e-4), torch.device("cpu"), 0.0, seed=0,
                      adversary=adversary)
    gen = torch.Generator().manual_seed(1)
    faces = lambda: (torch.rand(4, 3, 64, 64, generator=gen), torch.ones(4, 2, 64, 64))  # noqa: E731
    before_g = {k: v.clone() for k, v in model.state_dict().items()}
    before_d = {k: v.clone() for k, v in adversary.raw.state_dict().items()}
    loss_a, loss_b = stepper.step(faces(), faces(), 1e-4, adversarial=True)
    gan_g, gan_d = stepper.last_gan
    assert all(x > 0 and x == x for x in (loss_a, loss_b, gan_g, gan_d))
    assert any(not torch.equal(v, before_g[k]) for k, v in model.state_dict().items())
    assert all(not torch.equal(v, before_d[k]) for k, v in adversary.raw.state_dict().items()
               if k.endswith("weight"))
    # Outside the phase the discriminators are left alone.
    before_d = {k: v.clone() for k, v in adversary.raw.state_dict().items()}
    stepper.step(faces(), faces(), 1e-4)
    assert all(torch.equal(v, before_d[k]) for k, v in adversary.raw.state_dict().items())


def test_the_code_critic_tells_the_sides_apart_and_the_encoder_loss_brings_the_codes_together():
    """What --code-critic relies on: codes that say whose face they are, the critic learns to tell apart; the
    encoder's loss then moves each side's codes towards the other's, until the critic is unsure of them."""
    from faceswap.model.code_critic import CodeAdversary, CodeCritic

    torch.manual_seed(0)
    critic = CodeCritic(8)
    adversary = CodeAdversary(critic, critic, torch.optim.Adam(critic.parameters(), 1e-3, betas=(0.5, 0.999)), 1.0)
    a, b = torch.randn(64, 8), torch.randn(64, 8)
    a[:, 0] += 3   # A's codes and B's codes far apart along one direction: "who it is"
    b[:, 0] -= 3
    for _ in range(100):
        told = adversary.step(a, b, 1e-3)
    assert told < 0.3          # it tells them apart (a coin would score 2 ln 2 = 1.386)
    with torch.no_grad():
        sure_a, sure_b = (x.mean() for x in critic(a, b))
    gap = (a.mean(0) - b.mean(0)).norm()
    a, b = a.clone().requires_grad_(), b.clone().requires_grad_()
    codes = torch.optim.SGD([a, b], lr=1.0)
    for _ in range(40):        # the encoder's side, the critic held still
        codes.zero_grad()
        adversary.encoder_loss(a, b).backward()
        codes.step()
    with torch.no_grad():
        now_a, now_b = (x.mean() for x in critic(a, b))
        assert now_a < sure_a - 3 and now_b > sure_b + 3, (sure_a, now_a, sure_b, now_b)
        assert (a.mean(0) - b.mean(0)).norm() < 0.6 * gap


def test_a_step_with_the_code_critic_trains_the_critic_and_keeps_the_autoencoder_learning():
    from faceswap.model.autoencoder import FaceSwapModel, preset
    from faceswap.model.code_critic import CodeAdversary, CodeCritic
    from faceswap.stages.train import Stepper, make_optimizer

    torch.manual_seed(0)
    mcfg = preset("lite")
    model, critic = FaceSwapModel(mcfg), CodeCritic(mcfg.bottleneck)
    adversary = CodeAdversary(critic, critic, make_optimizer(critic, 1e-4), 0.1)
    stepper = Stepper(model, model, make_optimizer(model, 1e-4), torch.device("cpu"), 0.0, seed=0, critic=adversary)
    gen = torch.Generator().manual_seed(1)
    faces = lambda: (torch.rand(4, 3, 64, 64, generator=gen), torch.ones(4, 2, 64, 64))  # noqa: E731
    before_g = {k: v.clone() for k, v in model.state_dict().items()}
    before_c = {k: v.clone() for k, v in critic.state_dict().items()}
    loss_a, loss_b = stepper.step(faces(), faces(), 1e-4)
    assert all(x > 0 and x == x for x in (loss_a, loss_b, stepper.last_critic))
    assert any(not torch.equal(v, before_g[k]) for k, v in model.state_dict().items())
    assert all(not torch.equal(v, before_c[k]) for k, v in critic.state_dict().items())


def _faces(n: int, rng, turn: float = 0.0, eyes_shut: bool = False) -> np.ndarray:
    """(n, 68, 2) landmarks of the mean face, 100 px, a little noise; the nose moved sideways by
    ``turn`` eye distances (a head turned by atan(turn / 0.45)), or the upper lids on the lower ones."""
    base = MEAN_FACE_68 * 100 + 20
    eye_distance = np.hypot(*((base[42] + base[45]) / 2 - (base[36] + base[39]) / 2))
    base = base.copy()
    base[27:36, 0] += turn * eye_distance
    if eyes_shut:
        base[[37, 38, 43, 44]] = base[[41, 40, 47, 46]]
    return base + rng.normal(0, 0.3, (n, 68, 2))


def test_pose_balance_draws_rare_turns_and_shut_eyes_more_often():
    rng = np.random.default_rng(0)
    faces = np.concatenate([_faces(80, rng), _faces(10, rng, turn=0.15), _faces(10, rng, eyes_shut=True)])
    bins = state_bins(faces)
    assert len(set(bins[:80])) == 1 and len(set(bins)) == 3, "frontal, turned (18 deg), eyes shut: three states"
    groups = [slice(0, 80), slice(80, 90), slice(90, 100)]

    def shares(balance):
        weights = draw_weights(faces, balance)
        assert weights.sum() == pytest.approx(1.0) and (weights > 0).all()
        return [weights[g].sum() for g in groups]

    assert shares(0.0) == pytest.approx([0.8, 0.1, 0.1])               # uniform: as the footage has them
    assert shares(1.0) == pytest.approx([1 / 3, 1 / 3, 1 / 3])         # every state equally often
    root = np.sqrt([80, 10, 10])
    assert shares(0.5) == pytest.approx(root / root.sum())             # between: as the square root
    weights = draw_weights(faces, 1.0)
    assert np.ptp(weights[80:90]) == 0 and weights[85] == pytest.approx(8 * weights[0])  # alike within a state
    with pytest.raises(ValueError):
        draw_weights(faces, 1.5)

