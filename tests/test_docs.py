"""The docs say what the code does: the configuration reference is generated from config.py, README.md
and docs/ quote no run results (those live in BENCHMARKS.md), and every link, path and documented
command in them is real."""
from __future__ import annotations

import io
import re
import shlex
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
import yaml

from conftest import ROOT
from ddgan.core import config
from ddgan.core.reference import reference


def test_the_configuration_reference_is_current():
    page = (ROOT / "docs" / "configuration.md").read_text()
    assert page == reference(), "regenerate it: python -m ddgan.core.reference > docs/configuration.md"


def test_the_reference_documents_every_key_with_a_meaning():
    page = reference()
    for section in config.Config().to_dict().items():
        name, keys = section
        for key in keys:
            row = next(line for line in page.splitlines() if line.startswith(f"| `{name}.{key}` |"))
            assert not row.endswith("|  |"), f"{name}.{key} has no docstring in config.py"
    assert "| `train.d_flood` | retired" in page and "| `model.d_batchnorm` | renamed to `model.d_norm` |" in page


def test_help_points_to_the_reference():
    out = subprocess.run([sys.executable, "-m", "ddgan.train", "--help"], cwd=ROOT, capture_output=True,
                         text=True).stdout
    assert "docs/configuration.md" in out


# --------------------------------------------------------------------------------------------------
# README.md and docs/: a number is a default, a formula, a version or a link, never a run result.
# Run results (a measured fid, steps/s, seconds, megabytes, percentages, a dated evaluation) live in
# BENCHMARKS.md alone, which every bench script rebuilds; the pages link to its sections.

README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]

# Pages the no-run-results rule does not scan, and why. Every other page of docs/ is scanned.
NOT_SCANNED = {
    "reliability.md": "the record of the faults tried: each row's test settings and what that run printed, "
                      "kept verbatim with the test that produced it",
}

# Numbers in prose that are neither a config default nor a version, each with its reason.
ALLOWED = {
    "10 %": "image_folder holds out a fixed 10 % of the images as its test split (ddgan/data/datasets.py)",
}

UNITS = (r"steps/s|cycles/s|samples/s|images/s|it/s|[KMGT]i?B/s|[KMGT]i?B|ms|us|µs|s|secs?|seconds?|"
         r"mins?|minutes?|h|hours?|days?")
QUANTITY = re.compile(rf"(?<![\w.])\d[\d,]*(?:\.\d+)?\s?(?:{UNITS})(?![\w/])")
DECIMAL_QUANTITY = re.compile(rf"(?<![\w.])\d+\.\d+\s?(?:{UNITS})(?![\w/])")
PERCENT = re.compile(r"(?<![\w.])\d+(?:\.\d+)?\s?%")
RATIO = re.compile(r"(?<![\w.])\d+(?:\.\d+)?x(?!\w)")
DATE = re.compile(r"(?<!\d)(?:19|20)\d\d-[01]\d-[0-3]\d(?!\d)")
NUMBER = re.compile(r"(?<![\w.])\d+(?:\.\d+)+")
METRIC = re.compile(r"\b(?:fid_classifier|inception_fid|Inception FID|FID|precision|recall|accuracy|test error)"
                    r"\s*(?:of|=|:|was|is|at|reached)?\s*\d")
VERSION_CONTEXT = re.compile(r"(?:torch|PyTorch|torchvision|Python|CUDA|NCCL|version|release|==|>=|<=|<|>)\s*$")


def _blank(match: re.Match) -> str:
    """A removed span, keeping its newlines so that line numbers still point into the page."""
    return re.sub(r"[^\n]", " ", match.group(0))


def _without_code(text: str) -> str:
    return re.sub(r"(?ms)^(```|~~~).*?^\1[^\n]*$", _blank, text)


def prose(text: str) -> tuple[str, str]:
    """(the prose: no fenced code, inline code, link targets, URLs or HTML comments; the inline code)."""
    text = _without_code(re.sub(r"(?s)<!--.*?-->", _blank, text))
    code = " ".join(re.findall(r"`([^`\n]+)`", text))
    text = re.sub(r"`[^`\n]+`", _blank, text)
    text = re.sub(r"\]\([^)\s]*\)", lambda m: "]" + _blank(m)[1:], text)
    return re.sub(r"https?://\S+", _blank, text), code


def allowed_numbers() -> set[float]:
    """Every number of the config's defaults and of the default job (configs/default.yaml)."""
    found: set[float] = set()

    def walk(value) -> None:
        if isinstance(value, bool):
            return
        if isinstance(value, (int, float)):
            found.add(float(value))
        elif isinstance(value, dict):
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)

    walk(config.Config().to_dict())
    walk(yaml.safe_load((ROOT / "configs" / "default.yaml").read_text()))
    return found


def run_results(text: str, defaults: set[float] | None = None) -> list[str]:
    """The numbers in ``text`` (markdown) that look like run results, as 'line N: token'."""
    defaults = allowed_numbers() if defaults is None else defaults
    body, code = prose(text)
    found = []

    def line(pos: int) -> int:
        return body.count("\n", 0, pos) + 1

    def flag(match: re.Match, why: str) -> None:
        token = match.group(0).strip()
        if token not in ALLOWED:
            found.append(f"line {line(match.start())}: {token!r} ({why})")

    for m in DATE.finditer(body):
        flag(m, "a date")
    for m in QUANTITY.finditer(body):
        flag(m, "a measured quantity")
    for m in PERCENT.finditer(body):
        flag(m, "a percentage")
    for m in RATIO.finditer(body):
        flag(m, "a ratio")
    for m in METRIC.finditer(body):
        flag(m, "a metric's value")
    for m in NUMBER.finditer(body):
        token = m.group(0)
        if token.count(".") > 1 or VERSION_CONTEXT.search(body[max(0, m.start() - 25):m.start()]):
            continue                                    # a version: 0.3.0, torch>=2.3, Python 3.10
        if float(token) in defaults or any(token in a for a in ALLOWED):
            continue
        flag(m, "a decimal that is no default")
    found += [f"inline code: {m.group(0)!r} (a measured quantity)" for m in DECIMAL_QUANTITY.finditer(code)]
    return sorted(set(found))


def scanned_pages() -> list[Path]:
    return [p for p in PAGES if p.name not in NOT_SCANNED or p == README]


@pytest.mark.parametrize("page", scanned_pages(), ids=lambda p: p.name)
def test_no_run_results_outside_benchmarks(page):
    found = run_results(page.read_text())
    assert not found, (f"{page.relative_to(ROOT)} quotes run results; link to the BENCHMARKS.md section "
                       f"instead (or, for a default, formula or constant, see ALLOWED):\n" + "\n".join(found))


def test_every_page_of_docs_is_scanned_or_says_why_not():
    assert set(NOT_SCANNED) <= {p.name for p in PAGES}, "NOT_SCANNED names a page that no longer exists"
    assert "README.md" not in NOT_SCANNED and "BENCHMARKS.md" not in {p.name for p in PAGES}


# What the README held before the docs moved into docs/ (issue 37): each line is a run result.
OLD_README_RESULTS = [
    "launch/test.sh    # set up .venv, then run the test suite (7-11 min on 2 cores)",
    "3 to 6 minutes on 2 cores (5.6 beside a running benchmark)",
    ("scores it: on 2026-11-27 the default job generated all 10 digits (8 of them confidently, every class "
     "between 5.5 % and 13.5 %"),
    "of 10,000 samples), fid_classifier 33.1, precision 0.62, recall 0.60",
    "Wave 1's default (batchnorm Ds) made only 8s and 9s (2 classes, 358).",
    "and the slow marks below, 390 s after them (clean clones, 2 cores",
    "(the digits cells trained in 226-241 s against 187-208 s with the generator objective",
    "| discriminator objective | 10 / 8 | 30.0 | 2.93 |",
    "`none` 2.88 ± 0.01 %, `uniform` 2.80 ± 0.03 %, `infogain` 2.90 ± 0.08 %.",
    "2.42 MB per step in all against 1.61 MB, at 0.93x feedback's steps/s.",
    "shared CPU cores the pipeline ran K = 2 at 1.03x the shared layout's steps/s",
    "shifts): digits 97.5 % (40 epochs, ~10 s), MNIST 99.2 % (5 epochs, ~90 s)",
    "132-138 KB per node over the preset's 1000 cycles, which took 4 minutes on 2 shared CPU cores,",
    "| f2u_balanced | 83.6 | 76.5 | 80.9 | 80.6 | 76.0 | 77.5 | 83.3 |",
    "the largest suspicion was 0.21 of the 0.5 threshold",
]

NOT_RUN_RESULTS = [
    "`setup.cfg` declares `torch>=2.3,<3` and `torchvision>=0.18,<1`; Python 3.10 or newer.",
    "Version 0.3.0 renamed the key.",
    "`train.g_ema` decays at 0.999 and `algo.lambda_lr` is 0.01; `defence.threshold` is 0.5.",
    "Each sum is off by at most K x 2^-33; a value must satisfy |v| < 2^24.",
    "image_folder holds out a fixed 10 % of the images.",
    "See [the table](../BENCHMARKS.md#robustness-one-dishonest-client-mnist-1500-steps).",
    "```bash\nlaunch/run.sh train.steps=100   # about 2.5 min\n```",
]


@pytest.mark.parametrize("line", OLD_README_RESULTS)
def test_the_rule_catches_the_run_results_the_old_readme_held(line):
    assert run_results(line), line


@pytest.mark.parametrize("line", NOT_RUN_RESULTS)
def test_the_rule_lets_defaults_formulas_versions_and_links_through(line):
    assert not run_results(line), run_results(line)


def test_every_allowed_number_is_still_used():
    text = "\n".join(prose(p.read_text())[0] for p in scanned_pages())
    unused = [token for token in ALLOWED if token not in text]
    assert not unused, f"ALLOWED entries no page uses any more: {unused}"


# --------------------------------------------------------------------------------------------------
# The README is a user's guide, and every link, path and command in the docs is real.

def test_the_readme_is_at_most_200_lines_and_maps_every_docs_page():
    text = README.read_text()
    assert len(text.splitlines()) <= 200, f"README.md has {len(text.splitlines())} lines; move detail into docs/"
    for page in sorted((ROOT / "docs").glob("*.md")):
        assert f"](docs/{page.name})" in text, f"README.md's map of docs/ lacks {page.name}"


def slug(heading: str) -> str:
    """GitHub's anchor for a markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for m in re.finditer(r"(?m)^#{1,6}\s+(.+?)\s*#*\s*$", _without_code(page.read_text())):
        base = slug(m.group(1))
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_relative_link_and_anchor_resolves(page):
    text = _without_code(page.read_text())
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue                                    # https:, mailto:
        path, _, anchor = target.partition("#")
        where = (page.parent / path).resolve() if path else page
        if not where.exists():
            broken.append(f"{target}: no such file")
        elif anchor and where.suffix == ".md" and anchor not in anchors(where):
            broken.append(f"{target}: no heading with that anchor in {where.name}")
    assert not broken, f"{page.relative_to(ROOT)}: " + "; ".join(broken)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_path_the_docs_name_exists(page):
    paths = re.findall(r"`((?:ddgan|bench|launch|slurm|configs|tests|docs|\.ci)/[\w./-]*)`", page.read_text())
    missing = sorted({p for p in paths if not (ROOT / p).exists()})
    assert not missing, f"{page.relative_to(ROOT)} names paths that do not exist: {missing}"


def commands(page: Path) -> list[str]:
    """The command lines of a page's bash code blocks: continuations joined, comments dropped."""
    lines = []
    for block in re.findall(r"(?ms)^```bash\n(.*?)^```", page.read_text()):
        for line in re.sub(r"\\\n\s*", " ", block).splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line and not line.startswith("#"):
                lines.append(line)
    return lines


def _layout(*argv: str) -> tuple[int, str]:
    """``python -m ddgan.layout ARGV``, in this process: (exit code, stdout + stderr)."""
    from ddgan.layout import main

    out = io.StringIO()
    with redirect_stdout(out), redirect_stderr(out):
        code = main(list(argv))
    return code, out.getvalue()


def _check_command(line: str) -> str | None:
    """What is wrong with one documented command line (None: nothing, or not a ddgan command)."""
    tokens = shlex.split(line)
    env = {}
    while tokens and re.match(r"^[A-Z_]+=", tokens[0]):
        key, _, value = tokens.pop(0).partition("=")
        env[key] = value
    if not tokens:
        return None
    overrides = [t for t in tokens if re.match(r"^[a-z_]+\.[a-z_]+=", t)]
    if tokens[0] == "sbatch":
        template = next(t for t in tokens if t.startswith("slurm/") and t.endswith(".sbatch"))
        header = (ROOT / template).read_text()
        nodes = int(re.search(r"--nodes=(\d+)", line + " " + header).group(1))
        per_node = re.search(r"DDGAN_NPROC_PER_NODE=(\d+)", line) or re.search(r"--gpus-per-node=(\d+)",
                                                                              line + " " + header)
        ranks = nodes * int(per_node.group(1))
        config_file = str(ROOT / env.get("CONFIG", "configs/default.yaml"))
        code, fit = _layout("--fit", str(ranks), "--config", config_file, *overrides)
        if code:
            return f"does not fit {ranks} ranks: {fit.strip()}"
        code, out = _layout("--config", config_file, *overrides, *fit.split())
        return None if code == 0 and int(out.split()[0]) == ranks else f"needs {out.strip()} ranks, not {ranks}"
    if tokens[0] in ("launch/cpu.sh", "launch/gpu.sh", "launch/run.sh"):
        config_file = str(ROOT / (tokens[1] if tokens[0] != "launch/run.sh" else env.get("CONFIG", "configs/default.yaml")))
        code, out = _layout("--config", config_file, *overrides)
        return None if code == 0 else out.strip()
    if "-m" not in tokens or not tokens[tokens.index("-m") + 1].startswith("ddgan."):
        return None
    module = tokens[tokens.index("-m") + 1]
    if module not in ("ddgan.train", "ddgan.layout", "ddgan.partition", "ddgan.slurm"):
        return None
    config_file = str(ROOT / tokens[tokens.index("--config") + 1]) if "--config" in tokens else None
    code, out = _layout(*(["--config", config_file] if config_file else []), *overrides)
    if code:
        return out.strip()
    if "--nproc_per_node" in tokens:
        nproc = int(tokens[tokens.index("--nproc_per_node") + 1])
        if int(out.split()[0]) != nproc:
            return f"--nproc_per_node {nproc}, but the config needs {out.split()[0]} ranks"
    return None


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_documented_command_loads_its_config_on_the_ranks_it_starts(page):
    """Each ddgan command, launcher and sbatch line in a bash block: its config and overrides load
    (`python -m ddgan.layout`), torchrun starts as many ranks as the config needs, and an sbatch
    allocation runs the config (one rank per client, or co-hosted as ``ddgan.slurm`` does)."""
    wrong = [f"{line}\n    -> {why}" for line in commands(page) if (why := _check_command(line))]
    assert not wrong, f"{page.relative_to(ROOT)}:\n" + "\n".join(wrong)


def test_the_commands_that_need_no_data_run():
    """`python -m ddgan.partition` and `python -m ddgan.layout` lines on the bundled digits run here."""
    from ddgan.layout import main as layout
    from ddgan.partition import main as partition

    ran = 0
    for page in PAGES:
        for line in commands(page):
            tokens = shlex.split(line)
            if tokens[:3] not in (["python", "-m", "ddgan.partition"], ["python", "-m", "ddgan.layout"]):
                continue
            if any(t.startswith(("data.name=", "data.root=")) for t in tokens):
                continue                                # someone's own data: checked by the test above
            argv = [str(ROOT / a) if a.startswith("configs/") else a for a in tokens[3:]]
            out = io.StringIO()
            with redirect_stdout(out), redirect_stderr(out):
                code = (partition if tokens[2] == "ddgan.partition" else layout)(argv)
            assert code == 0, f"{page.name}: {line}\n{out.getvalue()}"
            ran += 1
    assert ran >= 3
