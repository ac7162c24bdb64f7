"""The autoregressive baseline of the paper's comparison: a T5 encoder-decoder of CodeFusion's size.

Same tokenizer, same data, same trainer and budget as CodeFusion (`python -m codefusion.train
--architecture autoregressive ...`): its encoder is E's shape, its decoder has as many layers as N and D
together, at N's width, and its output layer is tied to its input embedding (T5's own design).
Pre-training uses the same two tasks: code-aware CPD (masked code in, full code out) and unsupervised
generation (the encoder's output replaced by Gaussian noise). Decoding: beam search (top-k = the k best
beams) or sampling (k independent draws), each candidate scored by its mean token log-probability.
With `--sentence-encoder` it reads each prompt with the same frozen reader as CodeFusion can (its projected
states appended to the encoder's), so the two systems can be compared on equal inputs.
"""

from __future__ import annotations

import torch
from huggingface_hub import PyTorchModelHubMixin
from torch import nn

from codefusion.config import CodeFusionConfig
from codefusion.errors import CodeFusionError
from codefusion.loss import LossTerms
from codefusion.metrics import literal_grounding
from codefusion.model import CodeFusion, SentenceEncoder
from codefusion.sampler import MAX_K, Candidate, check_draws, check_ranking, prepare_prompts, rank_functions, rank_rows

DECODINGS = ("beam", "sample")


def t5_config(config: CodeFusionConfig):
    from transformers import T5Config

    return T5Config(vocab_size=config.vocab_size, d_model=config.encoder_width,
                    d_kv=config.encoder_width // config.encoder_heads, d_ff=config.encoder_ff,
                    num_layers=config.encoder_layers, num_decoder_layers=config.denoiser_layers + config.decoder_layers,
                    num_heads=config.encoder_heads, dropout_rate=config.dropout, feed_forward_proj="relu",
                    tie_word_embeddings=True, pad_token_id=config.pad_token_id, eos_token_id=2,
                    decoder_start_token_id=config.pad_token_id)


class ARBaseline(nn.Module, PyTorchModelHubMixin, library_name="codefusion", tags=["code-generation", "baseline"]):
    """T5ForConditionalGeneration behind CodeFusion's checkpoint format (config.json, safetensors, tokenizer)."""

    def __init__(self, config: CodeFusionConfig | dict):
        super().__init__()
        from transformers import T5ForConditionalGeneration

        if isinstance(config, dict):
            config = CodeFusionConfig.from_dict(config)
        if config.architecture != "autoregressive":
            raise CodeFusionError(f"ARBaseline needs architecture='autoregressive', got {config.architecture!r}")
        self.config = config
        self.t5 = T5ForConditionalGeneration(t5_config(config))
        self.sentence = (None if config.sentence_encoder is None else       # beside the encoder (optional)
                         SentenceEncoder(config.sentence_encoder, config.memory_width, config.max_prompt_len))
        self.tokenizer = None

    # the checkpoint format and prompt handling are CodeFusion's
    styled_prompts, tokenize_prompts = CodeFusion.styled_prompts, CodeFusion.tokenize_prompts
    encode_prompts = CodeFusion.encode_prompts
    _save_pretrained = CodeFusion._save_pretrained
    save_pretrained, saved_config = CodeFusion.save_pretrained, CodeFusion.saved_config
    from_pretrained = CodeFusion.from_pretrained

    @property
    def eos_token_id(self) -> int:
        return self.t5.config.eos_token_id

    def num_parameters_by_part(self) -> dict[str, int]:
        count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
        shared = count(self.t5.shared)
        return {"embedding (shared, tied output)": shared, "encoder": count(self.t5.encoder) - shared,
                "decoder": count(self.t5.decoder) - shared,
                "sentence encoder projection": 0 if self.sentence is None else count(self.sentence),
                "total": count(self)}

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.t5.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    def labels(self, code_ids: torch.Tensor) -> torch.Tensor:
        """Code tokens, then </s>, then -100 (ignored): the fixed-length pad-filled rows CodeFusion trains on."""
        pad = self.config.pad_token_id
        lengths = (code_ids != pad).sum(1)
        out = torch.full((code_ids.shape[0], code_ids.shape[1] + 1), -100, dtype=torch.long, device=code_ids.device)
        for i, n in enumerate(lengths.tolist()):
            out[i, :n] = code_ids[i, :n]
            out[i, n] = self.eos_token_id
        return out

    def teacher_forced(self, code_ids: torch.Tensor, memory: torch.Tensor, memory_pad_mask: torch.Tensor | None):
        """T5's decoder reading the code given the encoder's states: (its output, with .loss and .logits; labels)."""
        from transformers.modeling_outputs import BaseModelOutput

        attn = None if memory_pad_mask is None else (~memory_pad_mask).long()
        labels = self.labels(code_ids)
        out = self.t5(encoder_outputs=BaseModelOutput(last_hidden_state=memory), attention_mask=attn, labels=labels)
        return out, labels

    def loss(self, code_ids: torch.Tensor, memory: torch.Tensor, memory_pad_mask: torch.Tensor | None) -> LossTerms:
        """Teacher-forced cross-entropy given the encoder's states (or noise, for unsupervised generation)."""
        ce = self.teacher_forced(code_ids, memory, memory_pad_mask)[0].loss   # mean token cross-entropy, -100 ignored
        zero = torch.zeros((), device=ce.device)
        return LossTerms(total=ce, denoise=zero, decoder=zero, ce=ce)

    @torch.inference_mode()
    def generate_candidates(self, prompts: list[str], k: int = 5, decoding: str = "beam", seed: int = 0,
                            max_new_tokens: int | None = None, draws: int | None = None,
                            rank_by: str = "score", valid_first: bool = False,
                            ground_literals: bool = False) -> list[list[Candidate]]:
        """k candidates per prompt, best score first. draws > k (as in codefusion.sampler.generate): beam
        width or number of samples `draws`, keeping the k best-scoring distinct programs, or with
        rank_by="vote" the k programs most of them agree on; valid_first: those that parse first;
        ground_literals (CF): literals rounded to the request before ranking."""
        if decoding not in DECODINGS:
            raise CodeFusionError(f"unknown decoding {decoding!r}: choose beam or sample")
        if not isinstance(k, int) or not 1 <= k <= MAX_K:
            raise CodeFusionError(f"k must be an integer from 1 to {MAX_K}, got {k!r}")
        check_draws(k, draws)
        check_ranking(rank_by, k, draws)
        if rank_by == "mean-score":
            raise CodeFusionError("mean-score averages a draw's score over the denoising steps: the AR baseline has none")
        n_keep, k = k, draws or k   # k = sequences decoded per prompt
        grounding = [literal_grounding(self.config.language, p) for p in prompts] if ground_literals else None
        prompts, _ = prepare_prompts(self, prompts)
        device = next(self.parameters()).device
        # the encoder's states (and a sentence encoder's after them), as in training: generate decodes from them
        memory, pad_mask, _ = self.encode_prompts(prompts, device)
        torch.manual_seed(seed)
        kw = dict(num_beams=k, do_sample=False) if decoding == "beam" else dict(do_sample=True, top_k=0, num_beams=1)
        from transformers import DynamicCache, EncoderDecoderCache
        from transformers.modeling_outputs import BaseModelOutput

        # A cache that grows per layer: one sized from the config would count the encoder's layers, not the decoder's.
        cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
        out = self.t5.generate(encoder_outputs=BaseModelOutput(last_hidden_state=memory),
                               attention_mask=(~pad_mask).long(), num_return_sequences=k, past_key_values=cache,
                               max_new_tokens=max_new_tokens or self.config.code_len + 1,
                               output_scores=True, return_dict_in_generate=True, **kw)
        steps = self.t5.compute_transition_scores(out.sequences, out.scores, getattr(out, "beam_indices", None),
                                                  normalize_logits=True)
        seqs = out.sequences[:, 1:]  # drop the decoder start token
        cands = []
        for row, logp in zip(seqs.tolist(), steps):
            kept = row[: row.index(self.eos_token_id)] if self.eos_token_id in row else row
            kept = [t for t in kept if t != self.config.pad_token_id]
            n = min(len(kept) + 1, logp.shape[0])
            lp = logp[:n].float()
            lp = lp[torch.isfinite(lp)]
            cands.append(Candidate(text=self.tokenizer.decode(kept, skip_special_tokens=True).strip(),
                                   tokens=[self.tokenizer.decode([t]) for t in kept], token_ids=kept,
                                   probs=logp[: len(kept)].float().exp().tolist(),
                                   score=float(lp.mean()) if len(lp) else float("-inf")))
        return rank_rows(cands, k, n_keep, *rank_functions(self, rank_by, valid_first), grounding)
