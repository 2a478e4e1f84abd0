"""Torch threads sized to one MIL training step (``cytofm.mil.threads``): one thread for a small model, the
user's choice first, the previous setting back afterwards."""

import torch

from cytofm.mil.threads import SMALL_STEP, sized_threads, step_work, thread_choice


def test_the_issue_task_is_small_one_thread(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    # 182 bags of 9 patches, the shipped encoder's 384 features -> hidden 256, batches of 8
    work = step_work([9] * 182, 384, 256, 8)
    assert work == 8 * 9 * 384 * 256 == 7_077_888
    n, why = thread_choice(work)
    assert n == 1 and why.startswith("a small model: ~7.08M multiply-adds a step, under 2000M")
    assert thread_choice(SMALL_STEP)[0] is None  # large steps keep torch's default
    assert step_work([4, 2], 10, 3, 8) == 2 * 3.8 * 10 * 3  # two bags only: a batch of 2, its longest 3.8


def test_the_users_choice_wins(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert thread_choice(1e3) == (None, "OMP_NUM_THREADS=3 as set")
    assert thread_choice(1e3, explicit=2) == (2, "threads=2 as set")


def test_the_previous_setting_comes_back_even_after_an_error(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    prev, said = torch.get_num_threads(), []
    torch.set_num_threads(2)
    try:
        try:
            with sized_threads(1e6, log=said.append) as n:
                assert n == 1 and torch.get_num_threads() == 1
                raise RuntimeError("stop")
        except RuntimeError:
            pass
        assert torch.get_num_threads() == 2 and said[0].startswith("torch threads: 1 (a small model")
    finally:
        torch.set_num_threads(prev)


def test_transmil_counts_its_attention_over_the_bag(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    # bags of 2000 instances, 384 -> 256, batches of 8: the projection alone is 8 x 2000 x 384 x 256
    # = 1.57G (under 2G, one thread); TransMIL's 2000 x 2000 attention adds 8 x 2000^2 x 256 = 8.19G
    abmil = step_work([2000] * 182, 384, 256, 8, "abmil")
    transmil = step_work([2000] * 182, 384, 256, 8, "transmil")
    assert abmil == step_work([2000] * 182, 384, 256, 8) == 1_572_864_000
    assert transmil == 8 * (2000 * 384 * 256 + 2000 ** 2 * 256) == 9_764_864_000
    assert thread_choice(abmil)[0] == 1 and thread_choice(transmil)[0] is None
