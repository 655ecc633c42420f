"""The README's code runs as written: every Python block, every CLI line and every example command.

`clip.mp4` in the README stands for the user's video: here it is a real clip from ../shared/media. Blocks that
need the Hugging Face Hub (pretrained backbones, pushing) are marked in the README with
`<!-- readme-test: skip ... -->` and listed in HUB_BLOCKS; any other block that does not run fails this test.
Example commands that train for minutes are slow-marked (`pytest -m slow`); the quick ones run by default.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text(encoding="utf-8")
SKIP_MARK = "<!-- readme-test: skip"
HUB_BLOCKS = 2  # assembling from Hub checkpoints, pushing to the Hub
FAST_EXAMPLES = ("examples/quickstart.py", "examples/pipeline.py", "examples/push_to_hub.py --local")


def code_blocks(text: str = README) -> list[tuple[str, str, bool]]:
    """(language, code, skipped) of every fenced block, in order; skipped = a skip marker right above it."""
    blocks = []
    for match in re.finditer(r"(?P<before>[^\n]*)\n```(?P<lang>\w*)\n(?P<code>.*?)\n```", text, re.S):
        blocks.append((match["lang"], match["code"], match["before"].strip().startswith(SKIP_MARK)))
    return blocks


def command_lines(code: str) -> list[str]:
    """Shell lines without comments, joined continuations, optional `[...]` parts dropped."""
    code = code.replace("\\\n", " ")
    lines = []
    for line in code.splitlines():
        line = re.sub(r"\s+#.*$", "", line).strip()
        line = re.sub(r"\s\[[^\]]*\]", "", line)
        if line and not line.startswith("#"):
            lines.append(line)
    return lines


def _env(tmp_path: Path) -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "COPE_DATA_DIR": str(tmp_path / "data"),
            "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}


def _run(argv: list[str], tmp_path: Path, timeout: int = 600, stdin: str = "") -> subprocess.CompletedProcess:
    done = subprocess.run(argv, cwd=tmp_path, env=_env(tmp_path), capture_output=True, text=True, timeout=timeout,
                          input=stdin)
    assert done.returncode == 0, f"{shlex.join(argv)} exited {done.returncode}:\n{done.stderr[-3000:]}"
    return done


def _as_argv(line: str, clip: Path) -> list[str]:
    """A README command as this interpreter runs it: `cope-videolm` through its launcher module, `python` and
    `accelerate launch` with this interpreter, example paths from the repository."""
    argv = [str(clip) if word == "clip.mp4" else word for word in shlex.split(line)]
    if argv[0] == "cope-videolm":
        return [sys.executable, "-m", "transformers_cope_cli", *argv[1:]]
    if argv[0] == "python":
        argv = [sys.executable, *argv[1:]]
    elif argv[:2] == ["accelerate", "launch"]:
        argv = [sys.executable, "-m", "accelerate.commands.launch", *argv[2:]]
    return [str(REPO / a) if a.startswith("examples/") else a for a in argv]


def test_readme_structure_and_skips():
    blocks = code_blocks()
    assert len(blocks) >= 8
    skipped = [code for _, code, skip in blocks if skip]
    assert len(skipped) == HUB_BLOCKS and all("/" in code and ("from_pretrained" in code or "push_cope" in code)
                                             for code in skipped), skipped


def test_install_commands_name_real_extras_and_versions():
    """The install lines use extras that pyproject declares, and the versions the README claims are the ones here."""
    extras = set(tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["optional-dependencies"])
    named = set(re.findall(r'pip install [^\n]*?-e "\.\[([\w,]+)\]"', README))
    assert named, "the README names no extra"
    for group in named:
        assert set(group.split(",")) <= extras, group
    import transformers

    claimed = re.search(r"transformers ([\d.]+) \(the version `pip` picks here\)", README)
    floor = re.search(r"and on ([\d.]+), the oldest supported", README)
    assert claimed and floor, "the README names no tested transformers versions"
    tested = [v.group(1).rsplit(".", 1)[0] for v in (claimed, floor)]  # the newest release and the oldest supported
    assert transformers.__version__.rsplit(".", 1)[0] in tested, (transformers.__version__, tested)


def test_python_blocks_run_on_a_real_clip(media_dir, tmp_path, monkeypatch):
    """The Python API, pipeline and codec blocks, in order, in one namespace (they build on each other)."""
    clip = media_dir / "city_cc0.mpg"
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    ran = 0
    for lang, code, skipped in code_blocks():
        if lang != "python" or skipped:
            continue
        source = code.replace('"clip.mp4"', repr(str(clip)))
        exec(compile(source, f"README.md python block {ran}", "exec"), namespace)  # noqa: S102 - the README's code
        ran += 1
    assert ran >= 3
    assert namespace["prims"].frame_types.startswith("I")


def test_cli_lines_run(media_dir, tmp_path):
    clip = media_dir / "vid_h264.mp4"
    cli = [line for lang, code, skip in code_blocks() if lang == "bash" and not skip
           for line in command_lines(code) if line.startswith("cope-videolm ")]
    assert {line.split()[1] for line in cli} >= {"demo", "ask", "inspect"}
    for line in cli:
        # `chat` reads its questions from stdin, one per line
        stdin = "How does the camera move?\n" if line.split()[1] == "chat" else ""
        done = _run(_as_argv(line, clip), tmp_path, stdin=stdin)
        assert done.stdout.strip(), line
    assert (tmp_path / "step3.png").is_file()


def _example_lines() -> list[str]:
    return [line for lang, code, skip in code_blocks() if lang == "bash" and not skip
            for line in command_lines(code) if line.startswith(("python examples/", "accelerate launch"))]


def test_every_example_is_in_the_readme():
    listed = " ".join(_example_lines())
    for script in sorted((REPO / "examples").glob("*.py")):
        assert f"examples/{script.name}" in listed, f"{script.name} has no command in the README"


@pytest.mark.parametrize("line", [f"python {e}" for e in FAST_EXAMPLES])
def test_quick_examples_run(line, tmp_path):
    assert line in _example_lines()
    _run(_as_argv(line, REPO), tmp_path)


@pytest.mark.slow
@pytest.mark.timeout(3600)
@pytest.mark.parametrize("line", [line for line in _example_lines()
                                  if line not in {f"python {e}" for e in FAST_EXAMPLES}])
def test_training_examples_run_with_defaults(line, tmp_path):
    """`pytest -m slow tests/test_readme.py -rP --durations=0` shows each recipe's printed results and its time
    (the README's training table quotes them)."""
    done = _run(_as_argv(line, REPO), tmp_path, timeout=3500)
    print(done.stdout[-6000:])
