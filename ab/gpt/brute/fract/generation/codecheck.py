"""Static checks for model code that may be untrusted (generated or LLM-written).

`check_source` parses the code and walks its AST against an allowlist: imports only from torch and a few
pure modules; no builtins that reach the interpreter, files or the network; no dunder attribute access
(except `super().__init__`); no torch entry points that read, write, download or compile code.
It runs no code. A file must pass it before any process imports it.
"""
from __future__ import annotations

import ast
import re
from dataclasses import dataclass

ALLOWED_IMPORTS = ("torch", "math", "typing", "collections", "functools", "itertools", "numbers",
                   "dataclasses", "enum", "abc", "__future__")
BANNED_NAMES = frozenset({
    "exec", "eval", "compile", "open", "__import__", "globals", "locals", "vars", "getattr", "setattr",
    "delattr", "input", "breakpoint", "help", "exit", "quit", "memoryview", "__builtins__", "__loader__",
    "__spec__",
})
# torch attributes that load pickles, write files, fetch code, compile native code or reach internals
BANNED_ATTRIBUTES = frozenset({
    "load", "save", "hub", "cpp_extension", "ops", "classes", "_C", "library", "from_file", "_dynamo",
    "jit", "package", "multiprocessing", "distributed", "storage", "UntypedStorage", "_utils", "_ops",
    "system", "popen", "spawn", "fork", "modules", "builtins", "func_globals", "f_globals", "f_back",
    "gi_frame", "tb_frame", "cr_frame",
    # compile or export code, evaluate strings (annotations), or reach numpy's file writers
    "compile", "fx", "onnx", "export", "profiler", "serialization", "get_type_hints", "ForwardRef",
    "singledispatch", "singledispatchmethod", "numpy", "tofile", "share_memory_",
})
# torch.utils submodules a model file may use; the others load, download, write or run code
ALLOWED_TORCH_UTILS = frozenset({"checkpoint"})
_DUNDER = re.compile(r"__\w+__")


@dataclass(frozen=True)
class Finding:
    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


def _preorder(tree: ast.AST, closed: tuple[type, ...] = ()) -> list[tuple[ast.AST, bool]]:
    """Every node of `tree` in the order ast.NodeVisitor visits them (depth first, fields in order), without
    its per-node generator overhead, each with whether it lies inside a node of a `closed` type (whose
    subtree a visitor does not enter). Expression contexts (Load, Store, Del) carry nothing and are left out."""
    out: list[tuple[ast.AST, bool]] = []
    stack = [(tree, False)]
    AST, ctx = ast.AST, ast.expr_context
    while stack:
        node, inside = stack.pop()
        out.append((node, inside))
        children: list[ast.AST] = []
        for name in node._fields:
            v = getattr(node, name, None)
            if isinstance(v, AST):
                if not isinstance(v, ctx):
                    children.append(v)
            elif isinstance(v, list):
                children.extend(x for x in v if isinstance(x, AST))
        inside = inside or isinstance(node, closed)
        stack.extend((c, inside) for c in reversed(children))
    return out


class _Checker:
    """Flags what the allowlist forbids, visiting the nodes of a tree once each (`run`): a visit_<Type> method
    sees each node of that type, except inside the flagged-at-once async, global and nonlocal nodes."""

    def __init__(self, tree: ast.AST | None = None) -> None:
        self.findings: list[Finding] = []
        self.modules: set[str] = set()  # names bound by imports: their private attributes are off limits
        self.nodes = _preorder(tree, _CLOSED) if tree is not None else []
        for node, _inside in self.nodes:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                self.modules.update((a.asname or a.name).split(".")[0] for a in node.names)

    def run(self) -> list[Finding]:
        handlers: dict[type, object] = {}
        for node, inside in self.nodes:
            if inside:
                continue
            kind = type(node)
            visit = handlers.get(kind)
            if visit is None:
                visit = handlers[kind] = getattr(self, "visit_" + kind.__name__, False)
            if visit:
                visit(node)
        return self.findings

    def flag(self, node: ast.AST, message: str) -> None:
        self.findings.append(Finding(getattr(node, "lineno", 0), message))

    @staticmethod
    def _allowed_module(name: str | None) -> bool:
        root = (name or "").split(".")[0]
        return root in ALLOWED_IMPORTS

    @staticmethod
    def _bad_path(parts: list[str]) -> bool:
        """A dotted module path through a banned, private or non-allowlisted torch.utils part."""
        if parts == ["__future__"]:
            return False
        for i, p in enumerate(parts):
            if p in BANNED_ATTRIBUTES or p == "*" or p.startswith("_"):
                return True
            if p == "utils" and i + 1 < len(parts) and parts[i + 1] not in ALLOWED_TORCH_UTILS:
                return True
        return False

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if not self._allowed_module(alias.name) or self._bad_path(alias.name.split(".")):
                self.flag(node, f"import of {alias.name!r} is not allowed")

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level or not self._allowed_module(node.module):
            self.flag(node, f"import from {node.module or '.'!r} is not allowed")
        module = (node.module or "").split(".")
        if any(self._bad_path(module + [a.name]) for a in node.names):
            self.flag(node, f"import from {node.module!r} of {', '.join(a.name for a in node.names)} is not allowed")

    def _chain(self, node: ast.AST) -> list[str]:
        """['torch', 'utils', 'x'] for torch.utils.x; [] when the chain does not start at a name."""
        parts: list[str] = []
        while isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        return [node.id] + parts[::-1] if isinstance(node, ast.Name) else []

    def visit_Name(self, node: ast.Name) -> None:
        if node.id in BANNED_NAMES or (node.id.startswith("__") and node.id.endswith("__")
                                       and node.id not in ("__name__", "__file__")):
            self.flag(node, f"use of {node.id!r} is not allowed")

    def visit_Attribute(self, node: ast.Attribute) -> None:
        attr = node.attr
        if attr.startswith("__") and attr.endswith("__"):
            is_super_init = (attr == "__init__" and isinstance(node.value, ast.Call)
                             and isinstance(node.value.func, ast.Name) and node.value.func.id == "super")
            if not is_super_init:
                self.flag(node, f"dunder attribute {attr!r} is not allowed")
        elif attr in BANNED_ATTRIBUTES:
            self.flag(node, f"attribute {attr!r} is not allowed")
        else:
            chain = self._chain(node)
            if chain and chain[0] in self.modules:
                if attr.startswith("_"):
                    self.flag(node, f"private attribute {'.'.join(chain)!r} of a module is not allowed")
                elif len(chain) >= 2 and chain[-2] == "utils" and attr not in ALLOWED_TORCH_UTILS:
                    self.flag(node, f"{'.'.join(chain)!r} is not allowed (torch.utils: only "
                                    f"{', '.join(sorted(ALLOWED_TORCH_UTILS))})")

    def visit_MatchClass(self, node: ast.AST) -> None:
        # `case C(__class__=x)` reads attributes by name without an Attribute node
        for name in getattr(node, "kwd_attrs", []):
            if name.startswith("_") or name in BANNED_ATTRIBUTES:
                self.flag(node, f"pattern attribute {name!r} is not allowed")

    def visit_Constant(self, node: ast.Constant) -> None:
        if isinstance(node.value, str) and _DUNDER.search(node.value):
            self.flag(node, f"string with a dunder name {_DUNDER.search(node.value).group()!r} is not allowed")

    def _no_async(self, node: ast.AST) -> None:
        self.flag(node, "async code and global/nonlocal rebinding are not allowed")

    visit_AsyncFunctionDef = visit_Await = visit_Global = visit_Nonlocal = _no_async


_CLOSED = (ast.AsyncFunctionDef, ast.Await, ast.Global, ast.Nonlocal)  # flagged whole: their insides are not visited


def _parse(code: str, filename: str) -> ast.AST | Finding:
    try:
        return ast.parse(code, filename=filename)
    except SyntaxError as e:
        return Finding(e.lineno or 0, f"syntax error: {e.msg}")
    except ValueError as e:  # e.g. null bytes
        return Finding(0, f"unparsable source: {e}")


def _allowlist(tree: ast.AST) -> list[Finding]:
    return _Checker(tree).run()


def _contract(tree: ast.AST) -> list[Finding]:
    findings = []
    funcs = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    if "supported_hyperparameters" not in funcs:
        findings.append(Finding(0, "missing top-level function supported_hyperparameters()"))
    nets = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Net"]
    if not nets:
        findings.append(Finding(0, "missing class Net"))
    else:
        methods = {n.name: n for n in nets[0].body if isinstance(n, ast.FunctionDef)}
        for m in ("__init__", "forward", "train_setup", "learn"):
            if m not in methods:
                findings.append(Finding(nets[0].lineno, f"class Net lacks method {m}()"))
        init = methods.get("__init__")
        if init is not None:
            args = [a.arg for a in init.args.args]
            if args[:5] != ["self", "in_shape", "out_shape", "prm", "device"]:
                findings.append(Finding(init.lineno, "Net.__init__ must take (self, in_shape, out_shape, prm, device)"))
    return findings


def check_source(code: str, filename: str = "<model>") -> list[Finding]:
    """All allowlist findings for `code`; an empty list means it passed. A syntax error is one finding."""
    tree = _parse(code, filename)
    return [tree] if isinstance(tree, Finding) else _allowlist(tree)


def check_contract(code: str) -> list[Finding]:
    """The LEMUR model contract, statically: supported_hyperparameters() and class Net with its methods."""
    tree = _parse(code, "<model>")
    return [tree] if isinstance(tree, Finding) else _contract(tree)


def check_model_code(code: str, filename: str = "<model>") -> list[Finding]:
    """Allowlist and contract findings together, parsing once: the gate before any process imports it."""
    tree = _parse(code, filename)
    return [tree] if isinstance(tree, Finding) else _allowlist(tree) + _contract(tree)
