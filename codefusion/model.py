"""The CodeFusion network: encoder E, code embedding L, denoiser N, decoder D, head H.

    E_s  = E(s)                      T5 encoder over the utterance
    x_0  = L(y)                      code tokens -> continuous vectors (unit-RMS, see CodeEmbedding)
    x̂_0  = N(x_t, t, E_s)            full self-attention over x_t, cross-attention to E_s, timestep-conditioned
    D_s  = D(x̂_0, E_s)               run once after the last denoising step
    y    = argmax H(D_s)             one linear layer to the vocabulary, cut at the first pad

The noise process lives in diffusion.py, the loss in loss.py, sampling in sampler.py.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
from pathlib import Path

import torch
import torch.nn.functional as F
from huggingface_hub import PyTorchModelHubMixin
from torch import nn

from codefusion.config import SENTENCE_DIR, CodeFusionConfig
from codefusion.cpu_training import Dropout, attention
from codefusion.diffusion import GaussianDiffusion, timestep_embedding
from codefusion.errors import CodeFusionError
from codefusion.tokenization import sentence_case

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"


def build_encoder(config: CodeFusionConfig):
    from transformers import T5Config, T5EncoderModel

    t5 = T5Config(vocab_size=config.vocab_size, d_model=config.encoder_width, d_kv=config.encoder_width // config.encoder_heads,
                  d_ff=config.encoder_ff, num_layers=config.encoder_layers, num_heads=config.encoder_heads,
                  dropout_rate=config.dropout, feed_forward_proj="relu", is_encoder_decoder=False,
                  use_cache=False, pad_token_id=config.pad_token_id, eos_token_id=2)
    return T5EncoderModel(t5)


class SentenceEncoder(nn.Module):
    """A second reader of the prompt beside E: a pre-trained text encoder (e.g. all-MiniLM-L6-v2), frozen, whose
    token states go through one trained linear map to N's width and are appended to E_s, so N and D cross-attend
    to both. The paper's E is pre-trained (CodeT5); ours learns from a few thousand prompts, and a frozen reader
    trained on a billion sentence pairs knows words those prompts never contain. The copy path still points at
    E's tokens only (code and prompt share E's vocabulary). Frozen and deterministic, so in training each prompt's
    states are computed once, in float32 on the CPU, and kept (`cache`): a training step costs about what it did."""

    CACHE_LIMIT = 50_000   # prompts kept at most (a few hundred MB)

    def __init__(self, name: str, width: int, max_len: int):
        super().__init__()
        from transformers import AutoModel, AutoTokenizer

        try:
            # float32 whatever it was saved in: its states are computed on the CPU, once per prompt
            encoder = AutoModel.from_pretrained(name, use_safetensors=True, dtype=torch.float32)
            tokenizer = AutoTokenizer.from_pretrained(name)
        except (OSError, ValueError) as e:
            raise CodeFusionError(f"could not load the sentence encoder {name} (a Hub id or folder with safetensors "
                                  f"weights and a tokenizer): {e}") from None
        self.frozen = [encoder.eval().requires_grad_(False), tokenizer]   # a list: neither trained nor saved
        self.max_len = max_len
        self.proj = nn.Linear(encoder.config.hidden_size, width)
        self.cache: dict[str, torch.Tensor] = {}
        self.keep = True

    @contextlib.contextmanager
    def not_kept(self):
        """Prompts read inside are not cached: pre-training's masked snippets are never read twice."""
        keep, self.keep = self.keep, False
        try:
            yield
        finally:
            self.keep = keep

    def save(self, folder: Path, dtype: torch.dtype | None = None) -> None:
        """The frozen encoder and its tokenizer, as Transformers saves them: a checkpoint carries its reader."""
        encoder, tokenizer = self.frozen
        state = {k: v.to(dtype) if dtype is not None else v for k, v in encoder.state_dict().items()}
        encoder.save_pretrained(str(folder), state_dict=state)
        tokenizer.save_pretrained(str(folder))

    @torch.no_grad()
    def states(self, prompts: list[str]) -> list[torch.Tensor]:
        encoder, tokenizer = self.frozen
        missing = [p for p in dict.fromkeys(prompts) if p not in self.cache]
        fresh = {}
        with torch.autocast("cpu", enabled=False):
            for i in range(0, len(missing), 64):
                batch = tokenizer(missing[i:i + 64], max_length=self.max_len, truncation=True, padding=True,
                                  return_tensors="pt")
                hidden = encoder(**batch).last_hidden_state
                for text, h, n in zip(missing[i:i + 64], hidden, batch["attention_mask"].sum(-1).tolist()):
                    fresh[text] = h[:n].clone()
        # kept in training only (epochs read the same prompts): a server would keep every request it ever had
        for text, h in fresh.items():
            if self.training and self.keep and len(self.cache) < self.CACHE_LIMIT:
                self.cache[text] = h
        return [self.cache.get(p, fresh.get(p)) for p in prompts]

    def forward(self, prompts: list[str], device=None, null_rows: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, S', width) projected states and their padding mask (True at padding; all True for null rows)."""
        states = self.states(prompts)
        hidden = nn.utils.rnn.pad_sequence(states, batch_first=True)
        lengths = torch.tensor([len(s) for s in states])
        pad = torch.arange(hidden.shape[1])[None, :] >= lengths[:, None]
        if null_rows is not None:
            pad = pad | null_rows.cpu()[:, None]
        return self.proj(hidden.to(device)), pad.to(device)


class CodeEmbedding(nn.Module):
    """L: a trainable table. Vectors are scaled to a fixed RMS (`scale`, 1 by default: the noise's scale) so
    they cannot shrink towards zero, the trivial way to make a jointly-trained embedding easy to denoise.
    A scale below 1 hides more of x_0 at every timestep (Difformer's noise factor): in 64 dimensions unit-RMS
    tokens are still easy to read off x_t at an SNR of 1, which leaves N little reason to read the prompt.

    With `source` (E's input embedding, as T5 shares one table between its encoder and decoder) the table
    is a learned projection of E's: a token that appears in a prompt and in its program then has related
    vectors on both sides, so copying an identifier is one mapping for all tokens, not one per token.
    """

    def __init__(self, vocab_size: int, dim: int, source: nn.Embedding | None = None, scale: float = 1.0):
        super().__init__()
        self.vocab_size, self.dim, self.scale = vocab_size, dim, scale
        if source is None:
            self.weight = nn.Parameter(torch.randn(vocab_size, dim))
        else:
            self.source = [source]  # a list: E owns (and saves) the table
            self.proj = nn.Linear(source.embedding_dim, dim, bias=False)

    def table(self) -> torch.Tensor:
        raw = self.weight if hasattr(self, "weight") else self.proj(self.source[0].weight)
        return F.normalize(raw, dim=-1) * (math.sqrt(self.dim) * self.scale)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(ids, self.table())

    def nearest(self, x: torch.Tensor) -> torch.Tensor:
        """Round each vector to the closest token embedding (all rows share one norm, so max dot product)."""
        return (x @ self.table().T).argmax(-1)


class TiedHead(nn.Module):
    """H scoring D_s against L's own table (plus a bias and a learned temperature). D is trained to output
    L(y), so a token's logit needs no separate row: a token seen once in training still gets a sharp one."""

    def __init__(self, embedding: CodeEmbedding):
        super().__init__()
        self.embedding = [embedding]  # a list, so L's weight is not registered (or saved) twice
        self.bias = nn.Parameter(torch.zeros(embedding.vocab_size))
        # a token's own logit starts at sqrt(dim) at any scale: the table's squared norm, dim scale^2,
        # times this 1/(sqrt(dim) scale^2)
        self.log_scale = nn.Parameter(torch.tensor(-0.5 * math.log(embedding.dim) - 2 * math.log(embedding.scale)))

    def forward(self, d_s: torch.Tensor) -> torch.Tensor:
        return (d_s @ self.embedding[0].table().T) * self.log_scale.exp() + self.bias


def token_classes(tokenizer, vocab_size: int) -> torch.Tensor:
    """Each token id's copy class: the smallest id whose text is the same once surrounding whitespace is stripped
    and letters lower-cased, so "ĠBull", "Bull" and "bull" are one class. Byte-level BPE glues the space before
    a word to it, so a prompt's word and the same word inside code ("contain Bull" and "TextContains(Bull)")
    are different tokens; copying either writes a member of the class. Special tokens, whitespace and partial
    UTF-8 bytes keep classes of their own."""
    classes = torch.arange(vocab_size)
    special, first = set(tokenizer.all_special_ids), {}
    for i in range(min(len(tokenizer), vocab_size)):
        text = tokenizer.decode([i])
        key = text.strip().lower()
        if i not in special and key and "\ufffd" not in text:
            classes[i] = first.setdefault(key, i)
    return classes


class CopyHead(nn.Module):
    """H's copy path, a pointer over the prompt (pointer-generator networks, See et al. 2017): at each code
    position a gate splits the probability between generating from the vocabulary (H's tied logits) and
    copying a prompt token, chosen by attention of D's hidden state over E_s. A copied token writes the member
    of its class (`token_classes`) that H's own logits prefer. Constants the training pairs never contain
    (CF's `TextContains(Bull)`, a Python variable named in the request) are then written by pointing at them,
    instead of needing a vocabulary row learnt for each. Returns log-probabilities."""

    def __init__(self, config: CodeFusionConfig):
        super().__init__()
        w = config.width
        self.query, self.key, self.gate = nn.Linear(w, w), nn.Linear(w, w), nn.Linear(w, 1)
        # How strongly a position is drawn to the prompt token after the one its left neighbour points at, and
        # before the one its right neighbour points at: a word of several BPE pieces is copied in order.
        self.follow = nn.Parameter(torch.full((2,), 2.0))
        self.pad_token_id = config.pad_token_id
        self.register_buffer("classes", torch.arange(config.vocab_size))   # set from the tokenizer by the trainer

    def forward(self, logits: torch.Tensor, hidden: torch.Tensor, memory: torch.Tensor,
                prompt_ids: torch.Tensor) -> torch.Tensor:
        """log p (B, L, V) from H's generation logits (B, L, V), D's hidden states (B, L, W), E_s (B, S, W) and
        the prompt's token ids (B, S). Pad ids are never copied: a row of pads (unsupervised generation's noise
        "prompt") only generates."""
        # Run in float32 even under mixed precision: the class scatters need one dtype, and a log-sum-exp over
        # the vocabulary in bfloat16 (8 bits of mantissa) would round the copy probabilities away.
        with torch.autocast(hidden.device.type, enabled=False):
            return self._log_probs(logits.float(), hidden.float(), memory.float(), prompt_ids)

    def _log_probs(self, logits, hidden, memory, prompt_ids):
        can_copy = prompt_ids != self.pad_token_id
        has_prompt = can_copy.any(-1)[:, None, None]
        scores = self.query(hidden) @ self.key(memory).transpose(1, 2) / math.sqrt(hidden.shape[-1])
        mask = lambda x: x.masked_fill(~can_copy[:, None, :], float("-inf")).masked_fill(~has_prompt, 0.0)  # noqa: E731
        attn = mask(scores).softmax(-1)
        # Span continuation: all positions are decoded at once, so nothing else orders the pieces of a copied
        # word. attn[:, i-1, j-1] and attn[:, i+1, j+1], shifted onto (i, j), add to position i's scores.
        before, after = F.pad(attn[:, :-1, :-1], (1, 0, 1, 0)), F.pad(attn[:, 1:, 1:], (0, 1, 0, 1))
        attn = mask(scores + self.follow[0] * before + self.follow[1] * after).softmax(-1)
        classes = self.classes.expand_as(logits)
        # copy mass per class: attention summed over the prompt positions holding a member of that class
        mass = torch.zeros_like(logits).scatter_add_(-1, self.classes[prompt_ids][:, None, :].expand_as(attn), attn)
        # which member: H's logits, normalised within the class (a scatter log-sum-exp; the max only stabilises)
        top = logits.detach().amax(-1, keepdim=True)
        class_sum = torch.zeros_like(logits).scatter_add_(-1, classes, (logits - top).exp())
        log_within = logits - top - class_sum.gather(-1, classes).clamp_min(1e-30).log()
        log_copy = mass.gather(-1, classes).clamp_min(1e-30).log() + log_within
        gate = self.gate(hidden)
        log_gate = F.logsigmoid(gate).masked_fill(~has_prompt, float("-inf"))
        log_keep = F.logsigmoid(-gate).masked_fill(~has_prompt, 0.0)
        return torch.logaddexp(log_keep + logits.log_softmax(-1), log_gate + log_copy)


def _stack(config: CodeFusionConfig, n_layers: int) -> nn.ModuleList:
    # Pre-norm blocks of self-attention (no causal mask: every position sees every other),
    # cross-attention to E_s, and a feed-forward layer. PyTorch runs attention through fused SDPA.
    return nn.ModuleList(
        nn.TransformerDecoderLayer(config.width, config.heads, config.ff, dropout=config.dropout,
                                   activation="gelu", batch_first=True, norm_first=True)
        for _ in range(n_layers))


# --- one block written out, with cross-attention K/V computed once ---------------------------------
# E_s is fixed for a whole request, so each layer's cross-attention keys and values are too: the
# sampler computes them once (`MemoryCache`) instead of at every denoising step. `_layer` is
# nn.TransformerDecoderLayer's forward (pre-norm) written out with the stock weights, so checkpoints
# are unchanged; tests check that both paths agree. Training runs it only with --fast-cpu-training
# (cpu_training.py: its dropouts and attention), with a cache built per batch.

def _heads(x: torch.Tensor, n_heads: int) -> torch.Tensor:
    """(B, L, W) -> (B, heads, L, W / heads), a view."""
    b, n, w = x.shape
    return x.view(b, n, n_heads, w // n_heads).transpose(1, 2)


def _attend(mha: nn.MultiheadAttention, q, k, v, mask, fast: bool = False) -> torch.Tensor:
    if fast:   # --fast-cpu-training: attention dropout, and products written out when training on CPU
        out = attention(q, k, v, q.shape[-1] ** -0.5, mha.dropout, mha.training, mask=mask)
    else:
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    b, _, n, _ = out.shape
    return mha.out_proj(out.transpose(1, 2).reshape(b, n, mha.embed_dim))


class MemoryCache:
    """One stack's cross-attention K/V over E_s, per layer, and the SDPA mask of E_s's padding."""

    def __init__(self, layers: nn.ModuleList, memory: torch.Tensor, memory_pad_mask: torch.Tensor | None = None):
        self.kv = []
        for layer in layers:
            mha = layer.multihead_attn
            w = mha.embed_dim
            k, v = F.linear(memory, mha.in_proj_weight[w:], mha.in_proj_bias[w:]).chunk(2, dim=-1)
            self.kv.append((_heads(k, mha.num_heads), _heads(v, mha.num_heads)))
        # SDPA's boolean mask is True where attention is allowed; None (no padding) keeps the fused kernel.
        has_pad = memory_pad_mask is not None and bool(memory_pad_mask.any())
        self.mask = ~memory_pad_mask[:, None, None, :] if has_pad else None


def _fast(layer: nn.TransformerDecoderLayer) -> bool:
    """Whether fast_cpu_training swapped this layer's dropouts (stock ones pass x through in eval)."""
    return isinstance(layer.dropout1, Dropout)


def _layer(layer: nn.TransformerDecoderLayer, h: torch.Tensor, kv, mask) -> torch.Tensor:
    fast = _fast(layer)
    sa, ca = layer.self_attn, layer.multihead_attn
    q, k, v = F.linear(layer.norm1(h), sa.in_proj_weight, sa.in_proj_bias).chunk(3, dim=-1)
    h = h + layer.dropout1(_attend(sa, _heads(q, sa.num_heads), _heads(k, sa.num_heads), _heads(v, sa.num_heads),
                                   None, fast))
    w = ca.embed_dim
    q = F.linear(layer.norm2(h), ca.in_proj_weight[:w], ca.in_proj_bias[:w])
    h = h + layer.dropout2(_attend(ca, _heads(q, ca.num_heads), *kv, mask, fast))
    return h + layer.dropout3(layer.linear2(layer.dropout(layer.activation(layer.linear1(layer.norm3(h))))))


def _run_stack(layers: nn.ModuleList, h, memory, memory_pad_mask, cache: MemoryCache | None) -> torch.Tensor:
    fast = len(layers) > 0 and _fast(layers[0])
    if cache is None and not fast:  # training, and callers without a cache: the stock modules
        for layer in layers:
            h = layer(h, memory, memory_key_padding_mask=memory_pad_mask)
        return h
    if cache is None:   # --fast-cpu-training: this batch's
        cache = MemoryCache(layers, memory, memory_pad_mask)
    elif layers.training and not fast:
        raise CodeFusionError("the cached-K/V path skips attention dropout: use it in eval mode only")
    for layer, kv in zip(layers, cache.kv):
        h = _layer(layer, h, kv, cache.mask)
    return h


class Denoiser(nn.Module):
    """N: predicts the clean embedding x̂0 from the noisy x_t, the timestep and the encoded prompt."""

    def __init__(self, config: CodeFusionConfig):
        super().__init__()
        e, w = config.embed_dim, config.width
        self.self_condition = config.self_condition
        self.in_proj = nn.Linear(e * (2 if config.self_condition else 1), w)
        self.pos = nn.Parameter(torch.zeros(1, config.code_len, w))
        self.time_mlp = nn.Sequential(nn.Linear(w, 4 * w), nn.SiLU(), nn.Linear(4 * w, w))
        self.layers = _stack(config, config.denoiser_layers)
        self.norm = nn.LayerNorm(w)
        self.out_proj = nn.Linear(w, e)

    def forward(self, x_t, t, memory, memory_pad_mask=None, x0_prev=None, cache: MemoryCache | None = None):
        if self.self_condition:
            x_t = torch.cat([x_t, torch.zeros_like(x_t) if x0_prev is None else x0_prev], dim=-1)
        temb = self.time_mlp(timestep_embedding(t, self.pos.shape[-1]))
        h = self.in_proj(x_t) + self.pos[:, : x_t.shape[1]] + temb[:, None]
        h = _run_stack(self.layers, h, memory, memory_pad_mask, cache)
        return self.out_proj(self.norm(h))


class Decoder(nn.Module):
    """D: refines x̂0 into D_s, the hidden states that H reads tokens from (back in embedding space)."""

    def __init__(self, config: CodeFusionConfig):
        super().__init__()
        self.in_proj = nn.Linear(config.embed_dim, config.width)
        self.pos = nn.Parameter(torch.zeros(1, config.code_len, config.width))
        self.layers = _stack(config, config.decoder_layers)
        self.norm = nn.LayerNorm(config.width)
        self.out_proj = nn.Linear(config.width, config.embed_dim)

    def forward(self, x0_hat, memory, memory_pad_mask=None, cache: MemoryCache | None = None, return_hidden=False):
        """D_s; with return_hidden also the final hidden states (width wide), which the copy head reads."""
        h = self.in_proj(x0_hat) + self.pos[:, : x0_hat.shape[1]]
        h = self.norm(_run_stack(self.layers, h, memory, memory_pad_mask, cache))
        d_s = self.out_proj(h)
        return (d_s, h) if return_hidden else d_s


class CodeFusion(nn.Module, PyTorchModelHubMixin, library_name="codefusion", tags=["code-generation", "diffusion"],
                 repo_url="https://github.com/codefusion-reimpl/codefusion"):
    def __init__(self, config: CodeFusionConfig | dict):
        super().__init__()
        if isinstance(config, dict):
            config = CodeFusionConfig.from_dict(config)
        self.config = config
        self.encoder = build_encoder(config)                                   # E
        self.embedding = CodeEmbedding(config.vocab_size, config.embed_dim,    # L
                                       self.encoder.get_input_embeddings() if config.share_embedding else None,
                                       config.embed_scale)
        # CodeT5's encoder may be wider than N and D: project E_s once.
        self.memory_proj = (nn.Identity() if config.encoder_width == config.width
                            else nn.Linear(config.encoder_width, config.width))
        self.sentence = (None if config.sentence_encoder is None else            # beside E (optional)
                         SentenceEncoder(config.sentence_encoder, config.memory_width, config.max_prompt_len))
        self.denoiser = Denoiser(config)                                       # N
        # D; decoder_layers=0 is the paper's "without decoder" ablation (Diffusion-LM: H reads x̂0 directly).
        self.decoder = Decoder(config) if config.decoder_layers else None
        self.head = (TiedHead(self.embedding) if config.tie_head                 # H
                     else nn.Linear(config.embed_dim, config.vocab_size))
        self.pointer = CopyHead(config) if config.copy_head else None              # H's copy path (optional)
        self.diffusion = GaussianDiffusion(config.diffusion_steps, config.schedule, config.schedule_offset)
        self.tokenizer = None  # attached by from_pretrained / the trainer

    # --- the five parts, as the paper names them -------------------------------------------------
    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """E_s (projected to N's width); padded positions are masked later via memory_pad_mask."""
        return self.memory_proj(self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state)

    def denoise(self, x_t, t, memory, memory_pad_mask=None, x0_prev=None, cache: MemoryCache | None = None):
        """x̂0; `cache` (from `memory_caches`, eval only) skips recomputing the cross-attention K/V of E_s."""
        return self.denoiser(x_t, t, memory, memory_pad_mask, x0_prev, cache)

    def decode(self, x0_hat, memory, memory_pad_mask=None, cache: MemoryCache | None = None):
        if self.decoder is None:
            return x0_hat
        return self.decoder(x0_hat, memory, memory_pad_mask, cache)

    def logits(self, d_s: torch.Tensor) -> torch.Tensor:
        return self.head(d_s)

    def read(self, x0_hat, memory, memory_pad_mask=None, prompt_ids=None, cache: MemoryCache | None = None):
        """D then H: (D_s, H's scores over the vocabulary at each position). With the copy head the scores are
        log-probabilities of generating or copying a prompt token (`prompt_ids`, aligned with `memory`);
        argmax, log_softmax and cross-entropy read either kind alike."""
        if self.pointer is None:
            d_s = self.decode(x0_hat, memory, memory_pad_mask, cache)
            return d_s, self.logits(d_s)
        if prompt_ids is None:
            raise CodeFusionError("this model copies from the prompt: pass the prompt's token ids (prompt_ids)")
        d_s, hidden = self.decoder(x0_hat, memory, memory_pad_mask, cache, return_hidden=True)
        return d_s, self.pointer(self.logits(d_s), hidden, memory, prompt_ids)

    def memory_caches(self, memory, memory_pad_mask=None) -> tuple[MemoryCache, MemoryCache]:
        """Cross-attention K/V of E_s for N and for D, computed once per request."""
        return (MemoryCache(self.denoiser.layers, memory, memory_pad_mask),
                None if self.decoder is None else MemoryCache(self.decoder.layers, memory, memory_pad_mask))

    # --- tokenisation helpers --------------------------------------------------------------------
    def styled_prompts(self, prompts: list[str]) -> list[str]:
        """The prompts as E reads them, in training and in sampling alike."""
        return [sentence_case(p) for p in prompts] if self.config.sentence_case_prompts else list(prompts)

    def tokenize_prompts(self, prompts: list[str], device=None):
        enc = self.tokenizer(self.styled_prompts(prompts), max_length=self.config.max_prompt_len, truncation=True,
                             padding=True, return_tensors="pt")
        return enc["input_ids"].to(device), enc["attention_mask"].to(device)

    def encode_prompts(self, prompts: list[str], device=None, null_rows: torch.Tensor | None = None
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """E_s for a batch of prompts, its padding mask (True at padded positions) and the prompts' token ids
        (what the copy head copies). null_rows (bool, one per prompt): those rows read the null prompt instead,
        a lone mask token with nothing to copy: the dropped condition of classifier-free guidance."""
        ids, attn = self.tokenize_prompts(prompts, device)
        copyable = ids
        if null_rows is not None and bool(null_rows.any()):
            rows = null_rows.to(ids.device)[:, None]
            lone = torch.arange(ids.shape[1], device=ids.device)[None, :] == 0
            attn = torch.where(rows, lone.long(), attn)
            ids = torch.where(rows, torch.where(lone, self.config.mask_token_id, self.config.pad_token_id), ids)
            copyable = ids.masked_fill(rows, self.config.pad_token_id)
        memory, pad_mask = self.encode(ids, attn), attn == 0
        if getattr(self, "sentence", None) is not None:   # its states follow E's; nothing there to copy
            s_memory, s_pad = self.sentence(self.styled_prompts(prompts), device, null_rows)
            memory, pad_mask = torch.cat([memory, s_memory.to(memory.dtype)], 1), torch.cat([pad_mask, s_pad], 1)
            copyable = F.pad(copyable, (0, s_pad.shape[1]), value=self.config.pad_token_id)
        return memory, pad_mask, copyable

    def encode_null_prompts(self, n: int, device=None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """encode_prompts' output for n rows of the null prompt (E runs once; the text is replaced anyway)."""
        memory, pad_mask, ids = self.encode_prompts(["-"], device, null_rows=torch.ones(1, dtype=torch.bool))
        return memory.expand(n, -1, -1), pad_mask.expand(n, -1), ids.expand(n, -1)

    def num_parameters_by_part(self) -> dict[str, int]:
        parts = {"E (encoder)": self.encoder, "L (embedding)": self.embedding, "N (denoiser)": self.denoiser,
                 "D (decoder)": self.decoder, "H (head)": self.head, "H copy path": self.pointer,
                 "E_s projection": self.memory_proj, "sentence encoder projection": self.sentence}
        counts = {k: sum(p.numel() for p in m.parameters()) if m is not None else 0 for k, m in parts.items()}
        counts["total"] = sum(p.numel() for p in self.parameters())
        return counts

    # --- save / load (safetensors only; huggingface_hub for Hub repos) -----------------------------
    def _save_pretrained(self, save_directory: Path, dtype: torch.dtype | None = None) -> None:
        from safetensors.torch import save_file

        save_directory = Path(save_directory)
        aliases = tied_aliases(self)
        state = {k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v).contiguous()
                 for k, v in self.state_dict().items() if k not in aliases}
        _atomic(save_directory / WEIGHTS_NAME, lambda p: save_file(state, str(p), metadata={"format": "pt"}))
        if self.tokenizer is not None:
            self.tokenizer.save_pretrained(str(save_directory))
        if getattr(self, "sentence", None) is not None:
            tmp = save_directory / f".{SENTENCE_DIR}.tmp-{os.getpid()}"
            shutil.rmtree(tmp, ignore_errors=True)
            self.sentence.save(tmp, dtype)
            shutil.rmtree(save_directory / SENTENCE_DIR, ignore_errors=True)
            os.replace(tmp, save_directory / SENTENCE_DIR)

    def saved_config(self) -> CodeFusionConfig:
        """The config as a checkpoint folder holds it: a sentence encoder is named by the copy saved beside it."""
        sentence = getattr(self, "sentence", None)
        return self.config if sentence is None else self.config.replace(sentence_encoder=SENTENCE_DIR)

    def save_pretrained(self, save_directory, *, dtype: torch.dtype | None = None, **kwargs):
        """Weights (optionally 16-bit), config.json and tokenizer; each file replaced atomically."""
        save_directory = Path(save_directory)
        save_directory.mkdir(parents=True, exist_ok=True)
        self._save_pretrained(save_directory, dtype=dtype)
        text = self.saved_config().to_json()
        _atomic(save_directory / CONFIG_NAME, lambda p: p.write_text(text))
        if kwargs.get("push_to_hub"):
            return self.push_to_hub(repo_id=kwargs["repo_id"], config=self.saved_config().to_dict())
        return None

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *, revision: str | None = None, map_location: str = "cpu",
                        **hub_kwargs) -> "CodeFusion":
        """A checkpoint folder, or a Hub repo id (pin `revision` to a commit for reproducible, trusted loads)."""
        folder = resolve_checkpoint(pretrained_model_name_or_path, revision=revision, **hub_kwargs)
        return load_folder(folder, map_location=map_location)


def tied_aliases(model: nn.Module) -> set[str]:
    """State-dict keys that share storage with an earlier key (T5 ties its input embedding): saved once."""
    seen, aliases = set(), set()
    for k, v in model.state_dict().items():
        ptr = v.untyped_storage().data_ptr()
        if ptr in seen:
            aliases.add(k)
        seen.add(ptr)
    return aliases


def weights_fingerprint(model: nn.Module) -> str:
    """16 hex digits of a SHA-256 over the model's tensors (names, shapes and values, in float32 as loaded): which
    weights a report measured. A folder's path does not say that: `checkpoints/bash` has held ten models by now."""
    import hashlib

    digest = hashlib.sha256()
    aliases = tied_aliases(model)
    for name, tensor in sorted(model.state_dict().items()):
        if name not in aliases:
            digest.update(f"{name}{tuple(tensor.shape)}".encode())
            digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def _atomic(path: Path, write) -> None:
    """Write to a temporary name in the same folder, then rename: a crash never leaves half a file."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def resolve_checkpoint(model_id: str | os.PathLike, revision: str | None = None, **hub_kwargs) -> Path:
    """A local folder as it is, or a Hub repo id downloaded (safetensors, JSON and tokenizer files only)."""
    path = Path(model_id).expanduser()
    if path.is_dir():
        return path
    if path.exists() or str(model_id).startswith((".", "/", "~")) or str(model_id).count("/") != 1:
        raise CodeFusionError(f"checkpoint {model_id} not found: give a folder with {CONFIG_NAME} and {WEIGHTS_NAME}, "
                              "or a Hub repo id like user/codefusion-cf")
    from huggingface_hub import snapshot_download

    from codefusion.errors import hub_errors

    try:
        return Path(snapshot_download(str(model_id), revision=revision, allow_patterns=["*.json", "*.safetensors", "*.txt", "*.md"],
                                      **{k: v for k, v in hub_kwargs.items() if v is not None}))
    except hub_errors() as e:
        raise CodeFusionError(f"could not download checkpoint {model_id} (revision {revision or 'main'}): {e}") from None


def load_folder(folder: Path, map_location: str = "cpu") -> CodeFusion:
    """Rebuild the model (CodeFusion, or the AR baseline if the config says so) from config.json, load safetensors weights strictly, attach the tokenizer."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from codefusion.tokenization import load_tokenizer

    folder = Path(folder)
    config_path, weights_path = folder / CONFIG_NAME, folder / WEIGHTS_NAME
    for p in (config_path, weights_path):
        if not p.is_file():
            raise CodeFusionError(f"checkpoint folder {folder} has no {p.name}")
    if not (folder / "tokenizer.json").is_file():
        raise CodeFusionError(f"checkpoint folder {folder} has no tokenizer.json (the tokenizer is saved with the weights)")
    try:
        config = CodeFusionConfig.from_dict(json.loads(config_path.read_text()))
    except (json.JSONDecodeError, TypeError) as e:
        raise CodeFusionError(f"{config_path} is not a valid config: {e}") from None
    cls = CodeFusion
    if config.architecture == "autoregressive":
        from codefusion.autoregressive import ARBaseline

        cls = ARBaseline
    if config.sentence_encoder == SENTENCE_DIR:   # the copy saved with the weights
        if not (folder / SENTENCE_DIR).is_dir():
            raise CodeFusionError(f"checkpoint folder {folder} has no {SENTENCE_DIR}/ (its config reads prompts with it)")
        model = cls(config.replace(sentence_encoder=str(folder / SENTENCE_DIR)))
        model.config = config   # a folder's path is no name for it: saved again, the copy goes along
    else:
        model = cls(config)
    try:
        state = load_file(str(weights_path), device=str(map_location))
    except (SafetensorError, OSError, ValueError) as e:
        raise CodeFusionError(f"{weights_path} is not a readable safetensors file (truncated or corrupted?): {e}") from None
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    expected = set(model.state_dict()) - tied_aliases(model)
    missing, unexpected = expected - set(state), set(state) - expected
    shape_errors = [k for k, v in state.items() if k in model.state_dict() and model.state_dict()[k].shape != v.shape]
    if missing or unexpected or shape_errors:
        raise CodeFusionError(
            f"{weights_path} does not match {config_path}: "
            f"{len(missing)} missing, {len(unexpected)} unexpected, {len(shape_errors)} wrongly shaped tensors "
            f"(e.g. {sorted(missing | unexpected)[:2] or shape_errors[:2]})")
    model.load_state_dict(state, strict=False)  # strictness checked above; tied aliases fill themselves
    model.tokenizer = load_tokenizer(str(folder))
    if len(model.tokenizer) > config.vocab_size:
        raise CodeFusionError(f"{folder}/tokenizer.json has {len(model.tokenizer)} tokens but the config says "
                              f"vocab_size={config.vocab_size}")
    return model.eval()
