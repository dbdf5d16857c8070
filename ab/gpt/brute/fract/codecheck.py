"""Static checks for model code that may be untrusted (generated or LLM-written).

`check_source` parses the code and walks its AST against an allowlist: imports only from torch and a few
pure modules; no builtins that reach the interpreter, files or the network; no dunder attribute access
(except `super().__init__`); no torch entry points that read, write, download or compile code.
It runs no code. A file must pass it before any process imports it.
"""
from __future__ import annotations

import ast
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
})


@dataclass(frozen=True)
class Finding:
    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


class _Checker(ast.NodeVisitor):
    def __init__(self) -> None:
        self.findings: list[Finding] = []

    def flag(self, node: ast.AST, message: str) -> None:
        self.findings.append(Finding(getattr(node, "lineno", 0), message))

    @staticmethod
    def _allowed_module(name: str | None) -> bool:
        root = (name or "").split(".")[0]
        return root in ALLOWED_IMPORTS

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if not self._allowed_module(alias.name):
                self.flag(node, f"import of {alias.name!r} is not allowed")
            elif any(part in BANNED_ATTRIBUTES for part in alias.name.split(".")):
                self.flag(node, f"import of {alias.name!r} is not allowed")
        self.generic_visit(node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level or not self._allowed_module(node.module):
            self.flag(node, f"import from {node.module or '.'!r} is not allowed")
        parts = (node.module or "").split(".") + [a.name for a in node.names]
        if any(p in BANNED_ATTRIBUTES or p == "*" for p in parts):
            self.flag(node, f"import from {node.module!r} of {', '.join(a.name for a in node.names)} is not allowed")
        self.generic_visit(node)

    def visit_Name(self, node: ast.Name) -> None:
        if node.id in BANNED_NAMES or (node.id.startswith("__") and node.id.endswith("__")
                                       and node.id not in ("__name__", "__file__")):
            self.flag(node, f"use of {node.id!r} is not allowed")
        self.generic_visit(node)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        attr = node.attr
        if attr.startswith("__") and attr.endswith("__"):
            is_super_init = (attr == "__init__" and isinstance(node.value, ast.Call)
                             and isinstance(node.value.func, ast.Name) and node.value.func.id == "super")
            if not is_super_init:
                self.flag(node, f"dunder attribute {attr!r} is not allowed")
        elif attr in BANNED_ATTRIBUTES:
            self.flag(node, f"attribute {attr!r} is not allowed")
        self.generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> None:
        if isinstance(node.value, str) and node.value.startswith("__") and node.value.endswith("__"):
            self.flag(node, f"dunder string {node.value!r} is not allowed")
        self.generic_visit(node)

    def _no_async(self, node: ast.AST) -> None:
        self.flag(node, "async code and global/nonlocal rebinding are not allowed")

    visit_AsyncFunctionDef = visit_Await = visit_Global = visit_Nonlocal = _no_async


def check_source(code: str, filename: str = "<model>") -> list[Finding]:
    """All findings for `code`; an empty list means it passed. A syntax error is one finding."""
    try:
        tree = ast.parse(code, filename=filename)
    except SyntaxError as e:
        return [Finding(e.lineno or 0, f"syntax error: {e.msg}")]
    except ValueError as e:  # e.g. null bytes
        return [Finding(0, f"unparsable source: {e}")]
    checker = _Checker()
    checker.visit(tree)
    return checker.findings


def check_contract(code: str) -> list[Finding]:
    """The LEMUR model contract, statically: supported_hyperparameters() and class Net with its methods."""
    try:
        tree = ast.parse(code)
    except SyntaxError as e:
        return [Finding(e.lineno or 0, f"syntax error: {e.msg}")]
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
