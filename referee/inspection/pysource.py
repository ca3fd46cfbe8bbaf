"""Static reading of a package's Python code: what each module imports, by any route, without running it.

For every `.py` file the AST gives `ImportRef`s (absolute dotted names, with line and route):

- `import a.b`, `from a import b` (both `a` and `a.b` are recorded: `b` may be a submodule), relative
  imports resolved against the module's package;
- calls that import by name: `importlib.import_module(...)`, `import_module(...)`, `__import__(...)`
  (with its `fromlist`), `importlib.__import__`, `runpy.run_module(...)`, when the name is a constant
  or a constant expression (string literals, `+`, f-strings of literals, `"".join([...])`, a module-level
  name bound to one of those); a call whose name cannot be worked out is recorded as `?` (route
  `dynamic`), because it could import anything;
- attribute chains on imported modules (`import sklearn as sk; sk.ensemble.RandomForestClassifier`,
  `torch.hub.load`);
- `exec(...)`, `eval(...)` and `compile(...)` of a constant string: the string is parsed as code and
  scanned the same way; of a computed string: recorded as `?`;
- `getattr(module, "name")` (and setattr, delattr, hasattr) with a constant name, as `module.name`.

Besides imports, it records `uses` that let code reach other code without an import statement the
reader can follow: the names in `BUILTIN_NAMES` (exec, eval, compile, __import__, globals, ...),
attributes in `SPECIAL_ATTRS` (__globals__, __subclasses__, f_globals, ...), `getattr` on a module
with a computed name, `vars(module)`, and calls in `WATCHED_CALLS` with their constant keywords
(`torch.load(..., weights_only=False)`). The rules decide which of these are allowed.

Sources are parsed from their bytes exactly as Python decodes them: `tokenize.detect_encoding` reads
the coding declaration (recorded in `encoding`) and `ast.parse` decodes the bytes with it, so a
`# -*- coding: utf-7 -*-` module is read as the interpreter would run it.

String constants that name a module exactly are kept apart (`strings`): weak evidence, for warnings.
"""

from __future__ import annotations

import ast
import io
import tokenize
from dataclasses import dataclass, field

IMPORT_CALLS = {"import_module", "__import__", "run_module", "find_spec"}
EXEC_CALLS = {"exec", "eval", "compile"}
BUILTIN_NAMES = {"exec", "eval", "compile", "__import__", "globals", "locals", "vars", "breakpoint", "__builtins__",
                 "__loader__", "__spec__"}
SPECIAL_ATTRS = {"__globals__", "__subclasses__", "__code__", "__builtins__", "__loader__", "__import__",
                 "f_globals", "f_locals", "f_builtins", "f_back", "tb_frame", "gi_frame", "cr_frame", "ag_frame",
                 "__reduce__", "__reduce_ex__", "__setstate__"}
ATTR_CALLS = {"getattr", "setattr", "delattr", "hasattr"}
WATCHED_CALLS = {"torch.load", "torch.serialization.load", "numpy.load", "numpy.lib.npyio.load",
                 "numpy.lib.format.read_array"}
WATCHED_KEYWORDS = {"trust_remote_code"}  # recorded on any call, with their constant value


@dataclass(frozen=True)
class ImportRef:
    module: str  # absolute dotted name; "?" when it cannot be determined statically
    line: int
    route: str  # import | from | call | attribute | exec | dynamic


@dataclass(frozen=True)
class Use:
    line: int
    kind: str  # builtin | attr | getattr | reflect | vars | call | fd
    what: str  # the name, attribute, module or dotted call
    detail: str = ""  # call: the constant keywords, e.g. "weights_only=False"


@dataclass
class ModuleSource:
    name: str  # dotted module name, e.g. task2.model
    path: str  # path relative to the package root
    is_package: bool
    error: str | None = None  # why it could not be parsed
    imports: list[ImportRef] = field(default_factory=list)
    strings: list[tuple[str, int]] = field(default_factory=list)  # (constant, line)
    tree: ast.Module | None = None
    encoding: str = "utf-8"  # the source encoding Python uses for the file (tokenize.detect_encoding)
    uses: list[Use] = field(default_factory=list)


def is_dunder(name: str) -> bool:
    return len(name) > 4 and name.startswith("__") and name.endswith("__")


def module_name(rel_path: str) -> tuple[str, bool]:
    """`task2/model.py` -> ("task2.model", False); `task2/__init__.py` -> ("task2", True)."""
    parts = rel_path[:-3].split("/") if rel_path.endswith(".py") else rel_path.split("/")
    if parts[-1] == "__init__":
        return ".".join(parts[:-1]), True
    return ".".join(parts), False


def _resolve_relative(current: str, is_package: bool, level: int, module: str | None) -> str:
    base = current.split(".") if current else []
    if not is_package:
        base = base[:-1]
    if level > 1:
        base = base[: len(base) - (level - 1)] if level - 1 <= len(base) else []
    parts = base + (module.split(".") if module else [])
    return ".".join(p for p in parts if p)


class _Scanner(ast.NodeVisitor):
    def __init__(self, mod: ModuleSource, depth: int = 0):
        self.mod = mod
        self.depth = depth
        self.aliases: dict[str, str] = {}  # local name -> module
        self.consts: dict[str, str] = {}  # module-level NAME = "constant"
        self.tuples: dict[str, list[str]] = {}  # NAME = ("a", "b"): a name bound to literal strings only
        self.loops: dict[str, list[str]] = {}  # `for NAME in ("a", "b")`: the values NAME takes
        self.called: set[int] = set()  # ids of Name nodes that are the function of a call

    # constants -------------------------------------------------------------------------------
    def const_str(self, node) -> str | None:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return node.value
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            a, b = self.const_str(node.left), self.const_str(node.right)
            return a + b if a is not None and b is not None else None
        if isinstance(node, ast.JoinedStr):
            out = []
            for v in node.values:
                if isinstance(v, ast.Constant) and isinstance(v.value, str):
                    out.append(v.value)
                elif isinstance(v, ast.FormattedValue) and self.const_str(v.value) is not None:
                    out.append(self.const_str(v.value))
                else:
                    return None
            return "".join(out)
        if isinstance(node, ast.Name) and node.id in self.consts:
            return self.consts[node.id]
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "join"
                and len(node.args) == 1 and isinstance(node.args[0], (ast.List, ast.Tuple))):
            sep = self.const_str(node.func.value)
            items = [self.const_str(e) for e in node.args[0].elts]
            if sep is not None and all(i is not None for i in items):
                return sep.join(items)
        return None

    def const_list(self, node) -> list[str]:
        if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
            return [s for s in (self.const_str(e) for e in node.elts) if s is not None]
        s = self.const_str(node)
        return [s] if s is not None else []

    def add(self, module: str, line: int, route: str) -> None:
        self.mod.imports.append(ImportRef(module, line, route))

    def use(self, line: int, kind: str, what: str, detail: str = "") -> None:
        self.mod.uses.append(Use(line, kind, what, detail))

    def dotted(self, node) -> str | None:
        """The absolute dotted name an expression denotes when it is an alias or a chain on one."""
        chain = []
        while isinstance(node, ast.Attribute):
            chain.append(node.attr)
            node = node.value
        if isinstance(node, ast.Name) and node.id in self.aliases:
            return ".".join([self.aliases[node.id], *reversed(chain)])
        return None

    def literal_strs(self, node) -> list[str] | None:
        """The strings a tuple/list/set of string literals holds, or a name bound to one; else None."""
        if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
            items = [self.const_str(e) for e in node.elts]
            return items if all(i is not None for i in items) else None
        if isinstance(node, ast.Name) and node.id in self.tuples:
            return self.tuples[node.id]
        return None

    def name_values(self, node) -> list[str] | None:
        """The attribute names an argument can take: a constant, or a loop variable over literals."""
        value = self.const_str(node)
        if value is not None:
            return [value]
        if isinstance(node, ast.Name) and node.id in self.loops:
            return self.loops[node.id]
        return None

    def visit_Name(self, node):
        if node.id in BUILTIN_NAMES:
            self.use(node.lineno, "builtin", node.id)
        if node.id in ATTR_CALLS and isinstance(node.ctx, ast.Load) and id(node) not in self.called:
            self.use(node.lineno, "reflect", f"{node.id} passed as a value")
        if not isinstance(node.ctx, ast.Load):  # rebound by something else than the patterns below
            self.tuples.pop(node.id, None)
            self.loops.pop(node.id, None)

    def visit_Assign(self, node):
        values = self.literal_strs(node.value)
        if values is not None and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            self.visit(node.value)
            self.loops.pop(node.targets[0].id, None)
            self.tuples[node.targets[0].id] = values
            return
        self.generic_visit(node)

    def visit_For(self, node):
        values = self.literal_strs(node.iter)
        if values is not None and isinstance(node.target, ast.Name):
            self.visit(node.iter)
            self.tuples.pop(node.target.id, None)
            self.loops[node.target.id] = values
            for stmt in [*node.body, *node.orelse]:
                self.visit(stmt)
            return
        self.generic_visit(node)

    # visitors --------------------------------------------------------------------------------
    def visit_Module(self, node):
        for stmt in node.body:  # module-level string constants, for import_module(NAME)
            if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
                value = self.const_str(stmt.value)
                if value is not None:
                    self.consts[stmt.targets[0].id] = value
        self.generic_visit(node)

    def visit_Import(self, node):
        for alias in node.names:
            self.add(alias.name, node.lineno, "import")
            if alias.asname:
                self.aliases[alias.asname] = alias.name
            else:
                self.aliases[alias.name.split(".")[0]] = alias.name.split(".")[0]

    def visit_ImportFrom(self, node):
        if node.level:
            base = _resolve_relative(self.mod.name, self.mod.is_package, node.level, node.module)
        else:
            base = node.module or ""
        if base:
            self.add(base, node.lineno, "from")
        for alias in node.names:
            if alias.name == "*":
                self.add(f"{base}.*", node.lineno, "from")  # every public name of the module
                continue
            full = f"{base}.{alias.name}" if base else alias.name
            self.add(full, node.lineno, "from")
            self.aliases[alias.asname or alias.name] = full

    def visit_Attribute(self, node):
        if node.attr in SPECIAL_ATTRS or is_dunder(node.attr):
            self.use(node.lineno, "attr", node.attr)
        chain = []
        cur = node
        while isinstance(cur, ast.Attribute):
            chain.append(cur.attr)
            cur = cur.value
        if isinstance(cur, ast.Name) and cur.id in self.aliases and isinstance(node.ctx, ast.Load):
            self.add(".".join([self.aliases[cur.id], *reversed(chain)]), node.lineno, "attribute")
            return  # the inner Attribute nodes are prefixes of this chain
        self.generic_visit(node)

    def visit_Call(self, node):
        func = node.func
        fname = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
        if (isinstance(func, ast.Call) and isinstance(func.func, ast.Name) and func.func.id == "getattr"
                and len(func.args) >= 2):
            fname = self.const_str(func.args[1])  # getattr(importlib, "import_module")(...)
        if isinstance(func, ast.Name):
            self.called.add(id(func))
        if isinstance(func, ast.Name) and fname in ATTR_CALLS and len(node.args) >= 2:
            target = self.dotted(node.args[0])
            if target is None and isinstance(node.args[0], ast.Name) and node.args[0].id in ("__builtins__",
                                                                                          "builtins"):
                target = "builtins"
            names = self.name_values(node.args[1])
            for name in names or ():
                if name in SPECIAL_ATTRS | BUILTIN_NAMES or is_dunder(name):
                    self.use(node.lineno, "attr", name)
            if names is None:
                self.use(node.lineno, "getattr" if target is not None else "reflect",
                         target if target is not None else fname)
            elif target is not None:
                for name in names:
                    self.add(f"{target}.{name}", node.lineno, "attribute")
        elif isinstance(func, ast.Name) and fname in ATTR_CALLS:
            self.use(node.lineno, "reflect", fname)  # getattr(*args): a name the reader cannot see
        if isinstance(func, ast.Name) and fname == "open" and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, int):
            self.use(node.lineno, "fd", f"open({node.args[0].value})")
        for k in node.keywords:
            if k.arg in WATCHED_KEYWORDS:
                value = k.value.value if isinstance(k.value, ast.Constant) else "?"
                self.use(node.lineno, "call", k.arg, f"{k.arg}={value!r}")
        if isinstance(func, ast.Name) and fname in ("vars", "dir") and node.args:
            target = self.dotted(node.args[0])
            if target is not None:
                self.use(node.lineno, "vars", target)
        called = self.dotted(func)
        if called in WATCHED_CALLS:
            kws = []
            for k in node.keywords:
                value = k.value.value if isinstance(k.value, ast.Constant) else "?"
                kws.append(f"{k.arg}={value!r}" if k.arg else "**?")
            self.use(node.lineno, "call", called, ", ".join(kws))
        if fname in IMPORT_CALLS and node.args:
            target = self.const_str(node.args[0])
            if target is None:
                self.add("?", node.lineno, "dynamic")
            else:
                if target.startswith("."):
                    package = next((self.const_str(k.value) for k in node.keywords if k.arg == "package"), None)
                    if package is None and len(node.args) > 1:
                        package = self.const_str(node.args[1])
                    level = len(target) - len(target.lstrip("."))
                    target = _resolve_relative(package or "", True, level, target.lstrip(".") or None)
                self.add(target, node.lineno, "call")
                fromlist = next((k.value for k in node.keywords if k.arg == "fromlist"), None)
                if fromlist is None and fname == "__import__" and len(node.args) > 3:
                    fromlist = node.args[3]
                if fromlist is not None:
                    for sub in self.const_list(fromlist):
                        self.add(f"{target}.{sub}", node.lineno, "call")
        elif fname in EXEC_CALLS and isinstance(func, ast.Name) and node.args:
            code = self.const_str(node.args[0])
            if code is None:
                self.add("?", node.lineno, "dynamic")
            elif self.depth < 3:
                try:
                    inner = ast.parse(code)
                except (SyntaxError, ValueError, RecursionError, MemoryError):
                    pass  # eval of an expression string that is not code, or unparsable: nothing to import
                else:
                    sub = _Scanner(self.mod, self.depth + 1)
                    sub.aliases = dict(self.aliases)
                    before = len(self.mod.imports)
                    sub.visit(inner)
                    for i in range(before, len(self.mod.imports)):
                        ref = self.mod.imports[i]
                        self.mod.imports[i] = ImportRef(ref.module, node.lineno, "exec")
        self.generic_visit(node)

    def visit_Constant(self, node):
        if isinstance(node.value, str) and 0 < len(node.value) <= 200:
            self.mod.strings.append((node.value, getattr(node, "lineno", 0)))


def source_encoding(data: bytes) -> str:
    """The encoding Python decodes a source file with (its coding declaration or BOM, else UTF-8);
    SyntaxError when the declaration names no codec or contradicts the BOM."""
    encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
    return encoding


def scan_source(name: str, rel_path: str, is_package: bool, source: bytes | str) -> ModuleSource:
    """Parse one module's source (bytes, decoded as Python decodes them; or text) and collect its imports
    and uses; a failure to decode or parse is recorded, not raised."""
    mod = ModuleSource(name=name, path=rel_path, is_package=is_package)
    try:
        if isinstance(source, bytes):
            mod.encoding = source_encoding(source)
        tree = ast.parse(source, filename=rel_path)
        _Scanner(mod).visit(tree)
    except SyntaxError as e:
        mod.error = f"syntax error at line {e.lineno}: {e.msg}" if e.lineno else f"cannot be decoded: {e.msg}"
        return mod
    except (ValueError, RecursionError, MemoryError, LookupError, UnicodeError) as e:
        mod.error = f"cannot be parsed ({type(e).__name__})"
        return mod
    mod.tree = tree
    return mod


def matches(module: str, prefixes) -> str | None:
    """The first of `prefixes` that `module` is or is inside (`sklearn.ensemble._forest` -> sklearn.ensemble)."""
    for p in prefixes:
        if module == p or module.startswith(p + "."):
            return p
    return None


def class_forward_params(mod: ModuleSource, class_name: str) -> list[str] | None:
    """Argument names of `class_name.forward` (without self) if the class is defined in `mod`."""
    if mod.tree is None:
        return None
    for node in ast.walk(mod.tree):
        if isinstance(node, ast.ClassDef) and node.name == class_name:
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and item.name == "forward":
                    a = item.args
                    names = [x.arg for x in (*a.posonlyargs, *a.args, *a.kwonlyargs)]
                    if a.vararg:
                        names.append("*" + a.vararg.arg)
                    if a.kwarg:
                        names.append("**" + a.kwarg.arg)
                    return names[1:] if names and names[0] == "self" else names
            return []
    return None


def name_uses(mod: ModuleSource, word: str) -> list[int]:
    """Lines where `word` is used as a name, attribute, keyword, argument or string constant."""
    if mod.tree is None:
        return []
    lines = set()
    for node in ast.walk(mod.tree):
        if isinstance(node, ast.Name) and node.id == word:
            lines.add(node.lineno)
        elif isinstance(node, ast.Attribute) and node.attr == word:
            lines.add(node.lineno)
        elif isinstance(node, ast.keyword) and node.arg == word:
            lines.add(getattr(node, "lineno", getattr(node.value, "lineno", 0)))
        elif isinstance(node, ast.arg) and node.arg == word:
            lines.add(node.lineno)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value == word:
            lines.add(node.lineno)
    return sorted(lines)
