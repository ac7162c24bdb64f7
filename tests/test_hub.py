"""The Hub paths end to end, offline, each in a fresh process whose huggingface_hub talks to a loopback stand-in of the
Hub through HF_ENDPOINT (tests/fake_hub.py); nothing is mocked inside the project. Publish a bundled checkpoint
(`python -m codefusion.bundle --push`) and load it by repo id and pinned commit from the CLI and the app; deploy the
demo as a Space (`--space`) and run the app from what the Space received; train E from a Hub encoder (`--encoder`)."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from codefusion.bundle import CARD, PUBLISHED
from conftest import ROOT, run_python
from fake_hub import FakeHub

REPO = "someone/codefusion-bash"
PROMPT = "list all files in the current directory"


def hub_cli(hub_endpoint: str, cache: Path, *args: str, code: str | None = None,
            env: dict | None = None) -> subprocess.CompletedProcess:
    """`python -m ARGS` (or `python -c CODE`) with the Hub at hub_endpoint and its cache in `cache`."""
    hub_env = {"HF_ENDPOINT": hub_endpoint, "HF_HUB_CACHE": str(cache), "HF_TOKEN": "hf_loopback",
               "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1", "HF_HUB_OFFLINE": "0",
               "HF_HUB_DISABLE_XET": "1"}
    return run_python(*(["-c", code] if code else ["-m", *args]), env={**(env or {}), **hub_env})


@pytest.fixture(scope="module")
def bundled(tiny_bash_checkpoint, data_dir, tmp_path_factory) -> Path:
    """A tiny run bundled as the project bundles its checkpoints (16-bit weights), with a real (3-task) test report."""
    import torch

    from codefusion import bundle, evaluate
    from codefusion.model import CodeFusion

    out = tmp_path_factory.mktemp("hub") / "bash"
    assert bundle.main(["--run", str(tiny_bash_checkpoint), "--out", str(out)]) == 0
    CodeFusion.from_pretrained(out).save_pretrained(out, dtype=torch.float16)   # as --save-fp16 stores them
    assert evaluate.main(["--lang", "bash", "--split", "test", "--data-dir", str(data_dir), "--checkpoint", str(out),
                          "--limit", "3", "--steps", "2", "--out", str(out / "eval_test.json")]) == 0
    return out


def publish(hub: FakeHub, folder: Path, cache: Path) -> str:
    r = hub_cli(hub.endpoint, cache, "codefusion.bundle", "--push", str(folder), "--repo-id", REPO)
    assert r.returncode == 0, r.stderr
    commit = r.stdout.split("at commit ")[1].split()[0]
    assert commit == hub.repos[REPO].refs["main"]
    assert f"CODEFUSION_MODEL_BASH={REPO} CODEFUSION_REVISION_BASH={commit}" in r.stdout
    return commit


@pytest.fixture(scope="module")
def hub(bundled, tmp_path_factory):
    """A Hub holding REPO with two commits: `first`, the bundle as published, and `latest`, which changes its config
    (so that loading `first` by its pinned commit is seen to serve first's files). Yields (hub, first, latest)."""
    changed = tmp_path_factory.mktemp("changed")
    shutil.copytree(bundled, changed, dirs_exist_ok=True)
    config = json.loads((changed / "config.json").read_text())
    (changed / "config.json").write_text(json.dumps({**config, "sentence_case_prompts": True}))
    cache = tmp_path_factory.mktemp("publish-cache")
    with FakeHub() as fake:
        first = publish(fake, bundled, cache)
        latest = publish(fake, changed, cache)
        assert len({first, latest}) == 2
        yield fake, first, latest


def test_publish_uploads_the_bundle_as_it_is_with_a_model_card(bundled, hub):
    fake, first, _ = hub
    tree = fake.repos[REPO].commits[first]
    local = {f: (bundled / f).read_bytes() for f in PUBLISHED if (bundled / f).is_file()}
    assert {"model.safetensors", "config.json", "tokenizer.json", "training_summary.json", "eval_test.json"} <= set(local)
    assert {f: tree[f] for f in local} == local   # byte for byte: 16-bit weights stay 16-bit, the reports go along
    assert fake.repos[REPO].lfs[first] == {"model.safetensors"}   # the weights through the LFS API, as the Hub wants
    card = tree[CARD].decode()
    meta = yaml.safe_load(card.split("---\n")[1])
    assert meta["library_name"] == "codefusion" and "bash" in meta["tags"]
    assert f'CodeFusion.from_pretrained("{REPO}", revision="COMMIT")' in card
    report = json.loads(local["eval_test.json"])
    assert "Measured on the test split (first 3 tasks, 2 steps, sampling seed 0): top-1/3/5 template match" in card
    assert f"{report['summary']['top_k']['5']:.1f}%" in card
    assert "\n- training: " in card   # one run


def test_model_card_of_a_chain_says_its_steps_are_the_last_runs(bundled, tmp_path):
    from codefusion.bundle import SUMMARY, model_card

    chain = shutil.copytree(bundled, tmp_path / "chain")
    summary = json.loads((chain / SUMMARY).read_text())
    run = "python -m codefusion.train --lang bash --out RUN1 && python -m codefusion.bundle --run RUN1 --out CKPT1"
    (chain / SUMMARY).write_text(json.dumps({**summary, "command": f"{run} && {run} && python -m codefusion.train "
                                                                   "--init CKPT1 --out OUT"}))
    card = model_card(chain, REPO)
    assert "\n- its last of 3 training runs (each from the one before): " in card and "\n- training: " not in card


@pytest.mark.parametrize("name, damage, message", [
    ("model.safetensors", lambda b: b[:1000], "not a readable safetensors file"),
    ("eval_test.json", lambda b: b[:50], "cannot read evaluation report .*eval_test.json"),
    ("eval_test.json", lambda b: json.dumps({**json.loads(b), "summary": {}}).encode(), "is not an evaluation report"),
], ids=["truncated weights", "report not JSON", "report without its summary"])
def test_publish_refuses_a_broken_checkpoint_before_contacting_the_hub(bundled, tmp_path, name, damage, message):
    from codefusion.bundle import publish
    from codefusion.errors import CodeFusionError

    broken = tmp_path / "broken"
    broken.mkdir()
    for f in bundled.iterdir():
        (broken / f.name).write_bytes(damage(f.read_bytes()) if f.name == name else f.read_bytes())
    with pytest.raises(CodeFusionError, match=message):
        publish(broken, REPO)   # no HF_ENDPOINT here: any request would go to the real Hub (and fail offline)


def test_publish_cli_sends_nothing_for_a_broken_checkpoint_and_says_when_the_hub_is_unreachable(bundled, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in ("config.json", "tokenizer.json"):
        (broken / f).write_bytes((bundled / f).read_bytes())
    with FakeHub() as fake:
        r = hub_cli(fake.endpoint, tmp_path / "cache", "codefusion.bundle", "--push", str(broken), "--repo-id", REPO)
        assert r.returncode == 2 and "has no model.safetensors" in r.stderr, r.stderr
        assert fake.requests == [] and "Traceback" not in r.stderr
    r = hub_cli("http://127.0.0.1:9", tmp_path / "cache", "codefusion.bundle", "--push", str(bundled), "--repo-id", REPO)
    assert r.returncode == 2 and f"could not publish {bundled} to {REPO}: ConnectError" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


def test_a_published_model_generates_by_repo_id_exactly_as_the_folder_does(bundled, hub, tmp_path):
    fake, first, _ = hub
    gen = ["codefusion.generate", PROMPT, "--k", "3", "--steps", "4", "--seed", "5", "--json"]
    fake.requests.clear()
    r = hub_cli(fake.endpoint, tmp_path / "cache", *gen, "--checkpoint", REPO, "--revision", first)
    assert r.returncode == 0, r.stderr
    fetched, requests = fake.downloads(), list(fake.requests)
    fake.gated = True   # and the repo gated: it lists files but serves none to this token (on an empty cache)
    try:
        other = hub_cli(fake.endpoint, tmp_path / "empty-cache", code=(
            "from codefusion.model import CodeFusion\nfrom codefusion.errors import CodeFusionError\n"
            f"for ref, rev in [('someone/missing', None), ('{REPO}', 'no-such-branch'), ('{REPO}', '{first}')]:\n"
            "    try:\n        CodeFusion.from_pretrained(ref, revision=rev)\n"
            "    except CodeFusionError as e:\n        print('refused:', str(e).replace(chr(10), ' '))\n"
            # the mixin's push_to_hub, for a model in memory, as the README says: full precision, no reports
            f"CodeFusion.from_pretrained({str(bundled)!r}).push_to_hub('someone/in-memory')\n"))
    finally:
        fake.gated = False
    local = hub_cli("http://127.0.0.1:9", tmp_path / "unused", *gen, "--checkpoint", str(bundled))
    assert local.returncode == 0, local.stderr
    assert json.loads(r.stdout)["candidates"] == json.loads(local.stdout)["candidates"]
    # only the safe file types were fetched, each once, all of them from the pinned commit
    assert sorted(fetched) == sorted(f for f in PUBLISHED + (CARD,) if (bundled / f).is_file() or f == CARD)
    assert all(f"/resolve/{first}/" in p for m, p in requests if "/resolve/" in p)
    assert other.returncode == 0, other.stderr
    lines = other.stdout.splitlines()
    assert lines[0].startswith("refused: could not download checkpoint someone/missing (revision main)")
    assert lines[1].startswith(f"refused: could not download checkpoint {REPO} (revision no-such-branch)")
    assert lines[2].startswith(f"refused: could not download checkpoint {REPO} (revision {first})")
    pushed = fake.repos["someone/in-memory"].commits[fake.repos["someone/in-memory"].refs["main"]]
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= set(pushed) and "eval_test.json" not in pushed
    assert len(pushed["model.safetensors"]) > 1.9 * (bundled / "model.safetensors").stat().st_size   # float32


def test_the_app_serves_a_pinned_hub_model_with_its_measured_quality_and_restarts_from_the_cache(hub, tmp_path):
    fake, first, _ = hub
    app_code = (
        "import app\n"
        "model = app.REGISTRY.get('bash')\n"
        "print(app.REGISTRY.describe('bash').replace('\\n', ' '))\n"
        "frames = list(app.sample_frames('bash', 'list files', 2, 3, 0, 'ddim'))\n"
        "print('frames', len(frames), frames[-1].final, model.config.sentence_case_prompts)\n")
    env = {"CODEFUSION_MODEL_BASH": REPO, "CODEFUSION_REVISION_BASH": first, "CODEFUSION_LANGUAGE": "bash"}
    r = hub_cli(fake.endpoint, tmp_path / "cache", code=app_code, env=env)
    assert r.returncode == 0, r.stderr
    assert REPO in r.stdout
    assert "Measured on the test split (first 3 tasks, 2 steps, sampling seed 0)" in r.stdout
    assert "frames 3 True False" in r.stdout   # first's config, not latest's
    # The Hub is gone (a restart during an outage): the pinned commit loads from the cache, quality line included.
    again = hub_cli("http://127.0.0.1:9", tmp_path / "cache", code=app_code, env=env)
    assert again.returncode == 0, again.stderr
    assert r.stdout.splitlines()[-2:] == again.stdout.splitlines()[-2:]


def test_space_deploy_uploads_what_the_demo_runs_from_and_the_space_runs_it(tmp_path):
    """`python -m codefusion.bundle --space`: the Space gets the app, the package, the bundled checkpoints (weights
    through LFS) and the README with its front matter, nothing else; that tree alone, copied out, serves all three
    languages (it has no tests, results or data beside it, as on Spaces)."""
    from codefusion.bundle import space_files, space_readme

    with FakeHub() as fake:
        r = hub_cli(fake.endpoint, tmp_path / "cache", "codefusion.bundle", "--space", "--repo-id", "someone/demo",
                    "--source-url", "https://git.example/cf/blob/main/")
        assert r.returncode == 0, r.stderr
        commit = r.stdout.split("at commit ")[1].split()[0]
        assert f"-> {fake.endpoint}/spaces/someone/demo at commit" in r.stdout
        tree, lfs = fake.tree("spaces/someone/demo"), fake.repos["spaces/someone/demo"].lfs[commit]
    assert set(tree) == set(space_files(ROOT)) | {".gitattributes"}
    assert {f for f in tree if f.endswith((".safetensors", ".png"))} == lfs
    assert not any(f.startswith(("results/", "tests/", ".ci/", ".venv", "runs/")) for f in tree)
    assert all(tree[f] == (ROOT / f).read_bytes() for f in tree if f not in (".gitattributes", "README.md"))
    readme = tree["README.md"].decode()
    # The README's links into results/ would be dead on the Space: they point to --source-url.
    assert readme == space_readme((ROOT / "README.md").read_text(encoding="utf-8"), tree, "https://git.example/cf/blob/main")
    assert "](results/" not in readme and "](https://git.example/cf/blob/main/results/README.md" in readme
    meta = yaml.safe_load(readme.split("---\n")[1])
    assert meta["sdk"] == "gradio" and meta["app_file"] == "app.py"
    files, megabytes = re.search(r"uploads what the demo runs from, (\d+) files and (\d+) MB", readme).groups()
    assert (int(files), int(megabytes)) == (len(tree) - 1, round(sum(map(len, tree.values())) / 1e6)), "README"
    space = tmp_path / "space"
    for f, data in tree.items():
        (space / f).parent.mkdir(parents=True, exist_ok=True)
        (space / f).write_bytes(data)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CODEFUSION_")}
    env |= {"PYTHONPATH": str(space), "OMP_NUM_THREADS": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    code = ("import app, codefusion\n"
            "print(app.ROOT, app.REGISTRY.sources['cf'].ref, codefusion.__file__)\n"
            "for lang in ('cf', 'bash', 'python'):\n"
            "    frames = list(app.sample_frames(lang, app.EXAMPLES[lang][0].prompt, 2, 3, 0, 'ddim'))\n"
            "    print(lang, len(frames), frames[-1].final)\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300, cwd=space)
    assert run.returncode == 0, run.stderr[-3000:]
    lines = run.stdout.splitlines()
    assert lines[0] == f"{space} {space / 'checkpoints' / 'cf'} {space / 'codefusion' / '__init__.py'}"
    assert lines[1:4] == [f"{lang} 3 True" for lang in ("cf", "bash", "python")]


def test_space_readme_points_links_to_files_the_space_lacks_at_the_source_or_unlinks_them():
    from codefusion.bundle import space_readme

    text = ("See [the results](results/README.md#bash-first-500) and [the app](app.py), ![shot](assets/a.png), "
            "[an anchor](#results), [the paper](https://arxiv.org/abs/2310.17680) and [tests](./tests/test_hub.py).\n")
    held = {"app.py", "assets/a.png"}
    assert space_readme(text, held) == ("See the results and [the app](app.py), ![shot](assets/a.png), [an anchor](#results), "
                                        "[the paper](https://arxiv.org/abs/2310.17680) and tests.\n")
    assert space_readme(text, held, "https://github.com/me/cf/blob/main/") == (
        "See [the results](https://github.com/me/cf/blob/main/results/README.md#bash-first-500) and [the app](app.py), "
        "![shot](assets/a.png), [an anchor](#results), [the paper](https://arxiv.org/abs/2310.17680) and "
        "[tests](https://github.com/me/cf/blob/main/tests/test_hub.py).\n")
    # The project's own README: every relative link left on the Space's page is to a file the Space holds.
    from codefusion.bundle import space_files

    held = space_files(ROOT)
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    shown = space_readme(readme, held)
    assert all(t.split("#")[0] in held for t in re.findall(r"\]\(([^)#:][^):]*)\)", shown))
    quoted = int(re.search(r"its (\d+) links to `results/README.md`", readme).group(1))   # the README's own count
    assert quoted == len(re.findall(r"\]\(results/README\.md[#)]", readme))


@pytest.mark.parametrize("args", [["--push", "checkpoints/cf", "--repo-id", "a/b"], ["--run", "r", "--out", "o"]],
                         ids=["with --push", "when bundling"])
def test_source_url_without_space_is_refused_not_ignored(args, capsys):
    from codefusion.bundle import main

    with pytest.raises(SystemExit) as e:
        main([*args, "--source-url", "https://github.com/me/cf/blob/main"])
    assert e.value.code == 2 and "--source-url goes with --space" in capsys.readouterr().err


def test_space_deploy_refuses_a_folder_it_cannot_serve_before_contacting_the_hub(tmp_path):
    from codefusion.bundle import deploy_space
    from codefusion.errors import CodeFusionError

    with pytest.raises(CodeFusionError, match="is not the project's folder"):
        deploy_space(tmp_path, "someone/demo")
    (tmp_path / "app.py").write_text("print('hi')\n")
    (tmp_path / "README.md").write_text("---\ntitle: x\nsdk: gradio\napp_file: app.py\n---\n# x\n")
    with pytest.raises(CodeFusionError, match="no bundled checkpoints"):
        deploy_space(tmp_path, "someone/demo")


def test_training_starts_e_from_a_hub_encoder_pinned_by_revision(data_dir, tmp_path):
    """`--encoder Salesforce/codet5-small --encoder-revision SHA` where the Hub is reachable: transformers fetches the
    T5 encoder and its tokenizer by repo id at that commit, and E starts from those weights. Here the repo holds a
    tiny T5 encoder of CodeT5's layout; a repo that does not exist ends in one error line."""
    import torch
    from transformers import T5EncoderModel

    from codefusion.config import preset
    from codefusion.model import CodeFusion, build_encoder
    from codefusion.tokenization import train_bpe_tokenizer
    from fake_hub import Repo

    snap = tmp_path / "codet5-like"
    tok = train_bpe_tokenizer(["find . -name x", "list all files", "ls -la"] * 50, vocab_size=300)
    torch.manual_seed(0)
    build_encoder(preset("tiny", "bash", vocab_size=len(tok), encoder_width=48, encoder_heads=2)).save_pretrained(snap)
    tok.save_pretrained(snap)
    train = ["codefusion.train", "--lang", "bash", "--preset", "tiny", "--max-steps", "2", "--data-dir", str(data_dir),
             "--quiet", "--snippet-limit", "500", "--eval-every", "1000"]
    with FakeHub() as fake:
        repo = fake.repos["Salesforce/codet5-small"] = Repo()
        sha = repo.commit({p.name: p.read_bytes() for p in snap.iterdir()}, lfs={"model.safetensors"})
        repo.commit({"README.md": b"a later commit\n"})   # main moves on; the pinned revision must not
        r = hub_cli(fake.endpoint, tmp_path / "cache", *train, "--out", str(tmp_path / "run"),
                    "--encoder", "Salesforce/codet5-small", "--encoder-revision", sha)
        missing = hub_cli(fake.endpoint, tmp_path / "cache", *train, "--out", str(tmp_path / "none"),
                          "--encoder", "someone/no-such-encoder")
    assert r.returncode == 0, r.stderr[-3000:]
    assert {p for m, p in fake.requests if "/resolve/" in p and "codet5" in p} and all(
        f"/resolve/{sha}/" in p for m, p in fake.requests if "/resolve/" in p and "codet5" in p)
    model = CodeFusion.from_pretrained(tmp_path / "run")
    assert model.config.encoder_name == "Salesforce/codet5-small" and model.config.encoder_width == 48
    w0 = T5EncoderModel.from_pretrained(snap).encoder.block[0].layer[0].SelfAttention.q.weight
    assert (w0 - model.encoder.encoder.block[0].layer[0].SelfAttention.q.weight).abs().max() < 0.05
    assert missing.returncode == 2 and "could not load a tokenizer from someone/no-such-encoder" in missing.stderr
    assert "Traceback" not in missing.stderr
