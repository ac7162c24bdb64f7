"""The READMEs as evidence: every file they name exists, and the Results summary's figures are those of the
JSON reports behind each row (so a table cannot drift from the reports, nor a row stand without one)."""

import json
import re
import shlex
import statistics
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ["README.md", "results/README.md"]
# A repository path in a code span: `results/vote/bash_vote40_val.json`, `assets/edit_distance_{cf,bash}.png`.
CODE_PATH = re.compile(r"`((?:results|checkpoints|assets|tests|codefusion|\.ci)/[^`\s]*)`")
LINK = re.compile(r"\]\(([^)#\s]+)\)")


def read(doc: str) -> str:
    return (ROOT / doc).read_text(encoding="utf-8")


def readme_section(heading: str) -> str:
    """The README's text under `## heading`, up to the next section."""
    return read("README.md").split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]


def table_rows(text: str) -> list[list[str]]:
    """The stripped cells of each markdown table row in text (header rows included, separator rows not)."""
    return [[c.strip() for c in line.strip().strip("|").split("|")] for line in text.splitlines()
            if line.startswith("| ")]


def expand_braces(path: str) -> list[str]:
    """Shell-style {a,b} alternatives, as the READMEs write families of reports."""
    m = re.search(r"\{([^{}]*)\}", path)
    if not m:
        return [path]
    return [p for alt in m.group(1).split(",") for p in expand_braces(path[:m.start()] + alt + path[m.end():])]


def named_paths(text: str) -> list[str]:
    out = []
    for m in CODE_PATH.finditer(text):
        path = m.group(1).split("::")[0].rstrip(".,;:")   # a pytest id names its file
        if "<" in path:                                     # a template such as checkpoints/<lang>/
            continue
        out += expand_braces(path)
    return out


def exists(path: str) -> bool:
    # A trailing * or a stem such as results/copy_head/cf_copy2_trainseed0_test_seed* names a family of files.
    return any(ROOT.glob(path)) or any(ROOT.glob(path.rstrip("*") + "*"))


def test_brace_expansion_and_path_finding():
    assert expand_braces("a/{x,y}_{1,2}.json") == ["a/x_1.json", "a/x_2.json", "a/y_1.json", "a/y_2.json"]
    assert named_paths("see `results/a.json`, `tests/t.py::test_x` and `checkpoints/<lang>/`") == [
        "results/a.json", "tests/t.py"]


@pytest.mark.parametrize("doc", DOCS)
def test_every_path_a_readme_names_exists(doc):
    text = read(doc)
    paths = named_paths(text)
    assert len(paths) > 10, "the pattern no longer finds the README's paths"
    missing = sorted({p for p in paths if not exists(p)})
    assert not missing, f"{doc} names files that are not in the repo: {missing}"


@pytest.mark.parametrize("doc", DOCS)
def test_every_relative_link_in_a_readme_resolves(doc):
    base = (ROOT / doc).parent
    text = read(doc)
    links = [t for t in LINK.findall(text) if "://" not in t]
    assert links, "no relative links found"
    missing = [t for t in links if not (base / t).exists()]
    assert not missing, f"{doc} links to missing files: {missing}"


# Each row of the README's summary tables (Results) and the reports it averages: every report of a row counts once,
# so a row over 3 training x 5 sampling seeds is the mean of 15 reports. "A / B" cells join two systems.
SUMMARY_ROWS = {
    "CF rules": {
        "CodeFusion, ours, bundled (`small`, 5.15M, CPD, copy path + fresh literals), plain: 5 draws":
            ["results/copy_head/cf_copy2_trainseed0_test_seed*.json"],
        "ours, bundled, constants grounded to the request (`--ground-literals`)":
            ["results/copy_head/cf_bundle_grounded_test_seed*.json"],
        "ours, bundled recipe, DDPM sampler, grounded, 3 training seeds":
            ["results/ddpm/cf_bundle_ddpm_grounded_test_seed*.json",
             "results/ddpm/cf_copy2_trainseed[12]_test_ddpm_grounded_seed*.json"],
        "ours, bundled recipe, DDPM, 20 draws, parsing first, grounded, 3 training seeds":
            ["results/ddpm/cf_bundle_ddpm_draws20vf_grounded_test_seed*.json",
             "results/train_seed/cf_copy_trainseed[12]_ddpm_draws20vf_grounded_test_seed*.json"],
        "ablation: copy-free recipe (bundled before; the ablations below are its variants)":
            ["results/seeds/cf_codefusion_seed*.json"],
        "ablation: no clamping (the paper's plain sampling loop)":
            ["results/cf_noclamp.json", "results/seeds/cf_noclamp_seed*.json"],
        "ablation: the paper's pre-training mix (unsupervised generation + CPD)":
            ["results/seeds/cf_pretrain_both_seed*.json"],
        "ablation: no CPD (unsupervised generation only)":
            ["results/cf_pretrain_generation.json", "results/seeds/cf_pretrain_generation_seed*.json"],
        "ablation: no decoder D (Diffusion-LM-style rounding, 3.9M)":
            ["results/cf_nodec_cpd.json", "results/seeds/cf_nodec_cpd_seed*.json"],
        "AR T5 baseline (4.6M), beam search": ["results/cf_ar_beam.json"],
        "AR T5 baseline, sampling": ["results/cf_ar_sample.json", "results/seeds/cf_ar_sample_seed*.json"],
        "AR T5 baseline with fresh literals, beam search, grounded, 3 training seeds":
            ["results/train_seed/cf_ar_aug_trainseed*_beam_grounded_test.json"],
        "AR T5 baseline with fresh literals, sampling, 20 draws, parsing first, grounded, 3 training seeds":
            ["results/train_seed/cf_ar_aug_trainseed*_sample_draws20vf_grounded_test_seed*.json"],
        "retrieval (TF-IDF)": ["results/cf_retrieval.json"],
        "retrieval, constants grounded": ["results/copy_head/cf_retrieval_grounded_test.json"],
        "retrieve and rerank (a hybrid: writes nothing): grounded retrieval's nearest 20 reordered by the bundled "
        "model, fused with TF-IDF (`--rerank checkpoints/cf --ground-literals`)":
            ["results/rerank/cf_test_codefusion_grounded.json"],
        "the same, reordered by the AR baseline with fresh literals (training seed 0)":
            ["results/rerank/cf_test_ar_grounded.json"],
    },
    "Bash": {
        "CodeFusion, ours, bundled (`small`, 5.42M trained, 12800 steps on templates, `--fast-cpu-training`, prompts "
        "also read by a frozen all-MiniLM-L6-v2, 22.7M)": ["checkpoints/bash/eval_test.json"],
        "ours, bundled, sampling seeds 0-2":
            ["checkpoints/bash/eval_test.json", "results/sentence_encoder/test500_seed[12].json"],
        "ours, bundled, vote over 40 draws (`--draws 40 --rank vote`)": ["results/sentence_encoder/test500_vote40.json"],
        "ours, bundled, all 2,522 tasks": ["results/sentence_encoder/test_all.json"],
        "ours, templates, E alone (bundled in sessions 57-58), plain / vote over 40 draws":
            (["results/template/fast_test500_seed0.json"], ["results/template/fast_test500_vote40.json"]),
        "ours, templates, E alone, sampling seeds 0-2": ["results/template/fast_test500_seed[012].json"],
        "ours, templates, E alone, all 2,522 tasks": ["results/template/fast_test_all.json"],
        "ours, templates, torch's dropout (bundled in sessions 54-56), plain / vote over 40 draws":
            (["results/template/test500_seed0.json"], ["results/template/test500_vote40.json"]),
        "ours, templates, torch's dropout, sampling seeds 0-2": ["results/template/test500_seed[012].json"],
        "ours, templates, torch's dropout, all 2,522 tasks": ["results/template/test_all.json"],
        "ours, raw commands, 22400 steps (bundled in sessions 46-53), plain / vote over 40 draws":
            (["results/steps22400/bash_test_subset500_seed0.json"], ["results/steps22400/bash_vote40_test_subset500.json"]),
        "ours, raw commands, 22400 steps, sampling seeds 0-2": ["results/steps22400/bash_test_subset500_seed*.json"],
        "ours, raw commands, 22400 steps, vote over 40 draws, sampling seeds 0-1":
            ["results/steps22400/bash_vote40_test_subset500*.json"],
        "ours, raw commands, 22400 steps, all 2,522 tasks": ["results/steps22400/bash_test_all.json"],
        "ours, raw commands, 19200 steps (the raw AR rows' budget), plain / vote over 40 draws":
            (["results/subset500/bash_plain.json"], ["results/subset500/bash_vote40.json"]),
        "ours, raw commands, 19200 steps, sampling seeds 0-2":
            ["results/subset500/bash_plain.json", "results/subset500/bash_plain_seed*.json"],
        "ours, raw commands, 19200 steps, vote over 40 draws, sampling seeds 0-1":
            ["results/subset500/bash_vote40.json", "results/subset500/bash_vote40_seed1.json"],
        "ours, raw commands, 19200 steps, all 2,522 tasks": ["results/steps19200/bash_test_all.json"],
        "AR T5 baseline on templates (4.8M, 12800 steps: the bundled model's budget), beam search / sampling":
            (["results/template/test500_ar12800_beam.json"], ["results/template/test500_ar12800_sample.json"]),
        "AR T5 baseline on templates, sampling, vote over 40 draws": ["results/template/test500_ar12800_vote40.json"],
        "AR T5 baseline on templates with the same MiniLM (session 60), beam search / sampling":
            (["results/sentence_encoder/ar_test500_beam.json"], ["results/sentence_encoder/ar_test500_sample_seed0.json"]),
        "AR T5 baseline on templates with the same MiniLM, sampling, vote over 40 draws":
            ["results/sentence_encoder/ar_test500_vote40.json"],
        "AR T5 baseline on templates with the same MiniLM, all 2,522 tasks, beam search / sampling":
            (["results/sentence_encoder/ar_test_all_beam.json"], ["results/sentence_encoder/ar_test_all_sample_seed0.json"]),
        "AR T5 baseline, raw commands (4.8M, 19200 steps), beam search": ["results/subset500/bash_ar_beam.json"],
        "AR T5 baseline, raw commands, sampling": ["results/subset500/bash_ar_sample.json"],
        "AR T5 baseline, raw commands, sampling, vote over 40 draws": ["results/subset500/bash_ar_vote40.json"],
        "AR T5 baseline, raw commands, sampling, vote over 40 draws, sampling seeds 0-2":
            ["results/subset500/bash_ar_vote40.json", "results/subset500/bash_ar_vote40_seed*.json"],
        "AR T5 baseline, raw commands, all 2,522 tasks, beam search / sampling":
            (["results/ar19200/bash_ar_beam_test_all.json"], ["results/ar19200/bash_ar_sample_test_all.json"]),
        "retrieve and rerank (a hybrid: writes nothing): retrieval's nearest 20 reordered by CodeFusion trained on "
        "templates (9600 steps: the bundled model before its last link), fused with TF-IDF (`--rerank`)":
            ["results/rerank/test500_codefusion.json"],
        "the same, reordered by the AR model trained on templates (9600 steps; `--rerank-weight 2`)":
            ["results/rerank/test500_ar.json"],
        "retrieve and rerank by the bundled model (session 61: reading with MiniLM, today's code; `--rerank checkpoints/bash`)":
            ["results/rerank/test500_codefusion_se.json"],
        "the same, reordered by the AR model with the same MiniLM (`--rerank-weight 2`)": ["results/rerank/test500_ar_se.json"],
        "AR T5 baseline, raw commands, 12800 steps (bfloat16), vote over 40 draws":
            ["results/subset500/bash_ar12800_vote40.json"],
        "retrieval (TF-IDF)": ["results/subset500/bash_retrieval.json"],
        "retrieval, all 2,522 tasks": ["results/bash_retrieval.json"],
    },
    "Bash, first 500 test tasks": {
        "CodeFusion, ours, 19200 steps (bundled in sessions 43-45; `small`, 5.35M)":
            ["results/steps19200/bash_bundle_test500.json"],
        "ours, 19200 steps, vote over 40 draws (`--draws 40 --rank vote`)": ["results/steps19200/bash_vote40_test500.json"],
        "ours, 16000 steps (bundled before), plain / vote over 40 draws":
            (["results/steps19200/bash_ck4_bundle_test500.json"], ["results/steps16000/bash_vote40_test500.json"]),
        "ours, 12800 steps (bundled before: the AR rows' budget), plain / vote over 40 draws":
            (["results/steps16000/bash_ck3_bundle_test500.json"], ["results/bf16/bash_vote40_test500.json"]),
        "ours, the same chain in float32 (bundled before), vote over 40 draws":
            ["results/vote/bash_vote40_test500.json"],
        "ours at the comparison budget (800 steps)": ["results/bash_codefusion_800.json"],
        "ablation (800): CPD only (no unsupervised generation)": ["results/bash_pretrain_cpd_800.json"],
        "ablation (800): unsupervised generation only (no CPD)": ["results/bash_pretrain_generation_800.json"],
        "ablation (800): no pre-training": ["results/bash_no_pretrain_800.json"],
        "ablation (800): no decoder D (3.9M)": ["results/bash_nodec_800.json"],
        "AR T5 baseline (4.8M, 12800 steps), beam search": ["results/steps12800/bash_ar_beam_test500.json"],
        "AR T5 baseline, sampling": ["results/steps12800/bash_ar_sample_test500.json"],
        "AR T5 baseline, sampling, vote over 40 draws": ["results/vote/bash_ar_sample_vote40_test500.json"],
        "AR T5 baseline (19200 steps, bfloat16), beam search / sampling":
            (["results/ar19200/bash_ar_beam_test500.json"], ["results/ar19200/bash_ar_sample_test500.json"]),
        "AR T5 baseline (19200 steps, bfloat16), sampling, vote over 40 draws":
            ["results/ar19200/bash_ar_sample_vote40_test500.json"],
        "AR T5 baseline (800), beam search / sampling":
            (["results/bash_ar_beam_800.json"], ["results/bash_ar_sample_800.json"]),
        "retrieval (TF-IDF)": ["results/bash_retrieval_500.json"],
    },
    "Python": {
        "CodeFusion, ours, bundled (`small`, 5.42M)": ["checkpoints/python/eval_test.json"],
        "ours at the comparison budget (800 steps)": ["results/python_codefusion_800.json"],
        "ablation (800): CPD only": ["results/python_pretrain_cpd_800.json"],
        "ablation (800): unsupervised generation only": ["results/python_pretrain_generation_800.json"],
        "ablation (800): no pre-training": ["results/python_no_pretrain_800.json"],
        "ablation (800): no decoder D (3.9M)": ["results/python_nodec_800.json"],
        "AR T5 baseline (4.8M, the bundled budget), beam search": ["results/python_ar_beam_pt0_6400.json"],
        "AR T5 baseline, sampling": ["results/python_ar_sample_pt0_6400.json"],
        "AR T5 baseline (800), beam search / sampling":
            (["results/python_ar_beam_800.json"], ["results/python_ar_sample_800.json"]),
        "retrieval (TF-IDF)": ["results/python_retrieval.json"],
    },
}


def summary_tables() -> dict[str, dict[str, list[str]]]:
    """{language heading: {row label: cells}} of the tables in the README's Results section, bold and marks dropped."""
    tables = {}
    for part in readme_section("Results").split("\n### ")[1:]:
        heading, body = part.split("\n", 1)
        rows = [[c.replace("**", "").rstrip("†‡ ").strip() for c in cells] for cells in table_rows(body)]
        tables[heading.split(" (")[0]] = {cells[0]: cells[1:] for cells in rows}
    return tables


def report_cells(globs: list[str], bleu: bool) -> list[str]:
    files = sorted({p for g in globs for p in ROOT.glob(g)})
    assert files, f"no reports match {globs}"
    summaries = [json.loads(p.read_text(encoding="utf-8"))["summary"] for p in files]
    mean = lambda get: statistics.fmean(get(s) for s in summaries)  # noqa: E731
    cells = [f"{mean(lambda s: s['top_k'][k]):.1f}" for k in ("1", "3", "5")]
    cells += [f"{mean(lambda s: s['validity']):.1f}", f"{mean(lambda s: s['diversity']['distinct_4']):.3f}"]
    return cells + ([f"{mean(lambda s: s['bleu_top1']):.1f}"] if bleu else [])


def test_readme_summary_tables_equal_the_reports_they_cite():
    tables = summary_tables()
    assert set(tables) >= set(SUMMARY_ROWS), list(tables)
    for lang, rows in SUMMARY_ROWS.items():
        bleu = lang == "Python"
        width = 6 if bleu else 5   # top-1, top-3, top-5, valid top-1 %, distinct-4 (, BLEU top-1)
        unbacked = {r for r in tables[lang] if r != "system" and "paper" not in r} - set(rows)
        assert not unbacked, f"{lang}: README rows with no reports named here: {unbacked}"
        for label, globs in rows.items():
            assert label in tables[lang], f"{lang}: no README row {label!r}"
            if isinstance(globs, tuple):   # "beam search / sampling" in one row
                parts = [report_cells(g, bleu) for g in globs]
                want = [" / ".join(cells) for cells in zip(*parts)]
            else:
                want = report_cells(globs, bleu)
            shown = tables[lang][label][:width]
            assert shown == want, f"{lang} row {label!r}: README {shown}, reports {want}"


def record_families(reports: dict[str, dict]) -> dict[str, list[str]]:
    """The sets of reports the full record averages: those that differ only in their sampling seed (`..._seedN`),
    only in their training and sampling seeds (`trainseedN`, `seedN`), a report in results/ with its seeds 1-4 in
    results/seeds/, and each summary row's reports (SUMMARY_ROWS)."""
    families: dict[str, set[str]] = {}
    for path in reports:
        families.setdefault(re.sub(r"_seed\d+(?=[_.])", "_seed*", path), set()).add(path)
        families.setdefault(re.sub(r"seed\d+(?=[_.])", "seed*", path), set()).add(path)
        top = re.fullmatch(r"results/([^/]+)\.json", path)
        if top:
            siblings = {p for p in reports if re.fullmatch(rf"results/seeds/{re.escape(top.group(1))}_seed\d+\.json", p)}
            families["+seeds " + path] = {path} | siblings
    for rows in SUMMARY_ROWS.values():
        for label, globs in rows.items():
            if isinstance(globs, list):
                families["summary " + label] = {p.relative_to(ROOT).as_posix() for g in globs for p in ROOT.glob(g)}
    return {name: sorted(paths) for name, paths in families.items()}


def test_every_top_k_row_of_the_full_record_is_a_report_or_a_mean_of_reports():
    """results/README.md has ~100 top-k rows gathered over forty sessions: each row's top-1 / top-3 / top-5 must be
    those of a JSON report in the repository, or the mean of one of record_families (a weaker check than the
    summary's named reports, but it catches a mistyped or orphaned figure)."""
    reports = {}
    for path in sorted(ROOT.glob("results/**/*.json")) + sorted(ROOT.glob("checkpoints/*/eval_test.json")):
        summary = json.loads(path.read_text(encoding="utf-8")).get("summary")
        if isinstance(summary, dict) and isinstance(summary.get("top_k"), dict) and "5" in summary["top_k"]:
            reports[path.relative_to(ROOT).as_posix()] = summary
    known = set()
    for paths in [[p] for p in reports] + list(record_families(reports).values()):
        known.add(tuple(f"{statistics.fmean(reports[p]['top_k'][k] for p in paths):.1f}" for k in ("1", "3", "5")))
    lines, rows, orphans, header = read("results/README.md").splitlines(), 0, [], None
    for line, following in zip(lines, lines[1:] + [""]):
        if line.startswith("| ") and following.startswith("|---"):
            header = [c.strip().lower() for c in line.strip().strip("|").split("|")]
        elif line.startswith("| ") and header and header[1:4] == ["top-1", "top-3", "top-5"]:
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if "paper" in cells[0] or not all(re.fullmatch(r"\d+\.\d", c) for c in cells[1:4]):
                continue   # the paper's reported rows, and section rows without figures
            rows += 1
            if tuple(cells[1:4]) not in known:
                orphans.append(f"{cells[0][:80]}: {cells[1:4]}")
    assert rows > 90, "the table parser no longer finds the record's rows"
    assert not orphans, f"results/README.md rows matching no report in the repository: {orphans}"


# The s / task column: each cell's report in results/latency/ (median seconds per task, printed to the cell's
# decimals), or for the "N.Nx plain" cells the ratio of two reports timed in one sitting.
LATENCY = {
    "CF rules": {
        "ablation: copy-free recipe (bundled before; the ablations below are its variants)": "cf_codefusion.json",
        "ablation: no decoder D (Diffusion-LM-style rounding, 3.9M)": "cf_nodec.json",
        "AR T5 baseline (4.6M), beam search": "cf_ar_beam.json",
        "AR T5 baseline, sampling": "cf_ar_sample.json",
        "retrieval (TF-IDF)": "cf_retrieval.json",
        "ours, bundled recipe, DDPM, 20 draws, parsing first, grounded, 3 training seeds":
            ("cf_codefusion_ddpm_draws20_vf_grounded_avx2.json", "cf_codefusion_avx2.json"),
        "AR T5 baseline with fresh literals, sampling, 20 draws, parsing first, grounded, 3 training seeds":
            ("cf_ar_sample_draws20_vf_grounded_avx2.json", "cf_codefusion_avx2.json"),
    },
    "Bash": {
        "CodeFusion, ours, bundled (`small`, 5.42M trained, 12800 steps on templates, `--fast-cpu-training`, prompts "
        "also read by a frozen all-MiniLM-L6-v2, 22.7M)": "bash_codefusion_sentence_encoder.json",   # session 59's host
        "retrieval (TF-IDF)": "bash_retrieval.json",
    },
    "Bash, first 500 test tasks": {   # the AR model timed is the 12800-step float32 one of this table
        "ablation (800): no decoder D (3.9M)": "bash_nodec.json",
        "AR T5 baseline (4.8M, 12800 steps), beam search": "bash_ar_beam.json",
        "AR T5 baseline, sampling": "bash_ar_sample.json",
        "AR T5 baseline, sampling, vote over 40 draws": "bash_ar_sample_vote40.json",
    },
    "Python": {
        "CodeFusion, ours, bundled (`small`, 5.42M)": "python_codefusion.json",
        "ablation (800): no decoder D (3.9M)": "python_nodec.json",
        "AR T5 baseline (4.8M, the bundled budget), beam search": "python_ar_beam.json",
        "AR T5 baseline, sampling": "python_ar_sample.json",
        "retrieval (TF-IDF)": "python_retrieval.json",
    },
}


def test_readme_latency_cells_equal_the_timing_reports():
    def median(name: str) -> float:
        return json.loads((ROOT / "results/latency" / name).read_text(encoding="utf-8"))["summary"]["latency_median_s"]

    tables = summary_tables()
    for lang, cells in LATENCY.items():
        for label, source in cells.items():
            cell = tables[lang][label][-1]
            if isinstance(source, tuple):
                assert cell.endswith("x plain"), (label, cell)
                shown, value = cell.split("x")[0], median(source[0]) / median(source[1])
            else:
                shown, value = cell, median(source)
            decimals = len(shown.split(".")[1]) if "." in shown else 0
            assert shown == f"{value:.{decimals}f}", f"{lang} row {label!r}: README {cell}, report {value:.4g}"


def test_readme_bundled_checkpoints_table_matches_their_training_summaries():
    rows = {cells[0]: cells[1:] for cells in table_rows(readme_section("Bundled checkpoints"))}
    for lang, name in (("cf", "CF rules"), ("bash", "Bash"), ("python", "Python")):
        summary = json.loads((ROOT / "checkpoints" / lang / "training_summary.json").read_text(encoding="utf-8"))
        command, _, wall, val_loss = rows[name]
        # Every flag the README gives is in the command the trainer recorded (which also spells out defaults).
        ran = set(shlex.split(summary["command"]))
        for part in re.findall(r"`([^`]+)`", command):
            flags = {w for w in shlex.split(part) if not re.fullmatch(r"[A-Z0-9_]+", w)}   # not placeholders (CKPT)
            assert flags <= ran, (name, flags - ran)
        minutes = float(re.search(r"([\d.]+) min", wall).group(1))   # the last run's wall time
        assert f"{minutes:.1f}" == f"{summary['seconds'] / 60:.1f}", (name, minutes, summary["seconds"])
        assert val_loss.split()[0] == f"{summary['val_loss'][-1]['val_loss']:.3f}", (name, val_loss)


def test_readme_targets_table_quotes_rows_of_the_tables():
    header, *rows = table_rows(readme_section("Results").split("\n### ", 1)[0])
    tables = summary_tables()
    quoted = 0
    for cells in rows:
        for heading, cell in zip(header[1:], cells[1:]):
            m = re.match(r"(\d+\.\d) / (\d+\.\d)\b", cell)
            if m:
                lang = heading.split(" (")[0]
                pairs = {(row[0], row[2]) for row in tables[lang].values()}
                assert m.groups() in pairs, f"{lang}: {cell!r} is no row's top-1 / top-5"
                quoted += 1
    assert quoted == 9, quoted


def github_anchor(heading: str) -> str:
    """The id GitHub gives a heading: lower case, punctuation dropped (hyphens and underscores kept), spaces to -."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


@pytest.mark.parametrize("doc", DOCS)
def test_every_anchor_link_in_a_readme_names_a_heading(doc):
    text = read(doc)
    headings = {github_anchor(line.lstrip("#")) for line in text.splitlines() if re.match(r"#{1,6} ", line)}
    anchors = re.findall(r"\]\(#([^)\s]+)\)", text)
    assert github_anchor("## Bash (first 500 of 2,522 test tasks, template match)".lstrip("#")) == \
        "bash-first-500-of-2522-test-tasks-template-match"
    assert not [a for a in anchors if a not in headings], f"{doc}: links to no heading"


def test_the_bundled_checkpoints_keep_to_the_issues_100_mb_and_the_readme_says_how_much():
    total = sum(f.stat().st_size for f in (ROOT / "checkpoints").rglob("*") if f.is_file())
    assert total <= 100e6, f"bundled checkpoints hold {total / 1e6:.1f} MB; the budget is 100 MB"
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert f"({round(total / 1e6)} MB together" in readme
