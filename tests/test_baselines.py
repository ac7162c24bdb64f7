"""The comparison systems of the paper's Table 1 and ablations: the AR baseline, no decoder, one pre-training task,
and the H/L options (tied head, shared embedding)."""

from __future__ import annotations

import json

import pytest
import torch

from codefusion.config import preset
from codefusion.errors import CodeFusionError
from codefusion.loss import codefusion_loss
from codefusion.metrics import is_valid
from codefusion.model import CodeFusion

from conftest import train_tiny


@pytest.fixture(scope="module")
def tiny_ar(data_dir, tmp_path_factory):
    return train_tiny(data_dir, tmp_path_factory.mktemp("ar"), "cf", 30, "--architecture", "autoregressive")


def test_ar_baseline_is_a_t5_of_codefusions_size():
    from codefusion.autoregressive import ARBaseline

    for lang in ("cf", "bash"):
        cf = CodeFusion(preset("small", lang)).num_parameters_by_part()["total"]
        ar = ARBaseline(preset("small", lang, architecture="autoregressive"))
        assert ar.t5.config.num_decoder_layers == 6 and ar.t5.config.d_model == 192
        assert 0.8 < ar.num_parameters_by_part()["total"] / cf < 1.2


def test_ar_checkpoint_round_trips_and_decodes_k_ranked_candidates(tiny_ar, data_dir):
    from codefusion.data import load_split
    from codefusion.sampler import load_model

    model = load_model(tiny_ar)
    assert type(model).__name__ == "ARBaseline" and model.tokenizer is not None
    prompts = [ex.nl for ex in load_split("cf", "val", data_dir)[:3]]
    for decoding in ("beam", "sample"):
        out = model.generate_candidates(prompts, k=4, decoding=decoding, seed=0)
        assert [len(c) for c in out] == [4, 4, 4]
        for cands in out:
            scores = [c.score for c in cands]
            assert scores == sorted(scores, reverse=True)
            assert all(len(c.token_ids) <= model.config.code_len + 1 for c in cands)
    beams = [c.text for c in model.generate_candidates(prompts[:1], k=4, decoding="beam")[0]]
    assert len(set(beams)) > 1, "beam search returns k different hypotheses"
    again = model.generate_candidates(prompts, k=2, decoding="sample", seed=3)
    assert [c.text for c in again[0]] == [c.text for c in model.generate_candidates(prompts, k=2, decoding="sample",
                                                                                      seed=3)[0]]
    with pytest.raises(CodeFusionError, match="decoding"):
        model.generate_candidates(prompts, k=2, decoding="greedy")
    for decoding in ("beam", "sample"):  # sample-and-rank: k best distinct of 8
        for cands in model.generate_candidates(prompts, k=3, decoding=decoding, seed=0, draws=8):
            texts = [c.text for c in cands]
            assert 1 <= len(texts) <= 3 and len(set(texts)) == len(texts)
    with pytest.raises(CodeFusionError, match="draws"):
        model.generate_candidates(prompts, k=3, draws=2)
    for cands in model.generate_candidates(prompts, k=3, decoding="sample", seed=0, draws=8, rank_by="vote"):
        votes = [c.votes for c in cands]
        assert 1 <= len(cands) <= 3 and sum(votes) <= 8 and votes == sorted(votes, reverse=True)
    with pytest.raises(CodeFusionError, match="more draws"):
        model.generate_candidates(prompts, k=3, rank_by="vote")
    with pytest.raises(CodeFusionError, match="the AR baseline has none"):
        model.generate_candidates(prompts, k=3, rank_by="mean-score")
    for plain, first in zip(model.generate_candidates(prompts, k=4, decoding="sample", seed=1),
                            model.generate_candidates(prompts, k=4, decoding="sample", seed=1, valid_first=True)):
        ok = [is_valid("cf", c.text) for c in first]
        assert sorted(c.text for c in plain) == sorted(c.text for c in first) and ok == sorted(ok, reverse=True)
    from codefusion.cf import ground_literals   # the AR baseline gets the same post-processing as CodeFusion

    for prompt, plain, grounded in zip(prompts, model.generate_candidates(prompts, k=3, decoding="beam"),
                                       model.generate_candidates(prompts, k=3, decoding="beam", ground_literals=True)):
        assert [c.text for c in grounded] == [ground_literals(c.text, prompt) for c in plain]


def test_ar_labels_end_with_eos_and_ignore_padding():
    from codefusion.autoregressive import ARBaseline

    model = ARBaseline(preset("tiny", "cf", vocab_size=64, architecture="autoregressive"))
    labels = model.labels(torch.tensor([[7, 8, 0, 0], [9, 0, 0, 0]]))
    assert labels.tolist() == [[7, 8, 2, -100, -100], [9, 2, -100, -100, -100]]


def test_trainer_flag_sentence_cases_the_ar_baselines_prompts_too(data_dir, tmp_path):
    from codefusion.sampler import load_model

    model = load_model(train_tiny(data_dir, tmp_path / "run", "bash", 2, "--architecture", "autoregressive",
                                  "--sentence-case-prompts"))
    assert model.config.architecture == "autoregressive" and model.config.sentence_case_prompts is True
    assert torch.equal(model.tokenize_prompts(["find x"])[0], model.tokenize_prompts(["Find x"])[0])
    beams = [model.generate_candidates([p], k=2, decoding="beam")[0] for p in ("find x", "Find x")]
    assert [c.text for c in beams[0]] == [c.text for c in beams[1]]


def test_ar_checkpoint_cannot_be_streamed_as_a_diffusion_model(tiny_ar):
    from codefusion.sampler import generate, load_model

    with pytest.raises(CodeFusionError, match="autoregressive"):
        generate(load_model(tiny_ar), "Color cells above 5", k=1, steps=2)


def test_evaluate_cli_scores_the_ar_baseline(tiny_ar, data_dir, tmp_path):
    from codefusion.evaluate import main

    out = tmp_path / "ar.json"
    assert main(["--lang", "cf", "--split", "val", "--data-dir", str(data_dir), "--checkpoint", str(tiny_ar),
                 "--limit", "4", "--decoding", "sample", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["system"].startswith("autoregressive T5 baseline (sample)")
    assert all(len(t["candidates"]) == 5 for t in report["tasks"])
    assert main(["--lang", "cf", "--split", "val", "--data-dir", str(data_dir), "--checkpoint", str(tiny_ar),
                 "--limit", "2", "--curve", str(tmp_path / "c.html"), "--out", str(out)]) == 2
    voted = tmp_path / "vote.json"   # voting: the report says so and keeps each candidate's vote count
    assert main(["--lang", "cf", "--split", "val", "--data-dir", str(data_dir), "--checkpoint", str(tiny_ar),
                 "--limit", "4", "--decoding", "sample", "--k", "1", "3", "--draws", "8", "--rank", "vote",
                 "--out", str(voted)]) == 0
    report = json.loads(voted.read_text())
    assert "vote over 8 draws" in report["system"] and report["config"]["rank"] == "vote"
    for task in report["tasks"]:
        votes = [c["votes"] for c in task["candidates"]]
        assert 1 <= len(votes) <= 3 and sum(votes) <= 8 and votes == sorted(votes, reverse=True)
    first = tmp_path / "valid.json"
    assert main(["--lang", "cf", "--split", "val", "--data-dir", str(data_dir), "--checkpoint", str(tiny_ar),
                 "--limit", "4", "--decoding", "sample", "--valid-first", "--out", str(first)]) == 0
    report = json.loads(first.read_text())
    assert report["system"].startswith("autoregressive T5 baseline (sample, parsing first)")
    assert report["config"]["valid_first"] is True
    for task in report["tasks"]:
        ok = [is_valid("cf", c["text"]) for c in task["candidates"]]
        assert ok == sorted(ok, reverse=True)


def test_no_decoder_ablation_trains_and_samples_like_diffusion_lm(data_dir, tmp_path):
    from codefusion.sampler import _Run, load_model

    torch.manual_seed(0)
    model = CodeFusion(preset("tiny", "cf", vocab_size=64, decoder_layers=0))
    assert model.decoder is None and model.num_parameters_by_part()["D (decoder)"] == 0
    code = torch.randint(5, 64, (4, model.config.code_len))
    memory = torch.randn(4, 3, model.config.width)
    with torch.no_grad():  # only the values are checked here
        terms = codefusion_loss(model, code, memory, None)
    assert float(terms.decoder) == 0.0 and float(terms.total) == pytest.approx(float(terms.denoise + terms.ce))

    out = train_tiny(data_dir, tmp_path / "nodec", "cf", 10, "--decoder-layers", "0")
    trained = load_model(out)
    assert trained.decoder is None
    with torch.inference_mode():  # as generate() runs it
        run = _Run(trained, ["Color cells above 5"], 2, 3, 0, "ddim")
        for _ in run.steps():
            # without D, H reads x̂0 directly; tied to L, its argmax is (nearly) the nearest embedding: rounding
            agree = (run.logits.argmax(-1) == trained.embedding.nearest(run.x0_hat)).float().mean()
            assert agree > 0.9
        assert len(run.decode(with_rounding=True)) == 2


def test_pretraining_task_mix_is_a_flag(data_dir, tmp_path, monkeypatch):
    from codefusion import trainer as train_module

    seen = []
    real = train_module.batch_loss

    def spy(*args, **kw):
        if len(args) == 6:  # training steps pass the unsupervised-generation share; validation does not
            seen.append(args[5])
        return real(*args, **kw)

    monkeypatch.setattr(train_module, "batch_loss", spy)
    train_tiny(data_dir, tmp_path / "cpd_only", "cf", 4, "--pretrain-tasks", "cpd", "--stage", "pretrain")
    assert seen == [0.0] * 4
    seen.clear()
    train_tiny(data_dir, tmp_path / "gen_only", "cf", 4, "--pretrain-tasks", "generation", "--stage", "pretrain")
    assert seen == [1.0] * 4
    log = [json.loads(line) for line in (tmp_path / "gen_only" / "log.jsonl").read_text().splitlines()]
    assert log[0]["event"] == "start"


def test_tied_head_scores_against_the_embedding_table():
    torch.manual_seed(0)
    model = CodeFusion(preset("tiny", "cf", vocab_size=64)).eval()
    assert model.config.tie_head
    table = model.embedding.table()
    logits = model.logits(table[None])  # each token's own vector scores highest for that token
    assert (logits[0].argmax(-1) == torch.arange(64)).all()
    with torch.no_grad():
        model.embedding.weight[7] *= -1
    assert not torch.allclose(model.logits(table[None]), logits), "H follows L: no separate copy of the table"
    untied = CodeFusion(preset("tiny", "cf", vocab_size=64, tie_head=False))
    assert isinstance(untied.head, torch.nn.Linear)


def test_shared_embedding_projects_the_encoders_table():
    torch.manual_seed(0)
    model = CodeFusion(preset("tiny", "cf", vocab_size=64, share_embedding=True)).eval()
    src = model.encoder.get_input_embeddings().weight
    assert not hasattr(model.embedding, "weight")
    expected = torch.nn.functional.normalize(src @ model.embedding.proj.weight.T, dim=-1) * model.config.embed_dim ** 0.5
    assert torch.allclose(model.embedding.table(), expected)
    state = model.state_dict()
    assert "embedding.proj.weight" in state and not any(k.startswith("embedding.source") for k in state)
    again = CodeFusion(model.config).eval()
    again.load_state_dict(state)
    assert torch.allclose(again.embedding.table(), model.embedding.table())


def test_bundle_packages_a_finished_run_with_its_command(data_dir, tmp_path, capsys):
    from codefusion.bundle import main as bundle_main
    from codefusion.model import CodeFusion as Model

    run = train_tiny(data_dir, tmp_path / "run", "cf", 6, "--seed", "0", "--save-every", "3")
    assert bundle_main(["--run", str(run), "--out", str(tmp_path / "ckpt")]) == 0
    files = {p.name for p in (tmp_path / "ckpt").iterdir()}
    assert {"model.safetensors", "config.json", "tokenizer.json", "training_summary.json"} <= files
    assert "state" not in files and "log.jsonl" not in files
    summary = json.loads((tmp_path / "ckpt" / "training_summary.json").read_text())
    assert summary["language"] == "cf" and summary["stage_steps"] == {"pretrain": 2, "finetune": 4}
    assert summary["cpu_capability"] == torch.backends.cpu.get_cpu_capability()   # the host's vector unit, recorded
    from codefusion.trainer import code_version
    assert summary["code_version"] == code_version()   # the commit that trained it (None outside a git checkout)
    assert "--seed 0" in summary["command"] and "--max-steps 6" in summary["command"]
    assert "--out OUT" in summary["command"] and str(tmp_path) not in summary["command"]
    assert Model.from_pretrained(tmp_path / "ckpt").config.language == "cf"
    # --sentence-case-prompts: an inference setting written into the config, weights untouched
    assert bundle_main(["--run", str(run), "--out", str(tmp_path / "sc"), "--sentence-case-prompts"]) == 0
    assert Model.from_pretrained(tmp_path / "sc").config.sentence_case_prompts is True
    assert not Model.from_pretrained(tmp_path / "ckpt").config.sentence_case_prompts
    assert (tmp_path / "sc" / "model.safetensors").read_bytes() == (tmp_path / "ckpt" / "model.safetensors").read_bytes()
    assert json.loads((tmp_path / "sc" / "training_summary.json").read_text())["bundled_with"] == "--sentence-case-prompts"
    (tmp_path / "unfinished").mkdir()
    (tmp_path / "unfinished" / "log.jsonl").write_text('{"event": "start"}\n')
    assert bundle_main(["--run", str(tmp_path / "unfinished"), "--out", str(tmp_path / "x")]) == 2
    assert "not the log of a finished run" in capsys.readouterr().err and not (tmp_path / "x").exists()


def test_code_version_names_the_commit_and_says_when_the_code_differs_from_it(tmp_path):
    """A run repeats bit for bit only with the code that drew its random numbers, so the trainer records the commit."""
    import subprocess

    from codefusion.trainer import code_version

    assert code_version(tmp_path) is None                        # not a repository
    git = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "init", "-q"], check=True)
    (tmp_path / "codefusion").mkdir()
    (tmp_path / "codefusion" / "train.py").write_text("x = 1\n")
    (tmp_path / "README.md").write_text("notes\n")
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "one"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    assert code_version(tmp_path) == head and len(head) == 40
    (tmp_path / "README.md").write_text("more notes\n")         # only the package's own files count
    assert code_version(tmp_path) == head
    (tmp_path / "codefusion" / "train.py").write_text("x = 2\n")
    assert code_version(tmp_path) == head + "+dirty"
    assert code_version(tmp_path / "codefusion") is None         # a folder inside another repository is not one
