"""Source specialisation: the project's model and optimizer code, cut down to what one record trains with.

This codebase implements every speedrun record as switches of one model (`GPTConfig`) and one optimizer
(`make_optimizer`). A benchmark task hands an agent record i's code, so the switches that a later record
flips must not be there: `specialize` folds each such switch to record i's value (`cfg.qk_norm` becomes
`False`, a `kind` parameter becomes `"muon"`), evaluates the conditions that became constant, drops the dead
branches, the code after an unconditional return, the removed switches' dataclass fields, parameters and
validity checks, and the module-level helpers nothing references any more. What is left computes exactly
what the full code computes under record i's config (the benchmark's oracle and no-op checks test that).

Comments and docstrings that name a later record's feature are dropped with it (`Folds.later_terms`).
libcst keeps every other comment and the formatting of the untouched code.
"""

from __future__ import annotations

import ast
import dataclasses
import re
from collections.abc import Iterable, Sequence
from typing import Any

import libcst as cst

_LITERAL_TYPES = (cst.SimpleString, cst.Integer, cst.Float, cst.Name, cst.UnaryOperation, cst.Tuple)


@dataclasses.dataclass(frozen=True)
class Folds:
    """What to fold in one source file.

    attributes: {field: value} for `cfg.F`, `self.cfg.F` and, inside `config_class`, `self.F`.
    config_class: the dataclass whose fields `attributes` removes (with its checks naming them).
    parameters: {function: {param: value}}: the parameter is removed and its uses replaced.
    keep: module-level names used from outside the file (never removed as unreferenced).
    later_terms: words that mark a comment or docstring as describing a later record.
    """

    attributes: dict[str, Any] = dataclasses.field(default_factory=dict)
    config_class: str = ""
    parameters: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    keep: frozenset[str] = frozenset()
    later_terms: tuple[str, ...] = ()


def specialize(source: str, folds: Folds) -> str:
    """`source` with `folds` applied (see the module docstring); the result is valid Python."""
    module = cst.parse_module(source)
    module = module.visit(_Fold(folds, _constants(module)))
    for _ in range(3):  # a private helper now called once with constant arguments is specialised too
        module, extra = _fold_constant_arguments(module)
        if not extra:
            break
        module = module.visit(_Fold(dataclasses.replace(folds, attributes={}, parameters=extra), _constants(module)))
    for _ in range(4):  # removing one helper can orphan another
        before = module.code
        module = _drop_unreferenced(module, folds.keep)
        if module.code == before:
            break
    if folds.later_terms:
        module = module.visit(_DropComments(folds.later_terms))
    code = module.code
    ast.parse(code)  # a bug here must not hand an agent broken code
    return code


def _is_bool(node: cst.BaseExpression) -> bool:
    """Whether `node` surely evaluates to a bool (a comparison, a `not`, or `and`/`or` of such), so that
    folding a constant right operand of `and`/`or` keeps its value (the left operand is free of side effects:
    comparisons of config values)."""
    if isinstance(node, cst.Comparison) or (isinstance(node, cst.UnaryOperation) and isinstance(node.operator, cst.Not)):
        return True
    if isinstance(node, cst.BooleanOperation):
        return _is_bool(node.left) and _is_bool(node.right)
    return _value(node)[0] and isinstance(_value(node)[1], bool)


def literal(value: Any) -> cst.BaseExpression:
    """The expression for a Python literal value."""
    return cst.parse_expression(repr(value))


def _value(node: cst.CSTNode, constants: dict[str, Any] | None = None) -> tuple[bool, Any]:
    """(True, value) if `node` is a literal expression (constants, tuples of them, or a module-level
    constant's name), else (False, None)."""
    if constants and isinstance(node, cst.Name) and node.value in constants:
        return True, constants[node.value]
    if not isinstance(node, _LITERAL_TYPES):
        return False, None
    try:
        return True, ast.literal_eval(cst.Module([]).code_for_node(node))
    except (ValueError, SyntaxError):
        return False, None


def _dotted(node: cst.CSTNode) -> str:
    if isinstance(node, cst.Name):
        return node.value
    if isinstance(node, cst.Attribute):
        return f"{_dotted(node.value)}.{node.attr.value}"
    return ""


_COMPARE = {
    cst.Equal: lambda a, b: a == b, cst.NotEqual: lambda a, b: a != b, cst.LessThan: lambda a, b: a < b,
    cst.GreaterThan: lambda a, b: a > b, cst.LessThanEqual: lambda a, b: a <= b,
    cst.GreaterThanEqual: lambda a, b: a >= b, cst.In: lambda a, b: a in b, cst.NotIn: lambda a, b: a not in b,
    cst.Is: lambda a, b: a is b, cst.IsNot: lambda a, b: a is not b,
}


class _Fold(cst.CSTTransformer):
    """Substitutes the folded values, then simplifies bottom-up (children are left before parents)."""

    def __init__(self, folds: Folds, constants: dict[str, Any]):
        super().__init__()
        self.folds = folds
        self.constants = constants
        self.classes: list[str] = []
        self.functions: list[str] = []
        self.elifs: set[int] = set()
        self.dropped_pairs: set[int] = set()
        self.pair_names: set[int] = set()

    # Scope tracking.
    def visit_ClassDef(self, node: cst.ClassDef) -> bool:
        self.classes.append(node.name.value)
        return True

    def leave_ClassDef(self, original: cst.ClassDef, updated: cst.ClassDef) -> cst.ClassDef:
        self.classes.pop()
        if original.name.value != self.folds.config_class:
            return updated
        body = [s for s in updated.body.body if not self._is_removed_field(s)]
        return updated.with_changes(body=updated.body.with_changes(body=body))

    def _is_removed_field(self, statement: cst.CSTNode) -> bool:
        if not isinstance(statement, cst.SimpleStatementLine) or len(statement.body) != 1:
            return False
        small = statement.body[0]
        return (isinstance(small, cst.AnnAssign) and isinstance(small.target, cst.Name)
                and small.target.value in self.folds.attributes)

    def visit_FunctionDef(self, node: cst.FunctionDef) -> bool:
        self.functions.append(node.name.value)
        return True

    def leave_FunctionDef(self, original: cst.FunctionDef, updated: cst.FunctionDef) -> cst.FunctionDef:
        self.functions.pop()
        removed = self.folds.parameters.get(original.name.value, {})
        if not removed:
            return updated
        params = [p for p in updated.params.params if p.name.value not in removed]
        kept = updated.params.with_changes(params=params)
        starred = isinstance(kept.star_arg, (cst.Param, cst.ParamStar)) or kept.kwonly_params or kept.star_kwarg
        if params and not starred:  # no dangling ", )"
            params[-1] = params[-1].with_changes(comma=cst.MaybeSentinel.DEFAULT)
            kept = kept.with_changes(params=params)
        return updated.with_changes(params=kept)

    # Substitution.
    def leave_Attribute(self, original: cst.Attribute, updated: cst.Attribute) -> cst.BaseExpression:
        field = original.attr.value
        if field not in self.folds.attributes:
            return updated
        owner = _dotted(original.value)
        in_config = bool(self.classes) and self.classes[-1] == self.folds.config_class
        if owner in ("cfg", "self.cfg", "module.cfg", "config", "self.config") or (owner == "self" and in_config):
            return literal(self.folds.attributes[field])
        return updated.with_changes(attr=original.attr)  # an attribute's name is no parameter's use

    def leave_Name(self, original: cst.Name, updated: cst.Name) -> cst.BaseExpression:
        for function in reversed(self.functions):
            folded = self.folds.parameters.get(function, {})
            if original.value in folded:
                return literal(folded[original.value])
        return updated

    def leave_Param(self, original: cst.Param, updated: cst.Param) -> cst.Param:
        return updated.with_changes(name=original.name)  # leave_Name must not turn a parameter into a value

    def leave_Arg(self, original: cst.Arg, updated: cst.Arg) -> cst.Arg:
        return updated.with_changes(keyword=original.keyword)

    # Checks naming a removed field: ("name", ...) tuples and {"name": ...} dicts inside the config class.
    def visit_Element(self, node: cst.Element) -> bool:
        if isinstance(node.value, cst.Tuple) and node.value.elements:  # ("name", value) pairs of a check loop
            first = node.value.elements[0]
            if self._names_removed(first.value):
                self.dropped_pairs.add(id(node))
                self.pair_names.add(id(first))
        return True

    def leave_Element(self, original: cst.Element, updated: cst.Element):
        if id(original) in self.dropped_pairs:
            return cst.RemoveFromParent()
        if id(original) not in self.pair_names and self._names_removed(original.value):
            return cst.RemoveFromParent()
        return updated

    def _names_removed(self, node: cst.CSTNode) -> bool:
        ok, name = _value(node)
        return ok and isinstance(name, str) and name in self._removed_names()

    def _removed_names(self) -> set[str]:
        names = set(self.folds.attributes) if self._in_config() else set()
        for function in self.functions:
            names.update(self.folds.parameters.get(function, {}))
        return names

    def leave_DictElement(self, original: cst.DictElement, updated: cst.DictElement):
        ok, value = _value(updated.key)
        if self._in_config() and ok and isinstance(value, str) and value in self.folds.attributes:
            return cst.RemoveFromParent()
        return updated

    def _in_config(self) -> bool:
        return bool(self.folds.attributes) and self.folds.config_class in self.classes

    # Simplification.
    def leave_Comparison(self, original, updated: cst.Comparison) -> cst.BaseExpression:
        ok, left = _value(updated.left, self.constants)
        if not ok:
            if len(updated.comparisons) == 1 and isinstance(updated.comparisons[0].operator, (cst.In, cst.NotIn)):
                ok, container = _value(updated.comparisons[0].comparator, self.constants)
                if ok and container == ():  # `layer in ()`: a folded empty layer list
                    return literal(isinstance(updated.comparisons[0].operator, cst.NotIn))
            return updated
        result = True
        for target in updated.comparisons:
            ok, right = _value(target.comparator, self.constants)
            if not ok:
                return updated
            result = result and _COMPARE[type(target.operator)](left, right)
            left = right
        return literal(bool(result))

    def leave_UnaryOperation(self, original, updated: cst.UnaryOperation) -> cst.BaseExpression:
        ok, value = _value(updated.expression)
        if ok and isinstance(updated.operator, cst.Not):
            return literal(not value)
        return updated

    def leave_BooleanOperation(self, original, updated: cst.BooleanOperation) -> cst.BaseExpression:
        is_and = isinstance(updated.operator, cst.And)
        ok, left = _value(updated.left)
        if ok:
            if bool(left) == is_and:  # True and X -> X; False or X -> X
                return updated.right
            return updated.left
        ok, right = _value(updated.right)
        if ok and isinstance(right, bool) and _is_bool(updated.left):  # exact only for a bool X
            # X and True -> X; X or False -> X; X and False -> False; X or True -> True
            return updated.left if right == is_and else literal(right)
        return updated

    def leave_IfExp(self, original, updated: cst.IfExp) -> cst.BaseExpression:
        ok, test = _value(updated.test)
        if not ok:
            return updated
        return updated.body if test else updated.orelse

    def leave_Tuple(self, original, updated: cst.Tuple) -> cst.Tuple:
        if len(updated.elements) == 1 and not isinstance(updated.elements[0].comma, cst.Comma):
            return updated.with_changes(elements=[updated.elements[0].with_changes(comma=cst.Comma())])
        return updated

    def visit_If(self, node: cst.If) -> bool:
        if isinstance(node.orelse, cst.If):
            self.elifs.add(id(node.orelse))
        return True

    def leave_If(self, original, updated: cst.If):
        if id(original) in self.elifs:  # an elif: its parent simplifies the chain
            return updated
        updated = updated.with_changes(orelse=_simplify_orelse(updated.orelse))
        ok, test = _value(updated.test)
        if not ok:
            return updated
        if test:
            return cst.FlattenSentinel(_statements(updated.body))
        if updated.orelse is None:
            return cst.RemoveFromParent()
        if isinstance(updated.orelse, cst.If):  # elif: becomes the if
            return updated.orelse.with_changes(leading_lines=updated.leading_lines)
        return cst.FlattenSentinel(_statements(updated.orelse.body))

    def leave_IndentedBlock(self, original, updated: cst.IndentedBlock) -> cst.IndentedBlock:
        body = _cut_after_exit(updated.body)
        if not body:
            body = [cst.SimpleStatementLine([cst.Pass()])]
        return updated.with_changes(body=body)


def _constants(module: cst.Module) -> dict[str, Any]:
    """Module-level `NAME = <literal>` assignments."""
    found = {}
    for statement in module.body:
        name = _defined_name(statement)
        if name and isinstance(statement, cst.SimpleStatementLine):
            ok, value = _value(statement.body[0].value)
            if ok:
                found[name] = value
    return found


def _fold_constant_arguments(module: cst.Module) -> tuple[cst.Module, dict[str, dict[str, Any]]]:
    """Private module-level functions called exactly once, with literal positional arguments: those
    arguments leave the call and become parameter folds {function: {param: value}}."""
    functions = {s.name.value: s for s in module.body if isinstance(s, cst.FunctionDef) and s.name.value.startswith("_")}
    calls: dict[str, list[cst.Call]] = {}
    for node in _walk(module):
        if isinstance(node, cst.Call) and isinstance(node.func, cst.Name) and node.func.value in functions:
            calls.setdefault(node.func.value, []).append(node)
    folds: dict[str, dict[str, Any]] = {}
    for name, found in calls.items():
        if len(found) != 1:
            continue
        params = functions[name].params.params
        for param, arg in zip(params, found[0].args):
            ok, value = _value(arg.value)
            if arg.keyword is None and not arg.star and ok:
                folds.setdefault(name, {})[param.name.value] = value
    if not folds:
        return module, {}

    class _DropArgs(cst.CSTTransformer):
        def leave_Call(self, original, updated: cst.Call) -> cst.Call:
            if not (isinstance(updated.func, cst.Name) and updated.func.value in folds):
                return updated
            params = [p.name.value for p in functions[updated.func.value].params.params]
            args = [a for i, a in enumerate(updated.args)
                    if a.keyword is not None or i >= len(params) or params[i] not in folds[updated.func.value]]
            if args:
                args[-1] = args[-1].with_changes(comma=cst.MaybeSentinel.DEFAULT)
            return updated.with_changes(args=args)

    return module.visit(_DropArgs()), folds


def _simplify_orelse(orelse):
    """An elif chain with its constant tests resolved (True: the else branch; False: skipped)."""
    if not isinstance(orelse, cst.If):
        return orelse
    ok, test = _value(orelse.test)
    if not ok:
        return orelse.with_changes(orelse=_simplify_orelse(orelse.orelse))
    if test:
        return cst.Else(body=orelse.body)
    return _simplify_orelse(orelse.orelse)


def _statements(suite: cst.BaseSuite) -> list[cst.BaseStatement]:
    if isinstance(suite, cst.SimpleStatementSuite):  # `if x: return y` on one line
        return [cst.SimpleStatementLine(list(suite.body))]
    return list(suite.body)


def _cut_after_exit(body: Sequence[cst.BaseStatement]) -> list[cst.BaseStatement]:
    """The statements up to the first unconditional return or raise."""
    kept = []
    for statement in body:
        kept.append(statement)
        if isinstance(statement, cst.SimpleStatementLine) and any(
                isinstance(s, (cst.Return, cst.Raise)) for s in statement.body):
            break
    return kept


def _defined_name(statement: cst.CSTNode) -> str | None:
    if isinstance(statement, (cst.FunctionDef, cst.ClassDef)):
        return statement.name.value
    if isinstance(statement, cst.SimpleStatementLine) and len(statement.body) == 1:
        small = statement.body[0]
        if isinstance(small, cst.Assign) and len(small.targets) == 1 and isinstance(small.targets[0].target, cst.Name):
            return small.targets[0].target.value
    return None


def _drop_unreferenced(module: cst.Module, keep: frozenset[str]) -> cst.Module:
    """Removes module-level definitions that nothing else in the module names (except `keep`)."""
    used: dict[str, int] = {}
    for node in _walk(module):
        if isinstance(node, cst.Name):
            used[node.value] = used.get(node.value, 0) + 1
    body = []
    for statement in module.body:
        name = _defined_name(statement)
        own = sum(1 for n in _walk(statement) if isinstance(n, cst.Name) and n.value == name) if name else 0
        if name and name not in keep and used.get(name, 0) <= own:
            continue
        body.append(statement)
    return module.with_changes(body=body)


def _walk(node: cst.CSTNode) -> Iterable[cst.CSTNode]:
    yield node
    for child in node.children:
        yield from _walk(child)


class _DropComments(cst.CSTTransformer):
    """Drops comments and docstrings that mention a later record's terms."""

    def __init__(self, terms: Sequence[str]):
        super().__init__()
        self.pattern = re.compile("|".join(rf"(?<![\w]){re.escape(t)}(?![\w])" for t in terms), re.IGNORECASE)

    def _later(self, text: str) -> bool:
        return bool(self.pattern.search(text))

    def leave_EmptyLine(self, original, updated: cst.EmptyLine):
        if updated.comment is not None and self._later(updated.comment.value):
            return cst.RemoveFromParent()
        return updated

    def leave_TrailingWhitespace(self, original, updated: cst.TrailingWhitespace):
        if updated.comment is not None and self._later(updated.comment.value):
            return updated.with_changes(comment=None, whitespace=cst.SimpleWhitespace(""))
        return updated

    def leave_SimpleStatementLine(self, original, updated: cst.SimpleStatementLine):
        if (len(updated.body) == 1 and isinstance(updated.body[0], cst.Expr)
                and isinstance(updated.body[0].value, (cst.SimpleString, cst.ConcatenatedString))
                and self._later(cst.Module([]).code_for_node(updated.body[0].value))):
            return cst.RemoveFromParent()
        return updated

    def leave_IndentedBlock(self, original, updated: cst.IndentedBlock) -> cst.IndentedBlock:
        if not updated.body:
            return updated.with_changes(body=[cst.SimpleStatementLine([cst.Pass()])])
        return updated
