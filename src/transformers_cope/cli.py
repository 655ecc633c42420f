"""`cope-videolm`: ask a CoPE-VideoLM about a video, inspect what the codec gives it, or run the synthetic demo.

    cope-videolm ask VIDEO QUESTION [--model PATH]     answer a question (default: the embedded model)
    cope-videolm chat VIDEO [--model PATH] [--follow]  ingest the video once, then answer questions read from stdin
    cope-videolm inspect VIDEO [--step N --png out.png] GOP layout, token budget vs dense, motion/residual picture
    cope-videolm demo                                  synthetic motion video -> embedded model -> answer vs truth

Bad videos end with exit code 2 and one line naming the file and the problem (the package's typed errors); so do
bad arguments. This module imports nothing heavy at the top (torch, transformers and PyAV load inside the commands),
so the `cope-videolm` launcher (`transformers_cope_cli`) parses and prechecks arguments in well under a second. Long videos show a progress bar while the codec primitives are extracted (`--no-progress` to hide).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

__all__ = ["main"]

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2
EMBEDDED_INSTRUCTION = "Answer with one word."  # synthetic QA's instruction for open questions
_PROGRESS_MIN_SECONDS = 20.0  # show the extraction bar for videos at least this long (when stderr is a terminal)


class CLIError(Exception):
    """A problem with the user's input: printed as one line, exit code 2."""


# ------------------------------------------------------------------------------------------------ model loading
def _embedded_model_dir() -> Path | None:
    """The trained default model shipped in the package (`transformers_cope.embedded`), if this install has it."""
    try:
        from .embedded import default_model_path
    except ImportError:
        return None
    try:
        path = Path(default_model_path())
    except FileNotFoundError:
        return None
    return path if (path / "config.json").is_file() else None


def _load_pipeline(model: str | None, device: str | None, dtype: str | None):
    """The video-question-answering pipeline for `model` (a folder or Hub id) or the embedded model."""
    import transformers_cope  # noqa: F401  (Auto registration)
    from transformers import pipeline

    from .pipeline_cope import TASK, VideoQuestionAnsweringPipeline, register_pipeline

    register_pipeline()
    source = model
    if source is None:
        embedded = _embedded_model_dir()
        if embedded is None:
            raise CLIError("no --model given and this install has no embedded default model "
                           "(transformers_cope/default_model); pass --model PATH_OR_HUB_ID")
        source = str(embedded)
    elif not Path(source).exists() and source.count("/") != 1:
        raise CLIError(f"--model {source}: no such folder (and not a Hub id of the form user/name)")
    kwargs = {"device": device or ("cuda" if _cuda() else "cpu")}
    if dtype:
        kwargs["dtype"] = dtype
    # pipeline_class: use the installed code even when the checkpoint names a custom (remote) pipeline
    try:
        return pipeline(TASK, model=source, pipeline_class=VideoQuestionAnsweringPipeline, **kwargs)
    except (OSError, ValueError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CLIError(f"cannot load the model {source}: {reason}") from None


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _show_progress(video: str, flag: bool | None) -> bool:
    if flag is not None:
        return flag
    if not sys.stderr.isatty():
        return False
    try:
        from .codec import probe_video

        return probe_video(video).duration >= _PROGRESS_MIN_SECONDS
    except Exception:  # probing is only a hint here; extraction reports real problems
        return False


def _primitives_for(pipe, video: str, overrides: dict, progress: bool):
    """Extract the codec primitives as the pipeline's processor would (same knobs), with a progress bar."""
    from .codec import extract_primitives

    video_processor = pipe.processor.video_processor
    options = video_processor._options({k: v for k, v in overrides.items() if v is not None})
    return extract_primitives(video, **video_processor._codec_kwargs(options), progress=progress)


# ------------------------------------------------------------------------------------------------ commands
def cmd_ask(args) -> int:
    from .codec import probe_video

    _check_video(args.video)
    probe_video(args.video)  # a bad video fails here, before a model is loaded
    pipe = _load_pipeline(args.model, args.device, args.dtype)
    overrides = {"keyframes_per_gop": args.keyframes_per_gop, "fps": args.fps, "max_steps": args.max_steps}
    primitives = _primitives_for(pipe, args.video, overrides, _show_progress(args.video, args.progress))
    options = {"max_new_tokens": args.max_new_tokens, "reasoning": args.reasoning}
    if args.self_consistency and args.self_consistency > 1:
        options["self_consistency"] = args.self_consistency
    if args.temperature is not None:
        options.update(do_sample=True, temperature=args.temperature)
    question = args.question
    instruction = args.instruction
    if instruction is None and args.model is None:
        instruction = EMBEDDED_INSTRUCTION  # the prompt format the embedded model was trained on
    if instruction and instruction.strip().lower() not in question.lower():
        question = f"{question.rstrip()}\n{instruction.strip()}"
    result = pipe(primitives, question=question, **options)[0]
    if args.json:
        print(json.dumps({"video": args.video, "question": question, "layout": primitives.frame_types,
                          **result}))
        return EXIT_OK
    if "reasoning" in result:
        print(f"reasoning: {result['reasoning']}")
    print(result["answer"])
    if "votes" in result:
        votes = ", ".join(f"{k}: {v}" for k, v in result["votes"].items())
        print(f"votes: {votes} (agreement {result['agreement']:.0%})")
    return EXIT_OK


def cmd_chat(args) -> int:
    """Questions from stdin, one per line; answers on stdout. The video is prefilled once into a CoPEVideoSession
    (a tqdm bar on stderr while it is ingested); each question then costs only its own tokens. In a terminal a
    `question>` prompt is written to stderr; in a pipe nothing but the answers reaches stdout. Empty line, `exit`,
    `quit` or end of input stop. `--live` answers at once about what has been ingested so far; `--follow` reads a file
    that is still being written (codec.iter_live_primitives) until no data came for `--idle-timeout` seconds."""
    import threading

    from .codec import probe_video
    from .session_cope import CoPEVideoSession

    if args.follow:
        args.live = True  # a growing file has no end to wait for
    else:
        _check_video(args.video)
        probe_video(args.video)  # a bad video fails here, before a model is loaded
    pipe = _load_pipeline(args.model, args.device, args.dtype)
    knobs = {"keyframes_per_gop": args.keyframes_per_gop, "fps": args.fps}
    session = CoPEVideoSession(pipe.model, pipe.processor, max_steps=args.window,
                               **{k: v for k, v in knobs.items() if v is not None})
    progress = args.progress if args.progress is not None else sys.stderr.isatty()
    failure: list[BaseException] = []

    def ingest():
        try:
            session.ingest(args.video, progress=progress, progress_desc=f"ingesting {Path(args.video).name}",
                           live=args.follow, **({"idle_timeout": args.idle_timeout} if args.follow else {}))
        except BaseException as err:  # re-raised in the main thread
            failure.append(err)

    worker = threading.Thread(target=ingest, name="cope-chat-ingest", daemon=True)
    worker.start()
    if not args.live:
        worker.join()
    instruction = args.instruction
    if instruction is None and args.model is None:
        instruction = EMBEDDED_INSTRUCTION
    options = pipe._generation_options({"max_new_tokens": args.max_new_tokens}, sample=False)
    interactive = sys.stdin.isatty()
    while True:
        if failure:
            raise failure[0]
        if interactive:
            print("question> ", end="", file=sys.stderr, flush=True)
        line = sys.stdin.readline()
        question = line.strip()
        if not line or question.lower() in ("", "exit", "quit"):
            break
        if instruction and instruction.strip().lower() not in question.lower():
            question = f"{question}\n{instruction.strip()}"
        while args.live and not session.num_steps and worker.is_alive():
            worker.join(0.05)  # the first GOP is on its way
        if failure:
            raise failure[0]
        started = time.monotonic()
        answer = session.ask(question, **options)
        if args.json:
            print(json.dumps({"question": question, "answer": answer, "steps": session.num_steps,
                              "seconds": round(time.monotonic() - started, 3)}), flush=True)
        else:
            print(answer, flush=True)
    worker.join()
    if failure:
        raise failure[0]
    return EXIT_OK


def _video_processor_of(model: str | None):
    """The processor whose geometry `inspect` shows: the checkpoint's, else the paper's defaults."""
    from .video_processing_cope import CoPEVideoProcessor

    if model is None:
        return CoPEVideoProcessor()
    from transformers import AutoProcessor

    try:
        return AutoProcessor.from_pretrained(model).video_processor
    except (OSError, ValueError, AttributeError) as err:
        raise CLIError(f"--model {model}: cannot read its processor ({err})") from None


def cmd_inspect(args) -> int:
    from .codec import extract_primitives
    from .configuration_cope import CoPEVideoLMConfig, count_video_tokens
    from .model_card import token_table
    from .visualize import delta_step_index, save_step_png, step_motion_summary

    _check_video(args.video)
    config = CoPEVideoLMConfig() if args.model is None else _config_of(args.model)
    size_note = "paper sizes" if args.model is None else f"the sizes of {args.model}"
    fps = args.fps if args.fps is not None else config.fps
    gop = args.gop_size if args.gop_size is not None else config.gop_size
    k = args.keyframes_per_gop if args.keyframes_per_gop is not None else config.keyframes_per_gop
    if not 1 <= k <= gop:
        raise CLIError(f"--keyframes-per-gop must be between 1 and --gop-size ({gop}), got {k}")
    want_png = args.png is not None
    # The processor's geometry: square codec frames (the source is squashed, not cropped) and its MV cells, so the
    # table and the picture show what the model reads.
    video_processor = _video_processor_of(args.model)
    side = args.size if args.size is not None else int(video_processor.codec_size)
    prim = extract_primitives(args.video, fps=fps, gop_size=gop, keyframes_per_gop=k, size=(side, side),
                              mv_block=int(video_processor.mv_block), max_steps=args.max_steps,
                              return_frames=want_png, progress=_show_progress(args.video, args.progress))
    types = prim.frame_types
    h, w = prim.frame_size
    print(f"{args.video}: {prim.duration:.1f} s at {prim.source_fps:g} fps, codec frames {w}x{h} "
          f"({prim.mode} mode)")
    print(f"steps: {len(types)} at {fps:g} per second, GOP {gop} steps, {k} keyframe{'s' if k > 1 else ''} per GOP")
    gops = [types[i:i + gop] for i in range(0, len(types), gop)]
    print("layout: " + " ".join(gops))
    counts = count_video_tokens(types, config)
    dense = count_video_tokens("I" * len(types), config)
    saved = 1 - counts["total_tokens"] / dense["total_tokens"]
    print(f"tokens ({size_note}: {counts['tokens_per_keyframe']} per keyframe, {counts['tokens_per_delta_step']} per "
          f"Δ step): {counts['num_keyframes']} x {counts['tokens_per_keyframe']} + {counts['num_delta_steps']} x "
          f"{counts['tokens_per_delta_step']} = {counts['total_tokens']:,} vs {dense['total_tokens']:,} dense "
          f"({saved:.0%} fewer)")
    print()
    print(token_table(config, num_steps=len(types), gop_size=gop, current=k, current_label="this layout"))
    summary = step_motion_summary(prim)
    if summary:
        print()
        print(r"| Δ step | time | mean \|mv\| px | max \|mv\| px | intra | mean \|residual\| |")
        print("|---:|---:|---:|---:|---:|---:|")
        for row in summary:
            print(f"| {row['step']} | {row['time']:.1f}s | {row['mean_motion']:.1f} | {row['max_motion']:.1f} | "
                  f"{row['intra']:.0%} | {row['residual']:.1f} |")
    if want_png:
        if not summary:
            raise CLIError("this layout has no Δ steps to draw (lower --keyframes-per-gop)")
        step = args.step
        if step is None:  # the Δ step with the most motion among those the codec could follow (< half intra)
            followed = [row for row in summary if row["intra"] < 0.5] or summary
            step = max(followed, key=lambda row: row["mean_motion"])["step"]
        try:
            delta_step_index(types, step)
        except ValueError as err:
            raise CLIError(str(err)) from None
        path = save_step_png(prim, step, args.png)
        print(f"\nwrote {path} (Δ step {step})")
    return EXIT_OK


def cmd_demo(args) -> int:
    from .data import SyntheticMotionQA
    from .data.synthetic_qa import format_prompt

    started = time.monotonic()
    print(f"seed: {args.seed} (same videos again: cope-videolm demo --seed {args.seed})")
    pipe = _load_pipeline(args.model, args.device, None)
    meta = DEMO_SETTINGS
    generator = SyntheticMotionQA(size=meta["size"], duration_s=args.duration, fps=meta["fps"],
                                  tasks=tuple(args.task or meta["tasks"]), question_format=meta["question_format"])
    with tempfile.TemporaryDirectory(prefix="cope-demo-") as folder:
        out = Path(args.keep) if args.keep else Path(folder)
        records = generator.generate(args.num, out, seed=args.seed, split="test", progress=False)
        correct = 0
        for record in records:
            result = pipe(record["video"], question=format_prompt(record), max_new_tokens=16)[0]
            ok = _same_answer(result["answer"], record)
            correct += ok
            print(f"video: {record['video'] if args.keep else Path(record['video']).name} "
                  f"({record['duration']:g} s, {record['size'][1]}x{record['size'][0]}, {record['task']})")
            print(f"question: {record['question']}" + (f"  options: {'; '.join(record['options'])}"
                                                         if record.get("options") else ""))
            print(f"model answer: {result['answer']}    ground truth: {record['answer']}    "
                  f"{'correct' if ok else 'wrong'}")
            print()
    print(f"{correct}/{len(records)} correct in {time.monotonic() - started:.1f} s")
    return EXIT_OK


def _same_answer(answer: str, record: dict) -> bool:
    """Letter or option text for multiple choice ("B", "B. right", "right"), else the normalised word."""
    from .test_time_scaling import normalize_answer

    options = record.get("options")
    got = normalize_answer(answer, options)
    return got is not None and got in {normalize_answer(str(record["answer"]), options),
                                       normalize_answer(str(record.get("answer_text", record["answer"])), options)}


# The embedded model's training data (its model card): 64 px textured clips at 10 fps, 4 s (and 8 s), three tasks,
# half multiple choice. `demo --model` assumes a model trained the same way.
DEMO_SETTINGS = {"size": (64, 64), "duration_s": 4.0, "fps": 10.0, "tasks": ("direction", "moving", "camera_pan"),
                 "question_format": "mixed"}


def _config_of(model: str):
    from transformers import AutoConfig

    import transformers_cope  # noqa: F401

    try:
        return AutoConfig.from_pretrained(model)
    except (OSError, ValueError) as err:
        raise CLIError(f"--model {model}: cannot read its config ({err})") from None


_URL_PREFIXES = ("http://", "https://", "ftp://", "s3://", "gs://", "hf://")


def _check_video(path: str) -> None:
    if path.lower().startswith(_URL_PREFIXES):
        raise CLIError(f"{path}: URLs are not fetched; download the video first (e.g. curl -LO URL) and pass the "
                       "local file")
    if not os.path.exists(path):
        raise CLIError(f"{path}: no such file")
    if os.path.isdir(path):
        raise CLIError(f"{path}: is a directory, not a video file")


# ------------------------------------------------------------------------------------------------ entry point
class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error (exit 2): `cope-videolm ask: error: argument --fps: ...`, no usage dump."""

    def error(self, message):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _number(kind=float, *, low=None, high=None, low_open=False):
    """An argparse `type` for a finite number in range (issue 16, D8: `--fps nan`, `--max-steps 0`)."""

    def parse(text: str):
        from .errors import check_number

        try:
            value = int(text) if kind is int else float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not {'an integer' if kind is int else 'a number'}: {text!r}") from None
        try:
            return check_number("value", value, low=low, high=high, low_open=low_open, integer=kind is int)
        except (TypeError, ValueError) as err:
            raise argparse.ArgumentTypeError(str(err).replace("value must", "must")) from None

    parse.__name__ = kind.__name__
    return parse


_FPS = _number(float, low=0, high=1000, low_open=True)
_COUNT = _number(int, low=1, high=10**6)
_TEMPERATURE = _number(float, low=0, high=100)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="cope-videolm", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    def progress_flags(p):
        p.add_argument("--progress", dest="progress", action="store_true", default=None,
                       help="always show the extraction progress bar")
        p.add_argument("--no-progress", dest="progress", action="store_false", help="never show it")

    ask = sub.add_parser("ask", help="answer a question about a video")
    ask.add_argument("video")
    ask.add_argument("question")
    ask.add_argument("--model", help="checkpoint folder or Hub id (default: the embedded model)")
    ask.add_argument("--instruction", default=None,
                     help="line appended to the question (default with the embedded model: "
                          f"'{EMBEDDED_INSTRUCTION}', its training format; '' for none)")
    ask.add_argument("--max-new-tokens", type=_COUNT, default=64)
    ask.add_argument("--reasoning", action="store_true", help="ask for <think>...</think><answer>...</answer>")
    ask.add_argument("--self-consistency", type=_COUNT, metavar="K", help="sample K answers and take the majority")
    ask.add_argument("--temperature", type=_TEMPERATURE, help="sample at this temperature (default: greedy)")
    ask.add_argument("--keyframes-per-gop", type=_COUNT)
    ask.add_argument("--fps", type=_FPS)
    ask.add_argument("--max-steps", type=_COUNT)
    ask.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cuda when available)")
    ask.add_argument("--dtype", help="bfloat16, float16, float32 (default: the checkpoint's)")
    ask.add_argument("--json", action="store_true", help="print one JSON object")
    progress_flags(ask)
    ask.set_defaults(func=cmd_ask)

    chat = sub.add_parser("chat", help="ingest a video once, then answer questions from stdin (one per line)")
    chat.add_argument("video")
    chat.add_argument("--model", help="checkpoint folder or Hub id (default: the embedded model)")
    chat.add_argument("--instruction", default=None, help="line appended to each question (as for ask)")
    chat.add_argument("--max-new-tokens", type=_COUNT, default=64)
    chat.add_argument("--keyframes-per-gop", type=_COUNT)
    chat.add_argument("--fps", type=_FPS)
    chat.add_argument("--window", type=_COUNT, metavar="STEPS",
                      help="sliding window: keep only the last STEPS steps in the cache (default: all)")
    chat.add_argument("--live", action="store_true",
                      help="answer at once about what has been ingested so far instead of waiting for the whole video")
    chat.add_argument("--follow", action="store_true",
                      help="VIDEO is still being written (MPEG-TS, fragmented MP4): read it as it grows (implies --live)")
    chat.add_argument("--idle-timeout", type=float, default=10.0,
                      help="with --follow: stop reading after this many seconds without new data (default 10)")
    chat.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cuda when available)")
    chat.add_argument("--dtype", help="bfloat16, float16, float32 (default: the checkpoint's)")
    chat.add_argument("--json", action="store_true", help="one JSON object per answer")
    progress_flags(chat)
    chat.set_defaults(func=cmd_chat)

    inspect = sub.add_parser("inspect", help="GOP layout, token budget and a motion/residual picture")
    inspect.add_argument("video")
    inspect.add_argument("--model", help="take token sizes and GOP defaults from this checkpoint's config")
    inspect.add_argument("--fps", type=_FPS)
    inspect.add_argument("--gop-size", type=_COUNT)
    inspect.add_argument("--keyframes-per-gop", type=_COUNT)
    inspect.add_argument("--max-steps", type=_COUNT, default=None)
    inspect.add_argument("--size", type=_number(int, low=16, high=8192), default=None,
                         help="side of the square codec frames (default: the processor's codec_size, 224 for the "
                              "paper's; the source is squashed to a square as the model sees it)")
    inspect.add_argument("--step", type=_number(int, low=0, high=10**7),
                         help="Δ step to draw (default: the one with the most motion)")
    inspect.add_argument("--png", help="write the picture of that step here")
    progress_flags(inspect)
    inspect.set_defaults(func=cmd_inspect)

    demo = sub.add_parser("demo", help="ask the embedded model about fresh synthetic motion videos")
    demo.add_argument("--model", help="checkpoint folder or Hub id (default: the embedded model)")
    demo.add_argument("--num", type=_number(int, low=1, high=1000), default=3, help="how many videos (default 3)")
    demo.add_argument("--seed", type=_number(int, low=0, high=2**32 - 1), default=int(time.time()) % 100000, help="default: from the clock")
    demo.add_argument("--task", action="append", help="synthetic task(s): direction, moving, camera_pan (default: all three)")
    demo.add_argument("--duration", type=_number(float, low=0, high=3600, low_open=True), default=DEMO_SETTINGS["duration_s"], help="seconds per video (4)")
    demo.add_argument("--keep", help="keep the videos in this folder")
    demo.add_argument("--device")
    demo.set_defaults(func=cmd_demo)
    return parser


def precheck(args) -> None:
    """Checks that need no model, codec or torch (the launcher runs them before the heavy imports): the video path
    exists and is not a URL, the question is not empty. Raises CLIError."""
    if getattr(args, "follow", False):  # chat --follow: the file may still be on its way; URLs are refused all the same
        if args.video.lower().startswith(_URL_PREFIXES):
            _check_video(args.video)
    elif getattr(args, "video", None) is not None:
        _check_video(args.video)
    if getattr(args, "question", None) is not None and not args.question.strip():
        raise CLIError("the question is empty")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        precheck(args)
    except CLIError as err:
        print(f"cope-videolm {args.command}: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    from .errors import VideoDecodeError

    try:
        return args.func(args)
    except (CLIError, VideoDecodeError) as err:
        print(f"cope-videolm {args.command}: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except ValueError as err:  # an argument combination the library refuses (e.g. keyframes > GOP)
        print(f"cope-videolm {args.command}: error: {str(err).splitlines()[0] if str(err) else err!r}",
              file=sys.stderr)
        return EXIT_USAGE
    except FileNotFoundError as err:
        print(f"cope-videolm {args.command}: error: {err.filename or err}: no such file", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"cope-videolm {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
