"""`python -m codefusion.evaluate` with k up to 40 instead of the package's 16 (the app's cap), so that top-39 of a
vote over 40 draws counts a task solved when any of its drawn programs is right: the recall of the draws.

    PYTHONPATH=. python results/draw_recall/eval_k40.py --lang bash --split val --checkpoint checkpoints/bash \
        --draws 40 --rank vote --seed 0 --k 1 3 5 39 --out cf_val_vote40_k39.json
"""
import sys

import codefusion.autoregressive as autoregressive
import codefusion.evaluate as evaluate
import codefusion.sampler as sampler

sampler.MAX_K = autoregressive.MAX_K = 40
sys.exit(evaluate.main())
