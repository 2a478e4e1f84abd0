"""The Hugging Face hub layout timm reads: ``config.json`` + ``model.safetensors`` + a model card.

Writing: :func:`write_hub_dir` lays out a backbone so that ``timm.create_model("local-dir:DIR",
pretrained=True)`` (or ``hf-hub:ORG/REPO`` once uploaded) builds it with its own normalisation.
Reading: :func:`read_hub_dir` never lets timm unpickle anything: the weights file is chosen here and read
through :mod:`cytofm.models.loading` (safetensors first; a ``.bin``/``.pth`` with the restricted
unpickler, the full one only for a file trusted with ``--trust-weights``). Repositories on the hub are
fetched with ``huggingface_hub`` only when ``CYTOFM_ALLOW_DOWNLOAD=1``; otherwise only its local cache is
looked at.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from cytofm.models import loading
from cytofm.utils.io import strict_json, with_user_mode

CONFIG = "config.json"
WEIGHTS = "model.safetensors"
CARD = "README.md"
# the order timm looks for weights in a local folder (timm/models/_hub.py), safetensors first
WEIGHT_NAMES = ("model.safetensors", "pytorch_model.bin", "pytorch_model.pth", "model.pth")
WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pth.tar", ".bin")
DOWNLOAD_ENV = "CYTOFM_ALLOW_DOWNLOAD"


class HubError(ValueError):
    """A hub folder or repository that cannot be used; the message names it and what to do."""


@dataclass
class HubModel:
    """What a hub folder describes: timm architecture, its arguments, normalisation and weights."""

    architecture: str
    model_args: dict
    pretrained_cfg: dict
    state: dict
    source: str
    config: dict = field(default_factory=dict)

    @property
    def mean(self) -> tuple[float, float, float]:
        return tuple(float(v) for v in self.pretrained_cfg.get("mean", (0.485, 0.456, 0.406)))

    @property
    def std(self) -> tuple[float, float, float]:
        return tuple(float(v) for v in self.pretrained_cfg.get("std", (0.229, 0.224, 0.225)))

    @property
    def input_size(self) -> int:
        size = self.pretrained_cfg.get("input_size")
        if size:
            return int(size[-1])
        img = self.model_args.get("img_size", 224)
        return int(img[-1] if isinstance(img, list | tuple) else img)


# --- writing ----------------------------------------------------------------------------------------
def pretrained_cfg(mean, std, input_size: int, **extra) -> dict:
    """timm's ``pretrained_cfg`` for a feature backbone evaluated on whole resized patches (crop 1.0)."""
    return {"input_size": [3, int(input_size), int(input_size)], "interpolation": "bicubic", "crop_pct": 1.0,
            "crop_mode": "center", "mean": [float(v) for v in mean], "std": [float(v) for v in std],
            "num_classes": 0, "first_conv": "patch_embed.proj", "classifier": "head", **extra}


def hub_config(architecture: str, model_args: dict, cfg: dict, num_features: int,
               global_pool: str = "token") -> dict:
    """The ``config.json`` timm's ``push_to_hub``/``save_for_hf`` writes (and its loaders read)."""
    return {"architecture": architecture, "num_classes": 0, "num_features": int(num_features),
            "global_pool": global_pool, "model_args": dict(model_args), "pretrained_cfg": dict(cfg)}


def model_card(name: str, config: dict, about: str = "", license: str = "apache-2.0",
               tags: tuple = ()) -> str:
    """A model card with the hub's YAML metadata block, and how to load the encoder with timm and cytofm."""
    pc = config["pretrained_cfg"]
    tag_lines = "".join(f"- {t}\n" for t in ("image-feature-extraction", "timm", "cytofm", "cytology", *tags))
    return (
        f"---\ntags:\n{tag_lines}library_name: timm\nlicense: {license}\n"
        "pipeline_tag: image-feature-extraction\n---\n"
        f"# {name}\n\n{about.strip() + chr(10) + chr(10) if about.strip() else ''}"
        f"A `{config['architecture']}` feature backbone ({config['num_features']}-d, [CLS] token after the "
        f"final norm) exported by cytofm.\n\n"
        f"- input: RGB, {pc['input_size'][-1]} px, resized whole (crop_pct 1.0)\n"
        f"- normalisation: mean {pc['mean']}, std {pc['std']}\n\n"
        "## Use\n\n```python\nimport timm\n"
        "model = timm.create_model(\"local-dir:THIS_FOLDER\", pretrained=True)  # or \"hf-hub:ORG/REPO\"\n"
        "cfg = timm.data.resolve_data_config({}, model=model)\n"
        "transform = timm.data.create_transform(**cfg)\n```\n\n"
        "```bash\ncytofm extract --encoder local-dir:THIS_FOLDER --input prepared/ --mode tiles "
        "--out feats/\n```\n"
    )


def write_hub_dir(state: dict, architecture: str, model_args: dict, cfg: dict, out: str | os.PathLike,
                  num_features: int, name: str = "", about: str = "", weights: Path | None = None) -> Path:
    """Write ``config.json``, ``model.safetensors`` and ``README.md`` into ``out``.

    ``weights``: an existing timm-layout safetensors file to link (or copy) instead of re-encoding ``state``.
    """
    from safetensors.torch import save_file

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    config = hub_config(architecture, model_args, cfg, num_features)
    dest = out / WEIGHTS
    if weights is not None:
        link_or_copy(weights, dest)
    else:
        tmp = out / f".{WEIGHTS}.tmp"
        save_file({k: v.contiguous() for k, v in state.items()}, str(tmp), metadata={"format": "pt"})
        os.replace(with_user_mode(tmp), dest)
    (out / CONFIG).write_text(strict_json(config) + "\n")
    (out / CARD).write_text(model_card(name or out.name, config, about))
    return out


def link_or_copy(src: Path, dest: Path) -> None:
    """A hard link where the file system allows it (no second copy of the weights), else a copy."""
    import shutil

    tmp = dest.with_name(f".{dest.name}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copyfile(src, tmp)
    os.replace(tmp, dest)


def push_hub_dir(folder: str | Path, repo: str, private: bool = True, dry_run: bool = False) -> dict:
    """Upload a hub folder with ``huggingface_hub`` (optional extra ``cytofm[hub]``).

    With ``dry_run`` nothing is sent: the repository and the files that would be uploaded are returned
    (the part that can be tested without an account and a network).
    """
    folder = Path(folder)
    files = sorted(p.name for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    plan = {"repo_id": repo, "folder": str(folder), "files": files, "private": private}
    if dry_run:
        return plan
    try:
        from huggingface_hub import HfApi
    except ImportError:
        raise ValueError("--push-to-hub needs huggingface_hub: pip install 'cytofm[hub]'") from None
    api = HfApi()
    try:
        api.create_repo(repo, private=private, exist_ok=True)
        api.upload_folder(repo_id=repo, folder_path=str(folder), allow_patterns=files,
                          commit_message="cytofm export --hf-dir")
    except Exception as e:  # noqa: BLE001 - no login, no network, no rights: one line
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"hf-hub:{repo}: upload failed ({first})") from None
    return plan


# --- reading ----------------------------------------------------------------------------------------
def is_hub_dir(path: str | os.PathLike) -> bool:
    p = Path(path)
    return p.is_dir() and (p / CONFIG).is_file()


def weights_file(folder: Path) -> Path:
    for name in WEIGHT_NAMES:
        if (folder / name).is_file():
            return folder / name
    for suffix in WEIGHT_SUFFIXES:
        found = sorted(folder.glob(f"*{suffix}"))
        if found:
            return found[0]
    raise HubError(f"{folder}: no weights file (looked for {', '.join(WEIGHT_NAMES)} and any "
                   f"{'/'.join(WEIGHT_SUFFIXES)})")


def read_config(folder: Path) -> dict:
    path = folder / CONFIG
    try:
        cfg = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise HubError(f"{path}: not a readable config.json ({e})") from None
    if not isinstance(cfg, dict) or not isinstance(cfg.get("architecture"), str):
        raise HubError(f"{path}: no 'architecture' entry (is this a timm hub folder?)")
    return cfg


def read_hub_dir(path: str | os.PathLike) -> HubModel:
    """Architecture, arguments, normalisation and weights of a hub-layout folder (weights read safely)."""
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise HubError(f"{folder}: no such folder")
    cfg = read_config(folder)
    wpath = weights_file(folder)
    state = loading.load_state(wpath)  # UnsafeWeightsError / ValueError name the file
    args = dict(cfg.get("model_args") or {})
    args.setdefault("num_classes", 0)
    pcfg = dict(cfg.get("pretrained_cfg") or {})
    return HubModel(cfg["architecture"], args, pcfg, state, str(wpath), cfg)


def allow_download() -> bool:
    return os.environ.get(DOWNLOAD_ENV, "") == "1"


def fetch_repo(repo: str, cache_dir: str | None = None) -> Path:
    """The local folder of hub repository ``ORG/REPO[@revision]``: downloaded only with the opt-in, else
    taken from the local Hugging Face cache if it was fetched before."""
    repo_id, _, revision = repo.partition("@")
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise HubError(f"hf-hub:{repo}: give the repository as ORG/REPO "
                       "(e.g. hf-hub:timm/vit_small_patch16_224.dino)")
    how = (f"hf-hub:{repo}: not in the local Hugging Face cache, and downloads are off. Set {DOWNLOAD_ENV}=1 "
           f"on a machine that is online to fetch it, or fetch it yourself "
           f"(huggingface-cli download {repo_id} --local-dir DIR) and use local-dir:DIR")
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise HubError(f"hf-hub:{repo}: needs huggingface_hub (pip install 'cytofm[hub]')") from None
    patterns = [CONFIG, CARD, *WEIGHT_NAMES]
    # read now, not when huggingface_hub loaded
    cache_dir = cache_dir or os.environ.get("HF_HUB_CACHE") or None
    try:
        folder = snapshot_download(repo_id, revision=revision or None, allow_patterns=patterns,
                                   cache_dir=cache_dir, local_files_only=not allow_download())
    except Exception as e:  # noqa: BLE001 - offline, missing repo, gated repo: one line each
        if not allow_download():
            raise HubError(how) from None
        raise HubError(f"hf-hub:{repo}: download failed "
                       f"({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    return Path(folder)
