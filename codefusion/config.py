"""One config dataclass for the whole model; every checkpoint stores it, so anything can rebuild the model."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

from codefusion import LANGUAGES
from codefusion.errors import CodeFusionError


ARCHITECTURES = ("codefusion", "autoregressive")
SENTENCE_DIR = "sentence_encoder"   # a checkpoint's copy of its frozen sentence encoder (its config names it so)

# Share of each pre-training batch given to unsupervised generation (the rest is code-aware CPD).
PRETRAIN_TASKS = {"both": 0.5, "generation": 1.0, "cpd": 0.0}


@dataclass
class CodeFusionConfig:
    language: str = "cf"
    architecture: str = "codefusion"  # or "autoregressive": the same-size T5 baseline (codefusion.autoregressive)
    vocab_size: int = 8192          # shared by prompt and code, as CodeT5's tokenizer is
    pad_token_id: int = 0
    mask_token_id: int = 4          # CPD's mask, also used for unknown input
    max_prompt_len: int = 64        # encoder length; longer prompts are truncated with a warning
    sentence_case_prompts: bool = False  # upper-case each prompt's first letter before E (NL2Bash: train
                                         # utterances are sentence case, test ones and typed ones mostly not)
    code_len: int = 64              # fixed program length (the paper pads to 128)
    bash_templates: bool = False    # trained on NL2Bash templates: every argument is ARG (Tellina's split; the
                                    # metric ignores arguments, so the model spends nothing on file names)

    # E: a T5 encoder (CodeT5-small is width 512, 6 layers, 8 heads, d_ff 2048)
    encoder_width: int = 256
    encoder_layers: int = 3
    encoder_heads: int = 4
    encoder_ff: int = 1024
    encoder_name: str | None = None  # Hub id / folder the encoder was initialised from, if any
    sentence_encoder: str | None = None  # Hub id / folder of a frozen pre-trained text encoder read beside E
                                         # (model.SentenceEncoder); a checkpoint carries a copy, named SENTENCE_DIR

    # N and D share a width; L and H live in the (smaller) diffusion space of size embed_dim
    width: int = 256
    heads: int = 4
    ff: int = 1024
    denoiser_layers: int = 6
    decoder_layers: int = 2
    embed_dim: int = 64
    embed_scale: float = 1.0        # RMS of L's vectors; below 1 the same noise hides more (Difformer's noise factor)
    share_embedding: bool = False   # L is a projection of E's input embedding (CodeEmbedding)
    tie_head: bool = False          # H scores against L's table (TiedHead) instead of its own weights
    copy_head: bool = False         # H can also copy prompt tokens (CopyHead: a pointer over E_s)
    self_condition: bool = True     # feed the previous x̂0 back into N (Plaid/CDCD); cheap, helps a lot
    dropout: float = 0.1
    prompt_dropout: float = 0.0     # share of fine-tuning rows that read the null prompt (classifier-free guidance):
                                    # above 0 the model also knows the unconditional x̂0 that guidance pushes from

    # noise process: alpha_bar(t) = 1 - sqrt(t/T + s)
    diffusion_steps: int = 1200
    schedule: str = "sqrt"
    schedule_offset: float = 1e-4

    def __post_init__(self):
        if self.architecture not in ARCHITECTURES:
            raise CodeFusionError(f"config: unknown architecture {self.architecture!r}; expected one of {ARCHITECTURES}")
        if self.language not in LANGUAGES:
            raise CodeFusionError(f"config: unknown language {self.language!r}; expected one of {LANGUAGES}")
        if not isinstance(self.sentence_case_prompts, bool):
            raise CodeFusionError(f"config: sentence_case_prompts must be true or false, got {self.sentence_case_prompts!r}")
        if not isinstance(self.bash_templates, bool):
            raise CodeFusionError(f"config: bash_templates must be true or false, got {self.bash_templates!r}")
        if self.bash_templates and self.language != "bash":
            raise CodeFusionError(f"config: bash_templates is for Bash models, not {self.language!r} ones")
        if self.copy_head and (self.architecture != "codefusion" or not self.decoder_layers):
            raise CodeFusionError("config: copy_head is CodeFusion's H reading D's states: it needs the codefusion "
                                  "architecture and decoder_layers > 0")
        if not 0 <= self.prompt_dropout < 1:
            raise CodeFusionError(f"config: prompt_dropout must be in [0, 1), got {self.prompt_dropout}")
        if self.prompt_dropout and self.architecture != "codefusion":
            raise CodeFusionError("config: prompt_dropout trains the null prompt that guidance denoises with; "
                                  "the autoregressive baseline has no denoiser")
        if not 0 < self.embed_scale < float("inf"):
            raise CodeFusionError(f"config: embed_scale must be a positive number, got {self.embed_scale}")
        for name in ("width", "encoder_width"):
            heads = self.heads if name == "width" else self.encoder_heads
            if getattr(self, name) % heads:
                raise CodeFusionError(f"config: {name}={getattr(self, name)} is not divisible by its head count {heads}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        """config.json's text, as every checkpoint writer stores it."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> "CodeFusionConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise CodeFusionError(f"config has unknown fields {unknown}: was it written by a newer codefusion?")
        return cls(**d)

    def replace(self, **kw) -> "CodeFusionConfig":
        return dataclasses.replace(self, **kw)

    @property
    def memory_width(self) -> int:
        """The width of what the decoders cross-attend to: E_s projected to N's width (CodeFusion), or the AR
        baseline's encoder states as they are. A sentence encoder's states are projected to it."""
        return self.width if self.architecture == "codefusion" else self.encoder_width


PRESETS = {
    # Seconds to train; for tests.
    "tiny": dict(vocab_size=1024, max_prompt_len=48, code_len=32, encoder_width=64, encoder_layers=1,
                 encoder_heads=2, encoder_ff=128, width=64, heads=2, ff=128, denoiser_layers=2,
                 decoder_layers=1, embed_dim=32, dropout=0.0, tie_head=True),
    # The bundled size: trains one language in about an hour on a 2-core CPU (README: measured).
    "small": dict(vocab_size=2048, max_prompt_len=64, code_len=64, encoder_width=192, encoder_layers=2,
                  encoder_heads=4, encoder_ff=768, width=192, heads=4, ff=768, denoiser_layers=4,
                  decoder_layers=2, embed_dim=64, dropout=0.1, tie_head=True),
    # The paper's shape: CodeT5-small encoder, 10-layer denoiser, 6-layer decoder, 128 code tokens.
    # The paper gives no FFN width for N and D; 1024 lands near its 75M count (README: parameter counts).
    "paper": dict(vocab_size=32100, max_prompt_len=128, code_len=128, encoder_width=512, encoder_layers=6,
                  encoder_heads=8, encoder_ff=2048, width=512, heads=8, ff=1024, denoiser_layers=10,
                  decoder_layers=6, embed_dim=128, dropout=0.1),
}

# Each language gets the length its data needs (compute is linear in it) and a vocabulary small enough
# that most tokens are seen often: with a 2k BPE, 48 tokens hold 99.3% of CoNaLa and 97.1% of NL2Bash
# codes; CF rules are short (95% within 9 tokens of a 1k BPE), 24 hold 99%.
LANGUAGE_OVERRIDES = {"small": {"python": dict(code_len=48), "bash": dict(code_len=48),
                                "cf": dict(code_len=24, vocab_size=1024)}}


def preset(name: str, language: str, **overrides) -> CodeFusionConfig:
    if name not in PRESETS:
        raise CodeFusionError(f"unknown preset {name!r}: choose one of {', '.join(PRESETS)}")
    values = dict(PRESETS[name], language=language)
    values.update(LANGUAGE_OVERRIDES.get(name, {}).get(language, {}))
    values.update({k: v for k, v in overrides.items() if v is not None})
    return CodeFusionConfig(**values)
