"""Two CPU processes under DDP (gloo): teacher weights and centres stay identical across ranks."""

import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from tests.ssl.test_training import tiny_cfg


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, images: str, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    from cytofm.ssl.trainer import IBOTTrainer

    t = IBOTTrainer(tiny_cfg("train.iterations=3"), [images], f"{out}/run", log=lambda m: None)
    t.run()
    torch.save({"teacher": t.teacher.state_dict(), "center": t.loss_fn.center, "center_patch": t.loss_fn.center_patch,
                "student": t.student.state_dict()}, f"{out}/rank{rank}.pt")
    dist.destroy_process_group()


def test_two_process_gloo_agree(tmp_path):
    from PIL import Image

    from tests.conftest import smear

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
    from cytofm.ssl.data import IBOTBatches, load_table

    table = load_table(img)
    plans = [IBOTBatches([table], tiny_cfg(), rank=r, patch_size=16).sample_plan(0) for r in (0, 1)]
    assert plans[0] != plans[1]
    assert (tmp_path / "run" / "checkpoint.pt").exists()
