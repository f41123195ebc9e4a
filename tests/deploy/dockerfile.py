"""The root Dockerfile and `.dockerignore`, read the way `docker build` reads them.

No Docker engine runs here or in CI, so the image test builds what the image would
hold by itself. This module is the part of `docker build` that needs: the
instructions in order, the build context that `.dockerignore` lets through (Docker's
own pattern rules: `*` and `?` within one path segment, `**` across segments, `!` to
send again, the last matching line wins, a pattern matching a parent directory
matches everything below it), and `COPY` applied to a directory standing for the
image's file system.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
import shlex
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath


@dataclass(frozen=True, slots=True)
class Instruction:
    """One instruction: its keyword in upper case, and the rest of its line(s)."""

    keyword: str
    arguments: str


def instructions(text: str) -> list[Instruction]:
    """The instructions in order: continuation lines joined, comment lines dropped
    (also between continuation lines, as Docker does)."""
    found: list[Instruction] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("#") or (not line and not pending):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        whole = (pending + line).strip()
        pending = ""
        if whole:
            keyword, _, arguments = whole.partition(" ")
            found.append(Instruction(keyword.upper(), arguments.strip()))
    if pending.strip():
        raise ValueError(f"the Dockerfile ends inside a continued line: {pending!r}")
    return found


def exec_form(arguments: str) -> list[str] | None:
    """`["a", "b"]` as its list of strings; None for the shell form."""
    try:
        value = json.loads(arguments)
    except ValueError:
        return None
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return value
    return None


def command(arguments: str) -> list[str]:
    """What a `CMD`, `RUN` or health check runs: the exec form as is, the shell form by sh."""
    return exec_form(arguments) or ["/bin/sh", "-c", arguments]


def env_pairs(arguments: str) -> dict[str, str]:
    """`ENV a=1 b="two words"`, or the old form `ENV a one value`."""
    words = shlex.split(arguments)
    if words and "=" not in words[0]:
        name, _, value = arguments.partition(" ")
        return {name: value.strip()}
    pairs = dict(word.split("=", 1) for word in words)
    if any("$" in value for value in pairs.values()):
        raise ValueError(f"ENV with variable references is not supported here: {arguments}")
    return pairs


def healthcheck_command(arguments: str) -> list[str] | None:
    """The command of `HEALTHCHECK [--option=value ...] CMD ...`; None for `NONE`."""
    options, _, rest = arguments.partition("CMD ")
    if arguments.strip() == "NONE":
        return None
    if not rest or any(not word.startswith("--") for word in options.split()):
        raise ValueError(f"HEALTHCHECK {arguments}: expected [--option=value ...] CMD ...")
    return command(rest.strip())


# ------------------------------------------------------------ .dockerignore


def _segment_regex(pattern: str) -> re.Pattern[str]:
    """Docker's translation of one cleaned pattern into a regular expression."""
    out = ""
    i = 0
    while i < len(pattern):
        char = pattern[i]
        i += 1
        if char == "*" and pattern[i : i + 1] == "*":
            i += 1
            if pattern[i : i + 1] == "/":
                i += 1  # `**/` is `**`
            out += ".*" if i == len(pattern) else "(.*/)?"
        elif char == "*":
            out += "[^/]*"
        elif char == "?":
            out += "[^/]"
        elif char == "\\" and i < len(pattern):
            out += re.escape(pattern[i])
            i += 1
        elif char in "[]":
            out += char
        else:
            out += re.escape(char)
    return re.compile(out)


@dataclass(frozen=True, slots=True)
class _Rule:
    text: str  # the cleaned pattern, without its `!`
    sends: bool  # a `!` line: what it matches is sent again
    regex: re.Pattern[str]

    def matches(self, path: str) -> bool:
        """The path, or one of its parent directories, matches."""
        if self.regex.fullmatch(path):
            return True
        parts = path.split("/")[:-1]
        return any(self.regex.fullmatch("/".join(parts[: n + 1])) for n in range(len(parts)))


class IgnoreRules:
    """The lines of a `.dockerignore`, and which paths of the context they send."""

    def __init__(self, text: str) -> None:
        self.rules: list[_Rule] = []
        for raw in text.splitlines():
            if raw.startswith("#"):
                continue
            line = raw.strip()
            if not line:
                continue
            sends = line.startswith("!")
            pattern = line[1:].strip() if sends else line
            if not pattern:
                raise ValueError(f".dockerignore: {raw!r} names nothing")
            cleaned = posixpath.normpath(pattern)
            if len(cleaned) > 1 and cleaned.startswith("/"):
                cleaned = cleaned.lstrip("/")
            self.rules.append(_Rule(cleaned, sends, _segment_regex(cleaned)))

    def excluded(self, path: str) -> bool:
        """Whether `path` (relative, with `/`) is left out; the last matching line wins."""
        left_out = False
        for rule in self.rules:
            if rule.matches(path):
                left_out = not rule.sends
        return left_out

    def may_send_below(self, directory: str) -> bool:
        """Whether the walk must enter an excluded directory: Docker enters it only when
        a `!` line's text starts with the directory's path."""
        prefix = directory + "/"
        return any(rule.sends and (rule.text + "/").startswith(prefix) for rule in self.rules)


def context_files(root: Path, rules: IgnoreRules) -> list[str]:
    """Every file `docker build` sends from `root`, as relative paths with `/`."""
    sent: list[str] = []
    for directory, subdirectories, files in os.walk(root):
        here = PurePosixPath(Path(directory).relative_to(root).as_posix())
        kept: list[str] = []
        for name in sorted(subdirectories):
            path = str(here / name)
            if not rules.excluded(path) or rules.may_send_below(path):
                kept.append(name)
        subdirectories[:] = kept
        for name in sorted(files):
            path = str(here / name)
            if not rules.excluded(path):
                sent.append(path)
    return sent


# ------------------------------------------------------------ COPY


def _glob_matches(pattern: str, path: str) -> bool:
    """Go's `filepath.Match`, the matcher of `COPY` sources: segment by segment."""
    wanted, parts = pattern.split("/"), path.split("/")
    return len(wanted) == len(parts) and all(
        _segment_regex(w).fullmatch(p) for w, p in zip(wanted, parts, strict=True)
    )


def copy_into(
    arguments: str, *, context: Path, sent: Iterable[str], image_root: Path, workdir: str
) -> None:
    """Apply one `COPY src... dest` to `image_root`, from the files of `sent` only."""
    words = exec_form(arguments) or shlex.split(arguments)
    flags = [word for word in words if word.startswith("--")]
    if any(flag.startswith("--from") for flag in flags):
        raise ValueError(f"COPY {arguments}: copying from another stage is not supported here")
    *sources, destination = [word for word in words if not word.startswith("--")]
    files = sorted(sent)
    directories = {str(parent) for f in files for parent in PurePosixPath(f).parents}
    target = posixpath.join(workdir, destination)
    into_directory = destination.endswith("/") or len(sources) > 1
    for source in sources:
        pattern = posixpath.normpath(source).lstrip("/")
        found = [p for p in [*directories, *files] if _glob_matches(pattern, p)]
        if not found:
            raise FileNotFoundError(f"COPY {source}: not in the build context")
        for path in found:
            if path in directories:  # a directory: its contents go into the target
                for f in files:
                    below = f if path == "." else f.removeprefix(path + "/")
                    if below != f or path == ".":
                        _copy_file(context / f, image_root, posixpath.join(target, below))
            elif into_directory or len(found) > 1:
                _copy_file(
                    context / path, image_root, posixpath.join(target, posixpath.basename(path))
                )
            else:
                _copy_file(context / path, image_root, target)


def _copy_file(source: Path, image_root: Path, target: str) -> None:
    """`source` to the absolute path `target` of the image."""
    destination = image_root / target.lstrip("/")
    destination.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(source, destination)
