"""DINOv2: KoLeo and Sinkhorn-Knopp against hand-computed values, the loss against its definition, the
method through the trainer (separate heads, resume, refusals)."""

import math
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from cytofm.ssl.dinov2_loss import DINOv2Loss
from cytofm.ssl.koleo_loss import KoLeoLoss
from cytofm.ssl.sinkhorn_knopp import sinkhorn_knopp

from tests.helpers import DINOV2, run, tiny_cfg
from tests.helpers import free_port as _free_port

# --- KoLeo -------------------------------------------------------------------------------------------

def test_koleo_three_points_on_a_circle():
    # every point's nearest neighbour is at distance sqrt(2): loss = -log(sqrt 2)
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    assert KoLeoLoss()(x).item() == pytest.approx(-math.log(math.sqrt(2)), abs=1e-6)
    assert KoLeoLoss()(3.0 * x).item() == pytest.approx(-math.log(math.sqrt(2)), abs=1e-6)  # normalised first


def test_koleo_uneven_points_by_hand():
    a = 0.1
    x = torch.tensor([[1.0, 0.0], [math.cos(a), math.sin(a)], [-1.0, 0.0], [0.0, -1.0]])
    close = 2 * math.sin(a / 2)  # chord between the first two
    expected = -(2 * math.log(close) + 2 * math.log(math.sqrt(2))) / 4
    assert KoLeoLoss()(x).item() == pytest.approx(expected, abs=1e-5)


def test_koleo_gradient_pushes_nearest_neighbours_apart():
    x = torch.tensor([[1.0, 0.0], [math.cos(0.1), math.sin(0.1)], [-1.0, 0.0], [0.0, -1.0]],
                     requires_grad=True)
    KoLeoLoss()(x).backward()
    y = (x - 0.01 * x.grad).detach()
    y = torch.nn.functional.normalize(y, dim=-1)
    assert (y[0] - y[1]).norm() > 2 * math.sin(0.05) + 1e-4


def test_koleo_single_sample_is_zero_with_graph():
    x = torch.randn(1, 8, requires_grad=True)
    out = KoLeoLoss()(x)
    assert out.item() == 0.0 and out.requires_grad


# --- Sinkhorn-Knopp ----------------------------------------------------------------------------------

def test_sinkhorn_one_iteration_by_hand():
    # exp(logits) = [[2, 1], [1, 1]] (samples x prototypes). Total 5; prototype sums 3/5, 2/5 -> each to 1/2;
    # then each sample's column to 1: sample 0 -> (4/7, 3/7), sample 1 -> (2/5, 3/5).
    logits = torch.log(torch.tensor([[2.0, 1.0], [1.0, 1.0]]))
    q = sinkhorn_knopp(logits, temperature=1.0, iterations=1)
    assert torch.allclose(q, torch.tensor([[4 / 7, 3 / 7], [2 / 5, 3 / 5]]), atol=1e-6)


def test_sinkhorn_symmetric_case_is_the_softmax():
    # symmetric exp(logits/T): rows and columns already balance, so the targets are the plain softmax
    logits = torch.tensor([[math.log(3.0), 0.0], [0.0, math.log(3.0)]]) * 0.04
    q = sinkhorn_knopp(logits, temperature=0.04, iterations=3)
    assert torch.allclose(q, torch.tensor([[0.75, 0.25], [0.25, 0.75]]), atol=1e-6)


def test_sinkhorn_converges_to_equipartition_and_ignores_a_constant():
    torch.manual_seed(0)
    logits = torch.nn.functional.normalize(torch.randn(12, 5), dim=-1) @ torch.nn.functional.normalize(
        torch.randn(5, 5), dim=-1).t()
    q = sinkhorn_knopp(logits, 0.1, iterations=500)
    assert torch.allclose(q.sum(1), torch.ones(12), atol=1e-5)  # each sample a distribution
    assert torch.allclose(q.sum(0), torch.full((5,), 12 / 5), atol=1e-4)  # each prototype B/K
    assert torch.allclose(sinkhorn_knopp(logits + 7.0, 0.1, 3), sinkhorn_knopp(logits, 0.1, 3), atol=1e-6)


def test_sinkhorn_equals_the_reference_formula_and_survives_large_logits():
    torch.manual_seed(1)
    logits = torch.rand(16, 32) * 2 - 1  # cosine logits, as the reference assumes
    T = 0.04
    Q = torch.exp(logits / T).t()
    Q /= Q.sum()
    for _ in range(3):
        Q /= Q.sum(dim=1, keepdim=True)
        Q /= 32
        Q /= Q.sum(dim=0, keepdim=True)
        Q /= 16
    assert torch.allclose(sinkhorn_knopp(logits, T, 3), (Q * 16).t(), atol=1e-6)
    # logits of up to 50 at T=0.04: exp overflows (the reference's formula gives inf/NaN here), and a sample
    # far below the batch's largest would underflow to no target at all; in the log domain every sample
    # keeps a distribution
    big = logits * 50
    big[3] -= 40.0
    q = sinkhorn_knopp(big, T, 3)
    assert torch.isfinite(q).all() and torch.allclose(q.sum(1), torch.ones(16), atol=1e-5)


def _sk_worker(rank: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    torch.manual_seed(0)
    logits = torch.rand(10, 6)
    mine = logits[:4] if rank == 0 else logits[4:]  # uneven shares
    torch.save(sinkhorn_knopp(mine, 0.1, 3), f"{out}/sk{rank}.pt")
    dist.destroy_process_group()


def test_sinkhorn_across_processes_equals_one_process(tmp_path):
    mp.spawn(_sk_worker, args=(_free_port(), str(tmp_path)), nprocs=2, join=True)
    torch.manual_seed(0)
    whole = sinkhorn_knopp(torch.rand(10, 6), 0.1, 3)
    parts = torch.cat([torch.load(tmp_path / f"sk{r}.pt") for r in range(2)])
    assert torch.allclose(parts, whole, atol=1e-6)


# --- the DINOv2 loss ---------------------------------------------------------------------------------

def _uniform(K=2):
    return torch.zeros(1, K)


def test_dinov2_cls_loss_by_hand():
    # teacher logits symmetric over the two views -> targets (3/4, 1/4) and (1/4, 3/4) (see above);
    # student view 0 uniform, view 1 with probabilities (0.9, 0.1)
    loss = DINOv2Loss(2, 2, koleo_weight=0.0, lambda_patch=0.0)
    t = [torch.tensor([[math.log(3.0), 0.0]]), torch.tensor([[0.0, math.log(3.0)]])]
    s = [_uniform(), 0.1 * torch.log(torch.tensor([[0.9, 0.1]]))]
    out = loss(s, torch.zeros(0, 2), torch.zeros(0, dtype=torch.long), t, torch.zeros(0, 2), 1, 1.0, 1.0,
               [torch.randn(1, 4), torch.randn(1, 4)])
    ce_01 = -(0.75 * math.log(0.9) + 0.25 * math.log(0.1))  # teacher view 0, student view 1
    ce_10 = math.log(2.0)  # teacher view 1, student view 0 (uniform)
    assert out["loss_cls"].item() == pytest.approx((ce_01 + ce_10) / 2, abs=1e-5)
    assert out["loss"].item() == pytest.approx((ce_01 + ce_10) / 2, abs=1e-5)
    assert out["loss_patch"].item() == 0.0


def test_dinov2_patch_loss_by_hand_and_unmasked_images_count_as_zero():
    # B=2, 2 global views -> images 0..3; two masked tokens in image 0, one in image 3, none in 1 and 2.
    # Teacher patch logits symmetric between the two tokens of image 0 and the one of image 3 (3 rows, K=3,
    # exp = circulant) -> Sinkhorn-Knopp targets are softmaxes: (3/5, 1/5, 1/5) rotated.
    loss = DINOv2Loss(3, 3, lambda_cls=0.0, koleo_weight=0.0)
    c = torch.log(torch.tensor([[3.0, 1.0, 1.0], [1.0, 3.0, 1.0], [1.0, 1.0, 3.0]]))
    s = torch.zeros(3, 3)  # uniform student: every CE is log 3
    img = torch.tensor([0, 0, 3])
    t_cls = [torch.zeros(2, 3), torch.zeros(2, 3)]
    out = loss([torch.zeros(2, 3)] * 2, s, img, t_cls, c, 2, 1.0, 1.0, [torch.randn(2, 4)] * 2)
    # per image: log 3, 0, 0, log 3; mean over images of each view, then over views: log 3 / 2
    assert out["loss_patch"].item() == pytest.approx(math.log(3.0) / 2, abs=1e-6)
    # a student that matches the target on image 0's first token lowers the term
    s2 = s.clone()
    s2[0] = 0.1 * torch.log(torch.tensor([0.6, 0.2, 0.2]))
    out2 = loss([torch.zeros(2, 3)] * 2, s2, img, t_cls, c, 2, 1.0, 1.0, [torch.randn(2, 4)] * 2)
    h = -(0.6 * math.log(0.6) + 0.4 * math.log(0.2))  # CE(target, target) = its entropy
    assert out2["loss_patch"].item() == pytest.approx(
        ((h + math.log(3)) / 2 / 2 + math.log(3) / 2) / 2, abs=1e-5)


def test_dinov2_koleo_term_is_weighted_sum_over_global_views():
    torch.manual_seed(0)
    a, b = torch.randn(5, 8), torch.randn(5, 8)
    loss = DINOv2Loss(4, 4, lambda_cls=0.0, lambda_patch=0.0, koleo_weight=0.1)
    out = loss([torch.zeros(5, 4)] * 2, torch.zeros(0, 4), torch.zeros(0, dtype=torch.long),
               [torch.zeros(5, 4)] * 2, torch.zeros(0, 4), 5, 0.07, 0.07, [a, b])
    k = KoLeoLoss()
    assert out["loss_koleo"].item() == pytest.approx((k(a) + k(b)).item(), abs=1e-6)
    assert out["loss"].item() == pytest.approx(0.1 * (k(a) + k(b)).item(), abs=1e-6)


def test_dinov2_ema_centering_follows_the_masked_teacher_tokens():
    loss = DINOv2Loss(2, 2, centering="ema", center_momentum=0.9, koleo_weight=0.0)
    t_cls = [torch.tensor([[1.0, 0.0]]), torch.tensor([[3.0, 2.0]])]
    t_patch = torch.tensor([[4.0, 0.0], [0.0, 2.0]])
    loss([torch.zeros(1, 2)] * 2, torch.zeros(2, 2), torch.tensor([0, 1]), t_cls, t_patch, 1, 0.1, 0.1,
         [torch.randn(1, 3)] * 2)
    assert torch.allclose(loss.center, torch.tensor([[0.2, 0.1]]))  # 0.1 x mean of the [CLS] logits
    assert torch.allclose(loss.center_patch, torch.tensor([[0.2, 0.1]]))  # 0.1 x mean of the masked tokens


# --- the method in the trainer -----------------------------------------------------------------------

def test_ibot_refuses_separate_heads_but_takes_sinkhorn_knopp_and_koleo():
    with pytest.raises(ValueError, match="method: dinov2"):
        tiny_cfg("head.separate=true")
    # departures iBOT takes as options
    cfg = tiny_cfg("loss.centering=sinkhorn_knopp", "loss.koleo_weight=0.1")
    assert (cfg.method, cfg.loss.centering, cfg.loss.koleo_weight) == ("ibot", "sinkhorn_knopp", 0.1)


def test_ibot_koleo_adds_its_weighted_term_on_the_student_backbone_cls():
    # same weights, same views: the loss with KoLeo is the iBOT loss + w * sum over the two global views of
    # KoLeo(student backbone [CLS] of the masked global crops), and the term alone reaches the backbone
    from cytofm.ssl.methods import Views, build_method

    torch.manual_seed(0)
    plain = build_method(tiny_cfg("model.drop_path=0"))
    with_koleo = build_method(tiny_cfg("model.drop_path=0", "loss.koleo_weight=0.5"))
    with_koleo.student.load_state_dict(plain.student.state_dict())
    with_koleo.teacher.load_state_dict(plain.teacher.state_dict())
    assert (plain.terms == ("loss_cls", "loss_patch")
            and with_koleo.terms == ("loss_cls", "loss_patch", "loss_koleo"))
    masks = torch.tensor([[[1, 0], [0, 1]], [[1, 1], [0, 0]], [[0, 1], [0, 0]], [[1, 0], [1, 0]]]).bool()
    views = Views(torch.randn(4, 3, 32, 32), masks, torch.randn(4, 3, 16, 16), 2)
    sched = {"teacher_temp": 0.04, "teacher_patch_temp": 0.04}
    off = torch.autocast("cpu", enabled=False)
    a = plain.losses(plain.student, views, sched, off)
    b = with_koleo.losses(with_koleo.student, views, sched, off)
    with torch.no_grad():
        cls_g = plain.student.backbone(views.global_crops, views.masks)[0]
    k = KoLeoLoss()
    expected = k(cls_g[:2]) + k(cls_g[2:])
    assert b["loss_koleo"].item() == pytest.approx(expected.item(), abs=1e-5)
    assert b["loss"].item() == pytest.approx(a["loss"].item() + 0.5 * expected.item(), abs=1e-5)
    assert "loss_koleo" not in a
    koleo_only = build_method(tiny_cfg("loss.koleo_weight=1", "loss.lambda_cls=0", "loss.lambda_patch=0"))
    out = koleo_only.losses(koleo_only.student, views, sched, off)
    out["loss"].backward()
    assert koleo_only.student.backbone.vit.blocks[0].attn.qkv.weight.grad.abs().sum() > 0
    assert all(p.grad is None or not p.grad.any() for p in koleo_only.student.head.parameters())


def test_ibot_with_koleo_logs_the_term(images, tmp_path):
    run(tiny_cfg("loss.koleo_weight=0.1", "train.iterations=2", "train.log_every=1"), images, tmp_path / "r")
    header = (tmp_path / "r" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"loss_cls", "loss_patch", "loss_koleo"} <= set(header)


def test_ibot_with_sinkhorn_knopp_trains_and_never_moves_its_ema_centres(images, tmp_path):
    t = run(tiny_cfg("loss.centering=sinkhorn_knopp", "train.iterations=2"), images, tmp_path / "r")
    assert t.method.criterion.centering == "sinkhorn_knopp"
    assert t.method.criterion.center.abs().sum() == 0 and t.method.criterion.center_patch.abs().sum() == 0
    ck = torch.load(tmp_path / "r" / "checkpoint.pt", weights_only=True)
    assert (ck["config"]["method"], ck["config"]["loss"]["centering"]) == ("ibot", "sinkhorn_knopp")


def test_dinov2_step_trains_separate_heads_and_logs_koleo(images, tmp_path):
    cfg = tiny_cfg(*DINOV2, "train.iterations=2", "head.freeze_last_layer_iters=0")
    t = run(cfg, images, tmp_path / "r")
    keys = set(t.student.state_dict())
    assert ({"head.dino.mlp.0.weight", "head.ibot.mlp.0.weight"} <= keys
            and not any("last_layer_patch" in k for k in keys))
    header = (tmp_path / "r" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"loss_cls", "loss_patch", "loss_koleo"} <= set(header)
    ck = torch.load(tmp_path / "r" / "checkpoint.pt", weights_only=True)
    assert ck["config"]["method"] == "dinov2" and ck["model_args"]


@pytest.mark.parametrize("only", ["cls", "patch"])
def test_dinov2_heads_share_nothing(only):
    # one term at a time: the other head gets no gradient, this head and the backbone do
    from cytofm.ssl.methods import Views, build_method

    off = "loss.lambda_patch=0" if only == "cls" else "loss.lambda_cls=0"
    m = build_method(tiny_cfg(*DINOV2, off, "loss.koleo_weight=0"))
    dino, ibot = ({id(p) for p in h.parameters()} for h in (m.student.head.dino, m.student.head.ibot))
    # no parameter is shared (an alias would hide in named_parameters)
    assert dino and ibot and not dino & ibot
    torch.manual_seed(0)
    masks = torch.tensor([[[1, 0], [0, 1]], [[1, 1], [0, 0]], [[0, 1], [0, 0]], [[1, 0], [1, 0]]]).bool()
    views = Views(torch.randn(4, 3, 32, 32), masks, torch.randn(4, 3, 16, 16), 2)
    out = m.losses(m.student, views, {"teacher_temp": 0.04, "teacher_patch_temp": 0.04},
                   torch.autocast("cpu", enabled=False))
    out["loss"].backward()
    used, unused = ((m.student.head.dino, m.student.head.ibot) if only == "cls"
                    else (m.student.head.ibot, m.student.head.dino))
    assert all(p.grad is None or not p.grad.any() for p in unused.parameters())
    assert used.mlp[0].weight.grad.abs().sum() > 0
    assert m.student.backbone.vit.blocks[0].attn.qkv.weight.grad.abs().sum() > 0


def test_dinov2_koleo_alone_reaches_the_backbone_not_the_heads(images, tmp_path):
    from cytofm.ssl.methods import Views, build_method

    cfg = tiny_cfg(*DINOV2, "loss.lambda_patch=0", "loss.lambda_cls=0", "loss.koleo_weight=1")
    m = build_method(cfg)
    torch.manual_seed(0)
    views = Views(torch.randn(4, 3, 32, 32), torch.zeros(4, 2, 2, dtype=torch.bool), None, 2)
    out = m.losses(m.student, views, {"teacher_temp": 0.04, "teacher_patch_temp": 0.04},
                   torch.autocast("cpu", enabled=False))
    out["loss"].backward()
    assert out["loss_koleo"].item() == pytest.approx(out["loss"].item())
    assert m.student.backbone.vit.blocks[0].attn.qkv.weight.grad.abs().sum() > 0
    assert all(p.grad is None or not p.grad.any() for p in m.student.head.parameters())


def test_dinov2_teacher_patch_targets_come_from_the_masked_positions():
    # what the method hands the loss as teacher patch logits equals the teacher's full-grid logits (unmasked
    # input) indexed at the masked tokens, in the student's order, with the matching image index
    from cytofm.ssl.methods import Views, build_method

    m = build_method(tiny_cfg(*DINOV2))
    seen = {}
    real = m.criterion.forward

    def spy(*args):
        seen["args"] = args
        return real(*args)

    m.criterion.forward = spy
    torch.manual_seed(0)
    x = torch.randn(4, 3, 32, 32)
    masks = torch.tensor([[[1, 0], [0, 1]], [[0, 0], [0, 0]], [[0, 1], [0, 0]], [[1, 1], [1, 1]]]).bool()
    m.losses(m.student, Views(x, masks, None, 2), {"teacher_temp": 0.04, "teacher_patch_temp": 0.04},
             torch.autocast("cpu", enabled=False))
    img, tok = masks.reshape(4, -1).nonzero(as_tuple=True)
    with torch.no_grad():
        _, patch = m.teacher.backbone(x)
        full = m.teacher.head.forward_patch(patch)
    s_patch, image, t_patch = seen["args"][1], seen["args"][2], seen["args"][4]
    assert torch.equal(image, img) and s_patch.shape[0] == len(img) == 7
    assert torch.allclose(t_patch, full[img, tok], atol=1e-6)


def test_dinov2_resume_gives_identical_parameters(images, tmp_path):
    straight = run(tiny_cfg(*DINOV2, "train.iterations=4", "train.save_every=100"), images, tmp_path / "a")
    run(tiny_cfg(*DINOV2, "train.iterations=4", "train.stop_at=2"), images, tmp_path / "b")
    resumed = run(tiny_cfg(*DINOV2, "train.iterations=4", "train.save_every=100"), images, tmp_path / "b")
    assert resumed.start_iter == 2
    for name, net in (("student", "student"), ("teacher", "teacher")):
        a, b = getattr(straight, net).state_dict(), getattr(resumed, net).state_dict()
        for k in a:
            assert torch.equal(a[k], b[k]), f"{name} {k}"


def test_dinov2_ema_centres_resume_exactly(images, tmp_path):
    cfg = [*DINOV2[:2], "loss.centering=ema", "loss.koleo_weight=0.1", "train.iterations=4"]
    straight = run(tiny_cfg(*cfg, "train.save_every=100"), images, tmp_path / "a")
    run(tiny_cfg(*cfg, "train.stop_at=2"), images, tmp_path / "b")
    resumed = run(tiny_cfg(*cfg, "train.save_every=100"), images, tmp_path / "b")
    assert straight.loss_fn.center.abs().sum() > 0
    assert torch.equal(straight.loss_fn.center, resumed.loss_fn.center)
    assert torch.equal(straight.loss_fn.center_patch, resumed.loss_fn.center_patch)


def test_resume_refuses_another_method(images, tmp_path):
    run(tiny_cfg("train.iterations=4", "train.stop_at=1"), images, tmp_path / "r")
    with pytest.raises(ValueError, match="method: 'ibot' -> 'dinov2'"):
        run(tiny_cfg(*DINOV2, "train.iterations=4"), images, tmp_path / "r")


def test_dinov2_presets_load():
    from cytofm.config.loader import build_config
    from cytofm.ssl.config import PretrainConfig

    s = build_config(PretrainConfig, "pretrain", "dinov2_vit_small", [])
    b = build_config(PretrainConfig, "pretrain", "dinov2_vit_base", [])
    assert ((s.method, s.head.separate, s.loss.centering, s.loss.koleo_weight)
            == ("dinov2", True, "sinkhorn_knopp", 0.1))
    assert (s.crops.global_scale, s.crops.local_scale, s.crops.n_local,
            s.mask.min_block) == ((0.32, 1.0), (0.05, 0.32), 8, 4)
    assert b.model.arch == "vit_base_patch16_224" and b.method == "dinov2"
    cpu, cpu2 = (build_config(PretrainConfig, "pretrain", p, []) for p in ("cpu", "cpu_dinov2"))
    # the learning-signal comparison: the same run apart from the method's own settings
    assert (cpu.crops == cpu2.crops and cpu.train == cpu2.train and cpu.optim == cpu2.optim
            and cpu.model == cpu2.model)
    assert cpu.mask == cpu2.mask and cpu.data == cpu2.data
    keep = ("student_temp", "teacher_temp", "warmup_teacher_temp", "teacher_patch_temp",
            "warmup_teacher_patch_temp", "warmup_teacher_temp_iters", "lambda_cls", "lambda_patch")
    assert all(getattr(cpu.loss, k) == getattr(cpu2.loss, k) for k in keep)
    assert (cpu.head.out_dim, cpu.head.hidden_dim, cpu.head.bottleneck_dim) == (
        cpu2.head.out_dim, cpu2.head.hidden_dim, cpu2.head.bottleneck_dim)


def test_sqrt_lr_scaling():
    from cytofm.ssl.trainer import Schedules

    cfg = tiny_cfg("optim.base_lr=0.004", "optim.lr_scaling=sqrt_wrt_1024", "train.batch_size=64")
    assert Schedules(cfg, world=4).lr_peak == pytest.approx(0.004 * math.sqrt(256 / 1024))
    assert (Schedules(tiny_cfg("optim.base_lr=0.004", "train.batch_size=64"), world=4).lr_peak
            == pytest.approx(0.004))


@pytest.mark.parametrize("method", ["ibot", "dinov2"])
def test_teacher_sees_unmasked_global_crops_only(method):
    from cytofm.ssl.methods import Views, build_method

    m = build_method(tiny_cfg(*(DINOV2 if method == "dinov2" else [])))
    seen = []
    m.teacher.backbone.register_forward_pre_hook(lambda mod, args, kwargs: seen.append((args, kwargs)),
                                                 with_kwargs=True)
    torch.manual_seed(0)
    g = torch.randn(4, 3, 32, 32)
    views = Views(g, torch.ones(4, 2, 2, dtype=torch.bool), torch.randn(4, 3, 16, 16), 2)
    m.losses(m.student, views, {"teacher_temp": 0.04, "teacher_patch_temp": 0.04},
             torch.autocast("cpu", enabled=False))
    (args, kwargs), = seen  # one teacher pass
    assert args[0] is g and all(v is None for v in (*args[1:], *kwargs.values()))


def test_dinov2_with_one_shared_head(images, tmp_path):
    # the reference's default config: separate_head false, EMA centring
    with pytest.raises(ValueError, match="head.shared: true"):
        tiny_cfg("method=dinov2", "loss.koleo_weight=0.1")
    cfg = tiny_cfg("method=dinov2", "head.shared=true", "head.shared_teacher=true", "loss.centering=ema",
                   "loss.koleo_weight=0.1", "train.iterations=2")
    t = run(cfg, images, tmp_path / "r")
    assert ("head.mlp.0.weight" in t.student.state_dict()
            and "head.last_layer_patch" not in str(list(t.student.state_dict())))
    assert (tmp_path / "r" / "checkpoint.pt").exists()


@pytest.mark.parametrize("method", ["ibot", "dinov2"])
def test_no_masked_token_in_the_batch(method):
    from cytofm.ssl.methods import Views, build_method

    m = build_method(tiny_cfg(*(DINOV2 if method == "dinov2" else [])))
    torch.manual_seed(0)
    views = Views(torch.randn(4, 3, 32, 32), torch.zeros(4, 2, 2, dtype=torch.bool),
                  torch.randn(4, 3, 16, 16), 2)
    out = m.losses(m.student, views, {"teacher_temp": 0.04, "teacher_patch_temp": 0.04},
                   torch.autocast("cpu", enabled=False))
    out["loss"].backward()
    assert torch.isfinite(out["loss"]) and out["loss_patch"].item() == 0.0
    assert m.student.backbone.vit.blocks[0].attn.qkv.weight.grad.abs().sum() > 0
