"""Two CPU processes under DDP (gloo): teacher weights and centres stay identical across ranks."""

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from tests.helpers import free_port as _free_port
from tests.helpers import tiny_cfg


def _worker(rank: int, world: int, port: int, images: str, out: str, extra: tuple = ()) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    from cytofm.ssl.trainer import SSLTrainer

    t = SSLTrainer(tiny_cfg("train.iterations=3", *extra), [images], f"{out}/run", log=lambda m: None)
    t.run()
    torch.save({"teacher": t.teacher.state_dict(), "center": t.loss_fn.center,
                "center_patch": t.loss_fn.center_patch, "student": t.student.state_dict()},
               f"{out}/rank{rank}.pt")
    dist.destroy_process_group()


def test_two_process_gloo_agree(tmp_path):
    from PIL import Image

    from tests.helpers import smear

    img = tmp_path / "imgs"
    img.mkdir()
    for i in range(6):
        rgb, _ = smear(h=64, w=64, cells=((20 + 4 * i, 30, 10),), seed=i)
        Image.fromarray(rgb).save(img / f"{i}.png")
    mp.spawn(_worker, args=(2, _free_port(), str(img), str(tmp_path)), nprocs=2, join=True)
    a, b = torch.load(tmp_path / "rank0.pt"), torch.load(tmp_path / "rank1.pt")
    for k in a["teacher"]:
        assert torch.equal(a["teacher"][k], b["teacher"][k]), k
    assert torch.equal(a["center"], b["center"]) and torch.equal(a["center_patch"], b["center_patch"])
    for k in a["student"]:  # DDP averaged the gradients: the students stayed in step too
        assert torch.equal(a["student"][k], b["student"][k]), k
    # ... although the ranks drew different images (distributed sampling)
    from cytofm.ssl.data import PretrainingBatches, load_table

    table = load_table(img)
    plans = [PretrainingBatches([table], tiny_cfg(), rank=r, patch_size=16).sample_plan(0) for r in (0, 1)]
    assert plans[0] != plans[1]
    assert (tmp_path / "run" / "checkpoint.pt").exists()


def _resume_worker(rank: int, world: int, port: int, images: str, out: str, pieces: list) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    from cytofm.ssl.trainer import SSLTrainer

    for extra in pieces:  # e.g. [["train.stop_at=2"], []]: stop after 2 steps, then resume in a new trainer
        t = SSLTrainer(tiny_cfg("train.iterations=4", "train.save_every=100", *extra), [images], f"{out}/run",
                        log=lambda m: None)
        t.run()
    torch.save({"student": t.student.state_dict(), "teacher": t.teacher.state_dict(),
                "center": t.loss_fn.center, "rng": torch.get_rng_state(), "opt": t.optimizer.state_dict()},
               f"{out}/rank{rank}.pt")
    dist.destroy_process_group()


# two process groups started twice: the slowest test of the default tier on an fp32-only CPU
@pytest.mark.slow
def test_two_process_resume_is_bit_identical(tmp_path):
    """4 steps straight == 2 steps, stop, resume for 2 (every rank restores its own RNG streams)."""
    from PIL import Image

    from tests.helpers import smear

    img = tmp_path / "imgs"
    img.mkdir()
    for i in range(6):
        Image.fromarray(smear(h=64, w=64, cells=((20 + 4 * i, 30, 10),), seed=i)[0]).save(img / f"{i}.png")
    results = {}
    for name, pieces in (("straight", [[]]), ("pieces", [["train.stop_at=2"], []])):
        out = tmp_path / name
        out.mkdir()
        mp.spawn(_resume_worker, args=(2, _free_port(), str(img), str(out), pieces), nprocs=2, join=True)
        results[name] = [torch.load(out / f"rank{r}.pt") for r in (0, 1)]
    ck = torch.load(tmp_path / "pieces" / "run" / "checkpoint.pt", weights_only=True)
    assert ck["iteration"] == 4 and len(ck["rng_per_rank"]) == 2
    # the ranks' drop-path streams differ, so restoring rank 0's state everywhere would be caught
    assert not torch.equal(ck["rng_per_rank"][0]["torch"], ck["rng_per_rank"][1]["torch"])
    for r in (0, 1):
        a, b = results["straight"][r], results["pieces"][r]
        for part in ("student", "teacher"):
            for k in a[part]:
                assert torch.equal(a[part][k], b[part][k]), (r, part, k)
        assert torch.equal(a["center"], b["center"]) and torch.equal(a["rng"], b["rng"])


def test_two_process_dinov2_agree(tmp_path):
    """DINOv2 trains under DDP: its collectives match on every rank (no hang), every parameter gets a gradient
    (DDP would stop on an unused one) and the ranks stay in step. That Sinkhorn-Knopp reduces over the ranks
    is tested apart (test_dinov2.py: two processes equal one)."""
    from PIL import Image

    from tests.helpers import DINOV2, smear

    img = tmp_path / "imgs"
    img.mkdir()
    for i in range(6):
        rgb, _ = smear(h=64, w=64, cells=((20 + 4 * i, 30, 10),), seed=i)
        Image.fromarray(rgb).save(img / f"{i}.png")
    mp.spawn(_worker, args=(2, _free_port(), str(img), str(tmp_path), tuple(DINOV2)), nprocs=2, join=True)
    a, b = torch.load(tmp_path / "rank0.pt"), torch.load(tmp_path / "rank1.pt")
    assert any(k.startswith("head.ibot.") for k in a["teacher"])
    for part in ("teacher", "student"):
        for k in a[part]:
            assert torch.equal(a[part][k], b[part][k]), (part, k)
