"""``cytofm pretrain`` and ``cytofm export``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from cytofm.cli.common import command_line, console, fail, info, make_progress, user_errors
from cytofm.ssl.method_registry import METHODS


@user_errors
def pretrain(
    overrides: Annotated[list[str] | None, typer.Argument(help="Config overrides as key=value, "
                                                               "e.g. train.iterations=2000.",
                                                          show_default=False)] = None,
    preset: Annotated[str, typer.Option(help="Pretraining preset (iBOT: cpu, shipped, vit_small, "
                                             "vit_base_paper, ibot_reference_vit_small, "
                                             "ibot_reference_vit_base; DINOv2: dinov2_vit_small, "
                                             "dinov2_vit_base, cpu_dinov2) or a YAML file.")] = "cpu",
    data: Annotated[list[Path] | None, typer.Option(help="A prepared dataset, a folder or "
                                                         "a manifest; repeat for several.")] = None,
    out: Annotated[Path | None, typer.Option(help="Run directory (resumes when "
                                                  "it holds a checkpoint).")] = None,
    config: Annotated[Path | None, typer.Option(help="YAML config applied after the preset.")] = None,
    init_from: Annotated[Path | None, typer.Option(help="Continue from released backbone "
                                                        "weights (iBOT/CytoFM dict with "
                                                        "'teacher', DINOv2/timm state dict).")] = None,
    force_config: Annotated[bool, typer.Option(
        "--force-config",
        help="Resume a run although settings that shape the optimisation changed (the change "
             "is recorded in the checkpoint and config.until-N.yaml keeps the old settings).")] = False,
) -> None:
    """iBOT or DINOv2 self-supervised pretraining of a timm ViT (CPU, one GPU, or
    `torchrun --nproc_per_node N`).

    The method is the config's `method` (METHOD_NAMES); the dinov2_* presets set it with DINOv2's settings.

    The number of optimisation steps is train.iterations; every schedule counts iterations. A run
    directory that holds a checkpoint resumes where it stopped.

    Example: cytofm pretrain --preset cpu --data prepared/ --data cells/ --out runs/tiny train.iterations=500
    """
    from cytofm.config.loader import build_config
    from cytofm.eval.probes import knn_probe
    from cytofm.ssl.config import PretrainConfig
    from cytofm.ssl.trainer import SSLTrainer, TrainingDiverged
    from cytofm.utils.signals import Stopped, exit_code

    if not data:
        fail("give at least one --data PATH (a prepared dataset, a folder of images or a manifest)")
    if out is None:
        fail("give --out RUN (the run directory)")
    cfg = build_config(PretrainConfig, "pretrain", preset, overrides or [], file=config)
    from cytofm.utils.io import check_writable_dir

    check_writable_dir(out)
    from cytofm.utils.distributed import torchrun_group

    try:
        with torchrun_group(cfg.runtime.device), make_progress() as progress:
            # the kNN monitor (train.knn_data) scores with the evaluation's kNN probe: one kNN
            trainer = SSLTrainer(cfg, [str(d) for d in data], out, str(init_from) if init_from else None,
                                 log=info, progress=progress, command=command_line(),
                                 force_config=force_config, knn_probe=knn_probe)
            last = trainer.run()
    except TrainingDiverged as e:
        fail(str(e), code=1)
    except Stopped as e:
        console.print(f"[yellow]stopped[/yellow]: {escape(str(e))}", soft_wrap=True)
        raise typer.Exit(exit_code(e.signal_name)) from None
    except ValueError as e:
        fail(str(e))
    if last:
        console.print(f"[green]done[/green]: iteration {last['iteration']}, loss {last['loss']:.3f}; "
                      f"checkpoint {out}/checkpoint.pt; "
                      f"export with: cytofm export {out} --out model.safetensors")


# the methods named in --help come from the registry (its module imports neither torch nor the methods)
pretrain.__doc__ = pretrain.__doc__.replace("METHOD_NAMES", ", ".join(METHODS.names()))


@user_errors
def export(
    run: Annotated[Path, typer.Argument(help="Pretraining run directory or its checkpoint.pt "
                                             "(with --hf-dir also an export FILE.safetensors, or "
                                             "'shipped' for the encoder shipped in the package).")],
    out: Annotated[Path | None, typer.Option(help="Output FILE.safetensors "
                                                  "(FILE.json written beside it).")] = None,
    half: Annotated[bool, typer.Option("--half", help="Store weights in float16 (half the size).")] = False,
    hf_dir: Annotated[Path | None, typer.Option(
        "--hf-dir",
        help="Also (or only) write the Hugging Face hub layout timm reads "
             "into this folder: config.json, model.safetensors, README.md.")] = None,
    push_to_hub: Annotated[str | None, typer.Option(
        "--push-to-hub", metavar="ORG/REPO",
        help="Upload the --hf-dir folder to this hub repository (private; needs "
             "huggingface_hub and a login: pip install 'cytofm[hub]', hf auth login).")] = None,
    pretraining_record: Annotated[Path | None, typer.Option(
        "--pretraining-record",
        help="Record of the images the run was pretrained on (dataset,relpath,sha256,phash; "
             "scripts/build_pretraining_pool.py --record): copied beside --out and named in "
             "FILE.json, so evaluations can find images the encoder has seen.")] = None,
) -> None:
    """Export the teacher backbone as timm-layout safetensors plus FILE.json (architecture, model_args),
    and/or as a hub folder (--hf-dir) that timm.create_model("local-dir:DIR", pretrained=True) loads.

    Load FILE with: timm.create_model(meta['architecture'], **meta['model_args']) and
    model.load_state_dict(safetensors.torch.load_file(FILE), strict=True).
    """
    from cytofm.ssl.checkpoint import export_hub, export_run

    if out is None and hf_dir is None:
        fail("give --out FILE.safetensors, --hf-dir DIR, or both")
    if push_to_hub and hf_dir is None:
        fail("--push-to-hub uploads the --hf-dir folder: give --hf-dir DIR too")
    if pretraining_record is not None and (out is None or not pretraining_record.is_file()):
        fail(f"--pretraining-record goes with --out FILE and an existing record file ({pretraining_record})")
    if str(run) == "shipped" and not run.exists():
        from cytofm.models.shipped import shipped_weights

        run = shipped_weights()
    try:
        if out is not None:
            if run.suffix == ".safetensors":
                fail(f"{run} is already an export; use --hf-dir DIR to lay it out for the hub")
            st, js, it = export_run(run, out, half)
            console.print(f"[green]exported[/green] {st} and {js} (iteration {it})")
            if pretraining_record is not None:
                from cytofm.data.provenance.pretraining_record import attach_record

                meta = attach_record(js, pretraining_record)
                console.print(f"pretraining record: {meta['pretraining_record']} "
                              f"({meta['pretraining_data']['images']} images)")
        if hf_dir is not None:
            d = export_hub(run, hf_dir, half=half)
            console.print(f"[green]exported[/green] {d}/config.json, model.safetensors, README.md "
                          f"(timm.create_model(\"local-dir:{d}\", pretrained=True))")
            if push_to_hub:
                from cytofm.models.hub import push_hub_dir

                plan = push_hub_dir(d, push_to_hub)
                console.print(f"[green]uploaded[/green] {', '.join(plan['files'])} to hf-hub:{push_to_hub}")
    except (FileNotFoundError, ValueError) as e:
        fail(str(e))
