"""The allow-list check of generated code: the net behind program.py's typed code.

Generated code may contain only what the templates need: the imports they make, calls of the exact
library functions they use (``layers.<Class>`` of the registry, ``keras.Input``, the tf/np/pathlib
functions of the training template), calls of its own functions and variables, a few builtins and
methods, and a fixed set of syntax. Anything else, however it is reached (an alias, an attribute
starting with ``_``, a decorator, a class body, a default argument), is reported. The code must also
be UTF-8 (no PEP 263 declaration of another encoding) and compile.
"""

from __future__ import annotations

import ast
import builtins
import io
import tokenize

from normdsl.layers import KINDS, MERGES

IMPORTS = {  # (module, name, as): `import numpy as np` is ("numpy", None, "np")
    ("argparse", None, None),
    ("contextlib", None, None),
    ("csv", None, None),
    ("jax", None, None),
    ("json", None, None),
    ("time", None, None),
    ("warnings", None, None),
    ("numpy", None, "np"),
    ("tensorflow", None, "tf"),
    ("matplotlib.pyplot", None, "plt"),
    ("pathlib", "Path", None),
    ("keras", None, None),
    ("keras", "layers", None),
    ("tensorflow", "keras", None),  # tf.keras: Keras 2 with TF_USE_LEGACY_KERAS=1 (multi-worker scripts)
    ("tensorflow.keras", "layers", None),
}
MODULES = {"argparse", "contextlib", "csv", "json", "jax", "time", "warnings", "np", "tf", "plt", "Path", "keras"}
MODULES |= {"layers"}

LAYER_CLASSES = {kind.keras_class for kind in KINDS.values()} | {
    kind.with_args.keras_class for kind in KINDS.values() if kind.with_args is not None
}
LAYER_CLASSES |= {kind.keras_class for kind in MERGES.values()} | {"Rescaling", "GlobalAveragePooling2D", "Flatten"}

CALLS = {f"layers.{name}" for name in LAYER_CLASSES} | {
    "Path",
    "argparse.ArgumentParser",
    "contextlib.nullcontext",
    "csv.DictWriter",
    "jax.config.update",
    "json.dumps",
    "time.perf_counter",
    "warnings.warn",
    "keras.Input",
    "keras.Model",
    "keras.callbacks.LambdaCallback",
    "keras.callbacks.ModelCheckpoint",
    "keras.callbacks.TerminateOnNaN",
    "keras.losses.SparseCategoricalCrossentropy",
    "keras.optimizers.Adam",
    "keras.backend.backend",
    "keras.backend.clear_session",
    "keras.distribution.DataParallel",
    "keras.distribution.list_devices",
    "keras.distribution.set_distribution",
    "keras.utils.img_to_array",
    "keras.utils.load_img",
    "keras.utils.set_random_seed",
    "np.array",
    "np.isfinite",
    "np.random.default_rng",
    "np.stack",
    "tf.config.LogicalDeviceConfiguration",
    "tf.config.experimental.get_memory_info",
    "tf.config.experimental.reset_memory_stats",
    "tf.config.list_logical_devices",
    "tf.config.list_physical_devices",
    "tf.config.set_logical_device_configuration",
    "tf.distribute.MirroredStrategy",
    "tf.distribute.MultiWorkerMirroredStrategy",
    "tf.distribute.get_strategy",
    "plt.plot",
    "plt.xlabel",
    "plt.legend",
    "plt.show",
    "plt.subplots",
    "plt.close",
}
VALUES: set[str] = set()  # library attributes read without a call
METHODS = {  # methods called on the code's own values (models, data sets, arrays, parsers, paths, figures)
    "add_argument",
    "append",
    "astype",
    "compile",
    "count_params",
    "evaluate",
    "fit",
    "get",
    "get_weights",
    "integers",
    "is_dir",
    "iterdir",
    "items",
    "join",
    "lower",
    "legend",
    "mkdir",
    "normal",
    "open",
    "parse_args",
    "permutation",
    "plot",
    "pop",
    "reshape",
    "savefig",
    "scope",
    "set_title",
    "set_weights",
    "set_xlabel",
    "set_xscale",
    "set_xticks",
    "set_ylabel",
    "splitlines",
    "startswith",
    "summary",
    "suptitle",
    "tight_layout",
    "write_text",
    "writeheader",
    "writerows",
}
BUILTINS = {"range", "print", "len", "int", "float", "str", "dict", "list", "tuple", "max", "min", "sum", "zip"}
BUILTINS |= {"bool", "enumerate", "sorted"}
BUILTINS |= {"SystemExit", "ImportError"}
DUNDERS = {"__name__", "__doc__"}
_BUILTIN_NAMES = frozenset(dir(builtins)) - {"_"} - DUNDERS  # (an interactive session binds _ there too)

# The PyTorch target's module (target_torch.py): one nn.Module class, torch.nn layers, tensor functions and methods.
TORCH_IMPORTS = {("math", None, None), ("torch", None, None), ("torch", "nn", None), ("torch.nn", "functional", "F")}
TORCH_MODULES = {"math", "torch", "nn", "F"}
TORCH_CALLS = {
    *(f"nn.{name}" for name in ("Conv2d", "Linear", "BatchNorm1d", "BatchNorm2d", "LayerNorm", "GroupNorm")),
    *("nn.Sequential", "nn.Parameter", "torch.full", "torch.flatten", "torch.cat", "torch.ones_like"),
    *("torch.sigmoid", "torch.tanh", "torch.exp", "torch.zeros", "torch.ones", "nn.Module"),
    *(f"F.{name}" for name in ("pad", "relu", "relu6", "leaky_relu", "gelu", "silu", "elu", "selu", "softplus")),
    *(f"F.{name}" for name in ("softsign", "softmax", "log_softmax", "hardsigmoid", "hardswish", "mish")),
    *(f"F.{name}" for name in ("dropout", "max_pool2d", "avg_pool2d", "interpolate")),
}
TORCH_VALUES = {"math.inf", "nn.Module", "torch.int64"}
TORCH_METHODS = {"permute", "view", "clamp", "mean", "amax", "new_ones", "new_tensor", "register_buffer", "sqrt"}
TARGETS = {
    "keras": (IMPORTS, MODULES, CALLS, VALUES, METHODS),
    "torch": (TORCH_IMPORTS, TORCH_MODULES, TORCH_CALLS, TORCH_VALUES, TORCH_METHODS),
}

# The syntax generated code is made of; anything else (class, global, try, while, async, yield,
# del, walrus, ...) is unexpected.
SYNTAX: tuple[type[ast.AST], ...] = (
    ast.Module, ast.Expr, ast.Assign, ast.AugAssign, ast.FunctionDef, ast.arguments, ast.arg, ast.Return,
    ast.For, ast.If, ast.With, ast.withitem, ast.Raise, ast.Import, ast.ImportFrom, ast.alias, ast.Pass,
    ast.Try, ast.ExceptHandler,  # only as an import guard at the top level (see _import_guard)
    ast.Constant, ast.Name, ast.Attribute, ast.Subscript, ast.Slice, ast.Starred, ast.Call, ast.keyword,
    ast.Tuple, ast.List, ast.Dict, ast.ListComp, ast.DictComp, ast.comprehension, ast.Lambda, ast.IfExp,
    ast.BinOp, ast.UnaryOp, ast.BoolOp, ast.Compare, ast.JoinedStr, ast.FormattedValue,
    ast.Load, ast.Store, ast.operator, ast.unaryop, ast.boolop, ast.cmpop,
)  # fmt: skip


# Nodes that hold nothing to judge (their parents are judged): skipped, with what is below them.
_LEAVES = (ast.Constant, ast.Load, ast.Store, ast.operator, ast.unaryop, ast.boolop, ast.cmpop)


def unexpected_code(
    code: str, *, module: bool = True, plugins: frozenset[tuple[str, str]] = frozenset(), target: str = "keras"
) -> list[str]:
    """Everything in generated code beyond what the templates need (empty: all is as expected).

    ``module``: the code is a whole module, whose top level may only hold its docstring, imports,
    constants, functions and ``if __name__ == "__main__":``; notebook cells run statements at the top.
    ``plugins``: the (module, class) pairs of the plugin layers the code uses, whose imports it may make.
    ``target``: keras, or torch (one ``nn.Module`` class, which may call the modules it makes in ``__init__``).
    """
    data = code.encode("utf-8")
    try:
        encoding = tokenize.detect_encoding(io.BytesIO(data).readline)[0]
    except SyntaxError as exc:
        return [f"bad encoding declaration: {exc}"]
    if encoding != "utf-8":
        return [f"declares the encoding {encoding!r}; generated code is UTF-8"]
    try:
        tree = ast.parse(data)
        compile(tree, "<generated>", "exec", dont_inherit=True)  # what only the compiler sees: def f(x, x)
    except (SyntaxError, ValueError) as exc:
        return [f"does not compile: {exc}"]
    return _Check(tree, module, plugins, target).found


class _Check:
    def __init__(self, tree: ast.Module, module: bool, plugins: frozenset[tuple[str, str]], target: str = "keras"):
        self.found: list[str] = []
        self.plugins = plugins
        self.imports, self.modules, self.calls, self.values, self.methods = TARGETS[target]
        self.torch = target == "torch"
        self.own = _own_modules(tree) if self.torch else frozenset()  # self.conv2d = nn.Conv2d(...)
        if module:
            self.top_level(tree)
        stack: list[tuple[ast.AST, ast.AST | None]] = [(tree, None)]  # one pass, each node with its parent
        while stack:
            node, parent = stack.pop()
            if not isinstance(node, _LEAVES):
                self.node(node, parent)
                stack.extend((child, node) for child in ast.iter_child_nodes(node))

    def problem(self, node: ast.AST, what: str) -> None:
        self.found.append(f"line {getattr(node, 'lineno', '?')}: {what}")

    def top_level(self, tree: ast.Module) -> None:
        for i, node in enumerate(tree.body):
            docstring = i == 0 and isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
            constant = isinstance(node, ast.Assign) and all(isinstance(t, ast.Name) for t in node.targets)
            main = isinstance(node, ast.If) and ast.unparse(node.test) == "__name__ == '__main__'"
            module = self.torch and _module_class(node)
            if not (
                docstring
                or constant
                or main
                or module
                or isinstance(node, ast.Import | ast.ImportFrom | ast.FunctionDef | ast.Try)
            ):
                self.problem(node, f"unexpected statement at the top level: {ast.unparse(node)[:80]}")

    def node(self, node: ast.AST, parent: ast.AST | None) -> None:
        if self.torch and isinstance(node, ast.ClassDef) and _module_class(node) and parent is not None:
            return  # (its methods are judged)
        if self.torch and _super_init(node):
            return
        if not isinstance(node, SYNTAX):
            self.problem(node, f"unexpected syntax: {type(node).__name__}")
        match node:
            case ast.Import(names=names):
                for alias in names:
                    self.imported(node, alias.name, None, alias.asname)
            case ast.ImportFrom(module=module, names=names, level=level):
                for alias in names:
                    self.imported(node, ("." * level) + (module or ""), alias.name, alias.asname)
            case ast.Try() if not (isinstance(parent, ast.Module) and _import_guard(node)):
                self.problem(node, "a try statement other than the import guard at the top level")
            case ast.FunctionDef(decorator_list=decorators) if decorators:
                self.problem(node, "a decorator")
            case ast.Attribute(attr=attr) if attr.startswith("_"):
                self.problem(node, f"attribute {attr}")
            case ast.Name(id=name, ctx=ast.Store()) if (
                name in self.modules or name in _BUILTIN_NAMES or name in DUNDERS
            ):
                self.problem(node, f"assigns {name}")
            case ast.Name(id=name, ctx=ast.Load()):
                if name.startswith("_") and name not in DUNDERS and name != "_":
                    self.problem(node, f"name {name}")
                elif name in _BUILTIN_NAMES and name not in BUILTINS and not (self.torch and name == "super"):
                    self.problem(node, f"builtin {name}")
            case ast.Call(func=func):
                self.call(node, func)
        if isinstance(node, ast.Attribute | ast.Name) and not isinstance(node.ctx, ast.Store):
            self.module_use(node, parent)

    def imported(self, node: ast.AST, module: str, name: str | None, asname: str | None) -> None:
        if (module, name, asname) not in self.imports and not (asname is None and (module, name) in self.plugins):
            self.problem(node, f"import {module}" + (f".{name}" if name else "") + (f" as {asname}" if asname else ""))

    def call(self, node: ast.Call, func: ast.expr) -> None:
        path = _dotted(func)
        if path is not None and path.split(".")[0] in self.modules:
            if path not in self.calls:
                self.problem(node, f"call {path}")
        elif self.torch and (path in self.own or _super_init(func)):
            return  # the module's own layers: self.conv2d(x)
        elif isinstance(func, ast.Name):
            if func.id in _BUILTIN_NAMES and func.id not in BUILTINS and not (self.torch and func.id == "super"):
                self.problem(node, f"call {func.id}")  # also reported as a name; the call says more
        elif isinstance(func, ast.Attribute):
            if func.attr not in self.methods:
                self.problem(node, f"method {func.attr}")
        elif not isinstance(func, ast.Call):  # layers.Conv2D(...)(x): a layer applied
            self.problem(node, f"call of {type(func).__name__}")

    def module_use(self, node: ast.Attribute | ast.Name, parent: ast.AST | None) -> None:
        """A library module may only be named at the start of an allowed call or value: never
        bound to a variable, passed along, or read for another attribute."""
        path = _dotted(node)
        if path is None or path.split(".")[0] not in self.modules:
            return
        if isinstance(parent, ast.Attribute):
            return  # part of a longer path, judged there
        if isinstance(parent, ast.Call) and parent.func is node:
            return  # judged as a call
        if path not in self.values:
            self.problem(node, f"uses {path}")


def _import_guard(node: ast.Try) -> bool:
    """``try: import keras ... except ImportError as error: raise SystemExit(...) from None``: imports,
    and one handler of ImportError that raises (a clear message saying what to install)."""
    if node.orelse or node.finalbody or len(node.handlers) != 1:
        return False
    handler = node.handlers[0]
    raised = handler.body[0] if len(handler.body) == 1 else None
    return (
        all(isinstance(n, ast.Import | ast.ImportFrom) for n in node.body)
        and isinstance(handler.type, ast.Name)
        and handler.type.id == "ImportError"
        and isinstance(raised, ast.Raise)
        and isinstance(raised.exc, ast.Call)
        and isinstance(raised.exc.func, ast.Name)
        and raised.exc.func.id in ("SystemExit", "ImportError")
    )


def _dotted(node: ast.expr) -> str | None:
    """``tf.config.list_physical_devices`` for that chain of attributes on a name, else None."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    return ".".join([node.id, *reversed(parts)])


def _module_class(node: ast.AST) -> bool:
    """``class Name(nn.Module):`` with methods only (and a docstring): the torch target's class."""
    if not isinstance(node, ast.ClassDef) or node.decorator_list or node.keywords:
        return False
    if [ast.unparse(b) for b in node.bases] != ["nn.Module"]:
        return False
    body = node.body[1:] if node.body and isinstance(node.body[0], ast.Expr) else node.body
    return all(isinstance(item, ast.FunctionDef) for item in body)


def _super_init(node: ast.AST) -> bool:
    """``super().__init__``."""
    return (
        isinstance(node, ast.Attribute)
        and node.attr == "__init__"
        and isinstance(node.value, ast.Call)
        and isinstance(node.value.func, ast.Name)
        and node.value.func.id == "super"
        and not node.value.args
    )


def _own_modules(tree: ast.Module) -> frozenset[str]:
    """``self.NAME`` for every ``self.NAME = ...`` in the code: the layers a torch module may call."""
    return frozenset(
        f"self.{target.attr}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign)
        for target in node.targets
        if isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name) and target.value.id == "self"
    )
