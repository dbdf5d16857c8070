"""Every command README.md and docs/*.md show must run against the code as it is, and their links resolve.

The commands are taken from the Markdown code blocks (and from inline code that starts like a command):
`python -m MODULE ...`, `nn-gpt-fractal ...`, `make TARGET`, `python bench/SCRIPT.py ...`. For each:
- the module (or console script, or Makefile target, or bench script) exists;
- for our click commands: the (sub)command path resolves, `--help` of it succeeds (in-process, click's
  CliRunner), every flag shown is a visible option of that (sub)command (a hidden option, such as a
  deprecated alias, does not count), options get the number of values they take and no positional is left
  over;
- for bench scripts: every flag shown is one of the script's `add_argument` names;
- other tools' commands (ray, sqlite3, pip, apt-get, ...) and other packages' modules are only checked to
  exist where they are ours to check (`python -m` of an importable module).
Flags quoted in prose (inline code such as `--rungs 1,2 --eta 6`) must be an option of one of our commands
or bench scripts, unless they belong to another tool (FOREIGN_FLAGS).
"""
from __future__ import annotations

import ast
import functools
import importlib
import importlib.util
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
OURS = "ab.gpt"  # modules under this prefix are ours: their click commands are checked flag by flag
SHELL_LANGS = {"", "bash", "sh", "shell", "console", "zsh"}
# Flags of other tools that the docs quote in prose (bubblewrap, Ray, pip, pytest); ours must exist.
FOREIGN_FLAGS = {"--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
                 "--size", "--seccomp", "--unshare-user", "--die-with-parent", "--new-session", "--clearenv",
                 "--cap-drop", "--cap-add", "--ro-bind", "--bind", "--dev-bind", "--tmpfs", "--head", "--num-cpus", "--num-gpus", "--port",
                 "--address", "--temp-dir", "--no-deps", "--durations", "--upgrade", "--privileged",
                 "--security-opt"}
PLACEHOLDER = "PLACEHOLDER"


@dataclass(frozen=True)
class Shown:
    """One command as the docs show it."""

    where: str  # file:line
    argv: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.where}: {shlex.join(self.argv)}"


# ---- extraction -----------------------------------------------------------------------------------------

FENCE = re.compile(r"^(\s*)(```+|~~~+)\s*([\w+-]*)")
INLINE = re.compile(r"(?<!`)`([^`\n]+)`(?!`)")
SUBST = re.compile(r"\$\(([^()]*)\)")
ANGLE = re.compile(r"<[^<>\n]*>")
ENV = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
PYTHON = re.compile(r"^(?:\S*/)?python(?:3(?:\.\d+)?)?$|^\$\(?PY\)?$")
WRAPPERS = {"sudo", "env", "time", "exec", "nohup"}


def blocks(text: str) -> list[tuple[int, str, list[str]]]:
    """Fenced code blocks: (first line number, language, lines)."""
    out, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, lang, start, body = m.group(2), m.group(3).lower(), i + 2, []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(fence):
            body.append(lines[i])
            i += 1
        out.append((start, lang, body))
        i += 1
    return out


def logical_lines(body: list[str], first: int) -> list[tuple[int, str]]:
    """Join `\\` continuations; drop console prompts; keep the number of each command's first line."""
    out, buf, start = [], "", first
    for k, raw in enumerate(body):
        line = raw.rstrip()
        if not buf:
            start = first + k
            line = re.sub(r"^\s*\$ ", "", line)
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        out.append((start, buf + line))
        buf = ""
    if buf:
        out.append((start, buf))
    return out


def segments(line: str) -> list[list[str]]:
    """The simple commands of one shell line: `$(...)` substitutions become commands of their own,
    `<placeholders>` one word, comments dropped, split at ; && || |."""
    inner = SUBST.findall(line)
    line = ANGLE.sub(PLACEHOLDER, SUBST.sub(PLACEHOLDER, line))
    lex = shlex.shlex(line, posix=True, punctuation_chars=";&|")
    lex.whitespace_split, lex.commenters = True, "#"
    try:
        tokens = list(lex)
    except ValueError:  # unbalanced quotes: prose, not a command
        return []
    out, cur = [], []
    for t in tokens:
        if t and set(t) <= set(";&|"):
            out.append(cur)
            cur = []
        else:
            cur.append(t)
    out.append(cur)
    for s in inner:
        out += segments(s)
    return [s for s in out if s]


def command_of(words: list[str]) -> tuple[str, ...] | None:
    """The part of a simple command that is one of ours to check, from its program name on, or None.
    `[--flag VALUE]` brackets (optional parts) are dropped, leaving the flag and its value."""
    words = [w.strip("[]") for w in words]
    words = [w for w in words if w and w not in ("...", "…")]
    k = 0
    while k < len(words) and (ENV.match(words[k]) or words[k] in WRAPPERS):
        k += 1
    if k < len(words) and words[k] == "make":
        return tuple(words[k:])
    for i in range(k, len(words)):
        w = words[i]
        if w == "nn-gpt-fractal":
            return tuple(words[i:])
        if PYTHON.match(w) and i + 1 < len(words):
            nxt = words[i + 1]
            if nxt == "-m" and i + 2 < len(words):
                return ("python", *words[i + 1:])
            if nxt.endswith(".py") and nxt.startswith("bench/"):
                return ("python", *words[i + 1:])
            return None
    return None


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else path.name


def shown_commands(path: Path) -> list[Shown]:
    text = path.read_text()
    rel = _rel(path)
    found = []
    for first, lang, body in blocks(text):
        if lang not in SHELL_LANGS:
            continue
        for line_no, line in logical_lines(body, first):
            for words in segments(line):
                cmd = command_of(words)
                if cmd:
                    found.append(Shown(f"{rel}:{line_no}", cmd))
    in_block = {n for first, _, body in blocks(text) for n in range(first - 1, first + len(body) + 1)}
    for n, line in enumerate(text.splitlines(), 1):
        if n in in_block:
            continue
        for span in INLINE.findall(line):
            for words in segments(span):
                cmd = command_of(words) if words[0] in ("nn-gpt-fractal", "make") or PYTHON.match(words[0]) else None
                if cmd:
                    found.append(Shown(f"{rel}:{n}", cmd))
    return found


def prose_flags(path: Path) -> list[tuple[str, str]]:
    """(file:line, flag) for flags in inline code outside code blocks that is not a command of its own."""
    text = path.read_text()
    rel = _rel(path)
    in_block = {n for first, _, body in blocks(text) for n in range(first - 1, first + len(body) + 1)}
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        if n in in_block:
            continue
        for span in INLINE.findall(line):
            words = span.split()
            if not words or not words[0].startswith("--"):
                continue
            for w in words:
                if re.fullmatch(r"--[a-z][a-z0-9-]*(=.*)?|--[a-z][a-z0-9-]*/--[a-z][a-z0-9-]*", w):
                    for flag in w.split("=")[0].split("/"):
                        out.append((f"{rel}:{n}", flag))
    return out


# ---- what the code offers -------------------------------------------------------------------------------

def click_command(module: str) -> click.Command | None:
    """The click command of `python -m module` (module `main`/`cli`/`group`), or of its package's __main__."""
    spec = importlib.util.find_spec(module)
    if spec is None:
        raise LookupError(f"no module {module}")
    names = [f"{module}.__main__"] if spec.submodule_search_locations else [module]
    for name in names:
        mod = importlib.import_module(name)
        for attr in ("main", "cli", "group"):
            obj = getattr(mod, attr, None)
            if isinstance(obj, click.Command):
                return obj
        commands = [v for v in vars(mod).values() if isinstance(v, click.Group)]
        if len(commands) == 1:
            return commands[0]
    return None


@functools.lru_cache(maxsize=None)
def console_script(name: str) -> click.Command:
    found = re.search(rf'^"?{re.escape(name)}"?\s*=\s*"([\w.]+):\w+"', (ROOT / "pyproject.toml").read_text(), re.M)
    assert found, f"no console script {name} in pyproject.toml"
    module = found.group(1)
    cmd = click_command(module)
    assert cmd is not None, f"{name}: {module} has no click command"
    return cmd


@functools.lru_cache(maxsize=None)
def make_targets() -> frozenset[str]:
    text = (ROOT / "Makefile").read_text()
    return frozenset(t for line in re.findall(r"^([A-Za-z0-9_.%/ -]+):(?!=)", text, re.M) for t in line.split())


@functools.lru_cache(maxsize=None)
def bench_flags(script: str) -> frozenset[str]:
    tree = ast.parse((ROOT / script).read_text())
    flags = {"-h", "--help"}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "add_argument":
            flags |= {a.value for a in node.args if isinstance(a, ast.Constant) and str(a.value).startswith("-")}
    return frozenset(flags)


def _options(cmd: click.Command, ctx: click.Context) -> dict[str, click.Parameter]:
    opts = {}
    for p in cmd.get_params(ctx):
        if isinstance(p, click.Option):
            for o in (*p.opts, *p.secondary_opts):
                opts[o] = p
    return opts


def _takes_value(p: click.Option) -> str:
    """'no', 'one or more' (nargs) or 'optional' (a flag that may take a value, e.g. --amp [auto|on|off])."""
    if p.is_flag or p.count:
        return "no"
    if getattr(p, "_flag_needs_value", False):
        return "optional"
    return "yes"


def _stand_in(cmd: click.Command) -> bool:
    """The stand-in a lazy group returns for a subcommand whose module cannot be imported: it takes any
    arguments and only says it is unavailable."""
    return (not isinstance(cmd, click.Group) and bool(cmd.context_settings.get("ignore_unknown_options"))
            and [p.name for p in cmd.params] == ["args"])


def check_click(root: click.Command, prog: str, args: list[str]) -> tuple[list[str], list[str]]:
    """(problems, subcommand path) of `prog args` against the click command tree."""
    problems, path, cmd = [], [], root
    ctx = click.Context(cmd, info_name=prog)
    positionals: list[str] = []
    i = 0
    while i < len(args):
        tok = args[i]
        if tok == "--":
            positionals += args[i + 1:]
            break
        if tok.startswith("-") and len(tok) > 1 and not re.fullmatch(r"-[\d.]+(e-?\d+)?", tok):
            name = tok.split("=", 1)[0]
            opts = _options(cmd, ctx)
            p = opts.get(name)
            if p is None:
                problems.append(f"{' '.join([prog, *path])}: no option {name}")
            elif p.hidden:
                problems.append(f"{' '.join([prog, *path])}: {name} is hidden (deprecated or internal)")
            if p is not None and "=" not in tok:
                need = _takes_value(p)
                if need == "yes":
                    i += max(1, p.nargs)
                elif need == "optional" and i + 1 < len(args) and not args[i + 1].startswith("-"):
                    i += 1
            i += 1
            continue
        if isinstance(cmd, click.Group) and not positionals:
            names = tok.split("|")  # `space|plan|eval`: each must exist
            subs = [cmd.get_command(ctx, n) for n in names]
            missing = [n for n, s in zip(names, subs) if s is None or _stand_in(s)]
            if missing:
                problems.append(f"{' '.join([prog, *path])}: no loadable subcommand {', '.join(missing)}")
                return problems, path
            if len(names) > 1:
                return problems, path  # a list of subcommands, not one command line
            cmd = subs[0]
            path.append(tok)
            ctx = click.Context(cmd, info_name=tok, parent=ctx)
            i += 1
            continue
        positionals.append(tok)
        i += 1
    if isinstance(cmd, click.Group) and positionals:
        problems.append(f"{' '.join([prog, *path])}: unexpected {positionals}")
    elif not isinstance(cmd, click.Group):
        arguments = [p for p in cmd.get_params(ctx) if isinstance(p, click.Argument)]
        if not any(p.nargs == -1 for p in arguments) and len(positionals) > sum(p.nargs for p in arguments):
            problems.append(f"{' '.join([prog, *path])}: unexpected extra argument(s) {positionals}")
    return problems, path


@functools.lru_cache(maxsize=None)
def help_works(root: click.Command, path: tuple[str, ...]) -> str | None:
    res = CliRunner().invoke(root, [*path, "--help"], prog_name="prog")
    if res.exit_code != 0:
        return f"`{' '.join(path)} --help` exits {res.exit_code}: {res.output.strip()[-300:]} {res.exception or ''}"
    return None


def problems_of(shown: Shown) -> list[str]:
    argv = list(shown.argv)
    if argv[0] == "make":
        targets = [a for a in argv[1:] if not a.startswith("-") and not ENV.match(a)]
        return [f"no Makefile target {t}" for t in targets if t not in make_targets()]
    if argv[0] == "nn-gpt-fractal":
        root, prog, args = console_script("nn-gpt-fractal"), "nn-gpt-fractal", argv[1:]
    elif argv[1].startswith("bench/"):
        script = argv[1]
        if not (ROOT / script).is_file():
            return [f"no script {script}"]
        flags = [a.split("=", 1)[0] for a in argv[2:] if a.startswith("--") or re.fullmatch(r"-[a-zA-Z]", a)]
        return [f"{script}: no option {f}" for f in flags if f not in bench_flags(script)]
    else:
        module, args, prog = argv[2], argv[3:], f"python -m {argv[2]}"
        try:
            root = click_command(module) if module.startswith(OURS) else None
        except (LookupError, ModuleNotFoundError) as e:
            return [f"{module}: {e}"]
        if root is None:
            if importlib.util.find_spec(module) is None:
                return [f"no module {module}"]
            if module.startswith(OURS) and any(a.startswith("-") for a in args):
                return [f"{module} has no click command, so its flags cannot be shown"]
            return []
    problems, path = check_click(root, prog, args)
    if not problems:
        bad_help = help_works(root, tuple(path))
        if bad_help:
            problems.append(f"{prog}: {bad_help}")
    return problems


@functools.lru_cache(maxsize=None)
def flag_universe() -> frozenset[str]:
    """Options of every command the docs reach (each command tree walked whole; deprecated aliases count
    here, not in commands), and the bench scripts' options."""
    roots = {console_script("nn-gpt-fractal")}
    for s in ALL:
        if s.argv[0] == "python" and s.argv[1] == "-m" and s.argv[2].startswith(OURS):
            try:
                cmd = click_command(s.argv[2])
            except (LookupError, ImportError):
                continue
            if cmd is not None:
                roots.add(cmd)
    flags: set[str] = set()

    def walk(cmd: click.Command, ctx: click.Context) -> None:
        flags.update(_options(cmd, ctx))  # hidden ones too: prose may name a deprecated spelling
        if isinstance(cmd, click.Group):
            for name in cmd.list_commands(ctx):
                sub = cmd.get_command(ctx, name)
                if sub is not None:
                    walk(sub, click.Context(sub, info_name=name, parent=ctx))

    for r in roots:
        walk(r, click.Context(r, info_name="prog"))
    for script in sorted((ROOT / "bench").glob("*.py")):
        flags |= bench_flags(str(script.relative_to(ROOT)))
    return frozenset(flags)


ALL = [s for doc in DOCS for s in shown_commands(doc)]
PROSE = [item for doc in DOCS for item in prose_flags(doc)]


# ---- the tests ------------------------------------------------------------------------------------------

def test_the_docs_show_the_quick_start():
    readme = [s.argv for s in ALL if s.where.startswith("README.md")]
    assert ("make", "demo") in readme and ("make", "test") in readme
    assert len(ALL) >= 40, f"only {len(ALL)} commands found in {[d.name for d in DOCS]}: is the extraction broken?"


@pytest.mark.parametrize("shown", ALL, ids=[f"{s.where}:{' '.join(s.argv[:4])}" for s in ALL])
def test_shown_command_parses(shown):
    assert problems_of(shown) == [], str(shown)


def test_flags_quoted_in_prose_exist():
    known = flag_universe()
    unknown = sorted({f"{where}: {flag}" for where, flag in PROSE if flag not in known and flag not in FOREIGN_FLAGS})
    assert unknown == []


def help_examples() -> list[Shown]:
    """The example commands in the epilog of every (sub)command of nn-gpt-fractal (its --help)."""
    root = console_script("nn-gpt-fractal")
    found: list[Shown] = []

    def walk(cmd: click.Command, ctx: click.Context, path: tuple[str, ...]) -> None:
        text = re.sub(r"\\\n\s*", " ", cmd.epilog or "")  # continuation lines joined
        for line in text.splitlines():
            line = line.strip()
            if line.startswith(("nn-gpt-fractal ", "python -m ab.gpt")):
                found.append(Shown(f"nn-gpt-fractal {' '.join(path)} --help".replace("  ", " "), tuple(shlex.split(line, comments=True))))
        if isinstance(cmd, click.Group):
            for name in cmd.list_commands(ctx):
                sub = cmd.get_command(ctx, name)
                if sub is not None:
                    walk(sub, click.Context(sub, info_name=name, parent=ctx), (*path, name))

    walk(root, click.Context(root, info_name="nn-gpt-fractal"), ())
    return found


HELP_EXAMPLES = help_examples()


def test_help_examples_use_the_one_entry_point():
    """Every subcommand's --help shows examples, written as `nn-gpt-fractal ...` (the form the README uses)."""
    assert len(HELP_EXAMPLES) >= 20 and {s.argv[0] for s in HELP_EXAMPLES} == {"nn-gpt-fractal"}, \
        sorted({str(s) for s in HELP_EXAMPLES if s.argv[0] != "nn-gpt-fractal"})


@pytest.mark.parametrize("shown", HELP_EXAMPLES, ids=[f"{s.where}:{' '.join(s.argv[1:4])}" for s in HELP_EXAMPLES])
def test_help_example_parses(shown):
    assert problems_of(shown) == [], str(shown)


LINK = re.compile(r"\]\(([^)\s]+)\)")


def slug(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    in_code, out = False, set()
    for line in path.read_text().splitlines():
        if FENCE.match(line):
            in_code = not in_code
        elif not in_code and line.startswith("#"):
            out.add(slug(line.lstrip("#")))
    return out


def broken_links(doc: Path) -> list[str]:
    broken = []
    for target in LINK.findall(doc.read_text()):
        if re.match(r"[a-z]+:", target):
            continue  # http(s), mailto
        file, _, anchor = target.partition("#")
        dest = (doc.parent / file).resolve() if file else doc
        if not dest.exists():
            broken.append(f"{_rel(doc)}: {target} (no such file)")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{_rel(doc)}: {target} (no such heading)")
    return broken


def test_relative_links_resolve():
    assert [b for doc in DOCS for b in broken_links(doc)] == []


# ---- the checker itself catches drift -------------------------------------------------------------------

SAMPLE = """\
Intro `nn-gpt-fractal report --top 3` and `--nonexistent-flag`.

```bash
# a comment line
make demo   # trailing comment
python -m ab.gpt.brute.fract.report --top 5 \\
    --title 'two words' --out DIR   # continued
PYTHONPATH=$(python -m ab.gpt.brute.fract.lemur site-dir) python -m ab.nn.train -e 1
ray job submit --address http://HEAD_IP:8265 -- python -m ab.gpt.brute.fract.report --out <LEMUR root>/out/x
.venv/bin/python bench/bench_halving.py --models 48 --eta 6
```

```python
import ab.nn.api  # python -m never.checked
```

```text
make not-a-target   (output, not a command)
```
"""


def test_extraction_handles_continuations_comments_substitutions_and_placeholders(tmp_path):
    doc = tmp_path / "README.md"
    doc.write_text(SAMPLE)
    shown = [s.argv for s in shown_commands(doc)]
    prose = [f for _, f in prose_flags(doc)]
    assert shown == [
        ("make", "demo"),
        ("python", "-m", "ab.gpt.brute.fract.report", "--top", "5", "--title", "two words", "--out", "DIR"),
        ("python", "-m", "ab.nn.train", "-e", "1"),
        ("python", "-m", "ab.gpt.brute.fract.lemur", "site-dir"),
        ("python", "-m", "ab.gpt.brute.fract.report", "--out", f"{PLACEHOLDER}/out/x"),
        ("python", "bench/bench_halving.py", "--models", "48", "--eta", "6"),
        ("nn-gpt-fractal", "report", "--top", "3"),
    ]
    assert prose == ["--nonexistent-flag"]


def _problems(line: str) -> list[str]:
    return problems_of(Shown("x", command_of(segments(line)[0])))


def test_the_checker_reports_drift():
    assert _problems("python -m ab.gpt.brute.fract.report --top 5 --title T") == []
    assert _problems("python -m ab.gpt.brute.fract.report --no-such-flag") != []
    assert _problems("python -m ab.gpt.brute.fract.report --top 5 stray") != []  # a value too many
    assert _problems("python -m ab.gpt.brute.fract.nothing_here") != []
    assert _problems("nn-gpt-fractal no-such-subcommand --help") != []
    assert _problems("make no-such-target") != []
    assert _problems("python bench/bench_halving.py --no-such-flag") != []
    assert _problems("python bench/no_such_bench.py") != []


def test_hidden_options_do_not_count():
    """A deprecated alias (hidden) parses, but the docs must show the current name."""
    root = click.Command("t", params=[click.Option(["--results"]), click.Option(["--out"], hidden=True)])
    assert check_click(root, "t", ["--results", "R"])[0] == []
    assert check_click(root, "t", ["--out", "R"])[0] == ["t: --out is hidden (deprecated or internal)"]


def test_a_subcommand_that_cannot_load_is_reported():
    stand_in = click.Command("x", callback=lambda args: None, params=[click.Argument(["args"], nargs=-1)],
                             context_settings={"ignore_unknown_options": True})
    root = click.Group("g", commands={"x": stand_in, "y": click.Command("y")})
    assert check_click(root, "g", ["x", "--anything"])[0] == ["g: no loadable subcommand x"]
    assert check_click(root, "g", ["y"])[0] == []


def test_broken_links_are_reported(tmp_path):
    (tmp_path / "other.md").write_text("# Some `code` heading, with punctuation\n")
    doc = tmp_path / "README.md"
    doc.write_text("[a](other.md#some-code-heading-with-punctuation) [b](other.md#nope) [c](missing.md) "
                   "[d](https://example.org/x) [e](#here)\n\n## Here\n")
    assert broken_links(doc) == ["README.md: other.md#nope (no such heading)", "README.md: missing.md (no such file)"]
