"""Spec text → AST without importing lark: lark's own LALR tables for ``grammar/normdsl.lark`` (exported from
the lark parser once, cached as JSON by parser.py) run by a small driver that builds the AST as it reduces,
with no parse tree.

Where it succeeds the driver does exactly what lark does: the same tokens (the contextual lexer's choice
in each parser state, keywords retyped as lark's "unless" callbacks retype them), the same reductions and
children (``_rule`` inlined, ``?rule`` passed through, anonymous tokens filtered out), the same spans
(lark's ``propagate_positions``: a node spans its first to its last child, tokens filtered out included)
and the same work counted against the budget. Wherever lark would report something (a syntax error, a
spec over its budget or nested too deeply) it raises :class:`Unsupported` instead, and parser.py runs
lark itself, which says what is wrong. A test runs both on every example, golden case and fuzzed input.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from lark import Lark

FORMAT = 1  # of the exported tables; part of the cache's key


class Unsupported(Exception):
    """The driver stops where lark would report a problem: lark's own parse says what it is."""


class Tok(NamedTuple):
    """A token (text and terminal name) or a node's extent (text and type empty), positioned as lark
    positions them: 1-based line and column, end exclusive, and 0-based offsets."""

    text: str
    type: str
    line: int
    column: int
    start: int
    end_line: int
    end_column: int
    end: int


def export(parser: Lark) -> dict[str, Any]:
    """What the driver needs of a lark LALR parser (contextual lexer, no placeholders), as JSON data."""
    from lark.lexer import PatternStr, _create_unless
    from lark.parsers.lalr_analysis import Shift

    frontend = parser.parser
    table = frontend.parser.parser.parse_table
    contextual = frontend.lexer
    root = contextual.root_lexer
    rules: list[Any] = []
    ids: dict[int, int] = {}

    def rule_id(rule: Any) -> int:
        if id(rule) not in ids:
            ids[id(rule)] = len(rules)
            rules.append(rule)
        return ids[id(rule)]

    if sorted(table.states) != list(range(len(table.states))):
        raise NotImplementedError("normdsl: lark's parser states are not numbered 0..n-1")
    states = []
    for number in range(len(table.states)):
        row = {}
        for symbol, (action, arg) in table.states[number].items():
            row[symbol] = arg if action is Shift else ~rule_id(arg)
        states.append(row)
    scanners: list[Any] = []
    scanner_ids: dict[tuple[str, ...], int] = {}
    of_state = []
    for number in range(len(table.states)):
        basic = contextual.lexers[number]
        terminals, callbacks = _create_unless(  # type: ignore[no-untyped-call]
            basic.terminals, basic.g_regex_flags, basic.re, basic.use_bytes
        )
        names = tuple(t.name for t in terminals)
        if names not in scanner_ids:
            unless = {}
            for name, callback in callbacks.items():
                strings = callback.scanner.terminals
                if not all(isinstance(t.pattern, PatternStr) and not t.pattern.flags for t in strings):
                    raise NotImplementedError(f"normdsl: keywords with flags retyping {name}")
                unless[name] = {t.pattern.value: t.name for t in reversed(strings)}  # the first wins
            scanner_ids[names] = len(scanners)
            scanners.append([list(names), unless])
        of_state.append(scanner_ids[names])
    if parser.options.lexer != "contextual" or parser.options.postlex or not parser.options.propagate_positions:
        raise NotImplementedError("normdsl: the driver runs lark's contextual lexer with positions only")
    exported_rules = []
    for rule in rules:
        name = rule.alias or rule.options.template_source or rule.origin.name
        if rule.options.keep_all_tokens or (parser.options.maybe_placeholders and rule.options.empty_indices):
            raise NotImplementedError(f"normdsl: rule {name} keeps all tokens or placeholders")
        if name.startswith("_") and rule.options.expand1:
            raise NotImplementedError(f"normdsl: rule {name} is both inlined and expanded")
        plan = [[i, not s.is_term and s.name.startswith("_")] for i, s in enumerate(rule.expansion)]
        plan = [[i, expand] for i, expand in plan if not (rule.expansion[i].is_term and rule.expansion[i].filter_out)]
        unchanged = len(plan) == len(rule.expansion) and not any(expand for _, expand in plan)
        expand1 = bool(rule.options.expand1 and not rule.alias)
        exported_rules.append([rule.origin.name, name, len(rule.expansion), expand1, None if unchanged else plan])
    if contextual.root_lexer.g_regex_flags or root.use_bytes:
        raise NotImplementedError("normdsl: regex flags or bytes in the lexer")
    return {
        "format": FORMAT,
        "terminals": [[t.name, t.pattern.to_regexp()] for t in root.terminals],  # lark's order
        "newline": sorted(root.newline_types),
        "ignore": sorted(root.ignore_types),
        "states": states,
        "rules": exported_rules,
        "scanners": scanners,
        "scanner_of_state": of_state,
        "start": table.start_states["start"],
        "end": table.end_states["start"],
    }


class _Rule:
    __slots__ = ("expand1", "name", "origin", "plan", "size", "splice")

    def __init__(self, origin: str, name: str, size: int, expand1: bool, plan: list[list[Any]] | None) -> None:
        self.origin, self.name, self.size, self.expand1 = origin, name, size, expand1
        self.plan = None if plan is None else tuple((int(i), bool(e)) for i, e in plan)
        self.splice = name.startswith("_")


def _none(extent: Tok | None, children: list[Any]) -> object:
    return None  # (for rules inlined into their parent: never called)


def _missing(name: str) -> Callable[[Tok | None, list[Any]], object]:
    def missing(extent: Tok | None, children: list[Any]) -> object:
        raise NotImplementedError(f"normdsl: grammar rule {name!r} has no AST translation")

    return missing


class _Scanner:
    __slots__ = ("_regex", "allowed", "names", "unless")

    def __init__(self, names: list[str], unless: dict[str, dict[str, str]]) -> None:
        self.names, self.unless = names, unless
        self.allowed = frozenset(names)
        self._regex: re.Pattern[str] | None = None

    def regex(self, patterns: dict[str, str]) -> re.Pattern[str]:
        """lark's scanner for this state, built on first need (the one-pattern path covers most tokens)."""
        if self._regex is None:
            self._regex = re.compile("|".join(f"(?P<{n}>{patterns[n]})" for n in self.names))
        return self._regex


class Tables:
    """Exported tables made ready to run: one pattern of every terminal in lark's order (the first
    terminal it matches is the contextual lexer's choice whenever the state accepts that terminal), and
    the gotos with chains of unit reductions that build nothing spliced in (see :meth:`_chained`)."""

    def __init__(self, data: dict[str, Any]) -> None:
        if data.get("format") != FORMAT:
            raise ValueError("tables of another format")
        self.patterns: dict[str, str] = {str(n): str(r) for n, r in data["terminals"]}
        self.master = re.compile("|".join(f"(?P<{n}>{r})" for n, r in self.patterns.items()))
        self.newline = frozenset(data["newline"])
        self.ignore = frozenset(data["ignore"])
        self.states: list[dict[str, int]] = data["states"]
        self.rules = [_Rule(*r) for r in data["rules"]]
        scanners = [_Scanner(names, unless) for names, unless in data["scanners"]]
        self.scanner_of_state = [scanners[i] for i in data["scanner_of_state"]]
        self.start: int = data["start"]
        self.end: int = data["end"]
        if len(self.scanner_of_state) != len(self.states):
            raise ValueError("tables: a scanner for every state")
        if any(rule.size == 0 and rule.origin != "start" for rule in self.rules):
            # (the driver takes a node's extent from its first and last child: every node but the root has one)
            raise NotImplementedError("normdsl: a grammar rule that derives nothing")
        self.actions = self._chained()

    def _chained(self) -> list[dict[str, int]]:
        """The states' actions, each goto on a nonterminal taken on through the states that only reduce
        one rule (whatever comes next) of one child that builds nothing: ``_item: layer`` (a spliced rule:
        its value is ``[child]``), ``_statement: _item`` (``child`` itself), ``?expr: product``. Such a
        goto is stored as ``~state`` when the value is to be put in a list. Reducing in these states
        before looking at the next token is LALR's default reduction: the same tree for the same text,
        and an error still found before the token that makes it is shifted."""
        origins = {rule.origin for rule in self.rules}
        passing: dict[int, tuple[str, bool]] = {}  # state → (what it reduces to, whether it wraps in a list)
        for number, row in enumerate(self.states):
            reduces = {action for symbol, action in row.items() if symbol not in origins}
            if number == self.end or len(reduces) != 1 or any(symbol in origins for symbol in row):
                continue
            (action,) = reduces
            if action >= 0:
                continue
            rule = self.rules[~action]
            if rule.size == 1 and rule.splice and rule.plan is None:
                passing[number] = (rule.origin, True)
            elif rule.size == 1 and (
                (rule.splice and rule.plan == ((0, True),)) or (rule.expand1 and rule.plan is None)
            ):
                passing[number] = (rule.origin, False)
        actions = []
        for row in self.states:
            chained = dict(row)
            for symbol, target in row.items():
                if symbol not in origins:
                    continue
                wrap = False
                for _ in range(len(self.states)):  # (a chain of unit rules visits a state at most once)
                    if target not in passing:
                        break
                    origin, wraps = passing[target]
                    if wraps and wrap:
                        break
                    wrap = wrap or wraps
                    target = row[origin]
                chained[symbol] = ~target if wrap else target
            actions.append(chained)
        return actions

    def reductions(
        self, methods: object, layer_rules: frozenset[str], nesting_rules: frozenset[str]
    ) -> list[
        tuple[int, str, int, Callable[[Tok | None, list[Any]], object], int, bool, tuple[tuple[int, bool], ...] | None]
    ]:
        """Per rule: its size, origin, what it makes (_CALL, _SPLICE or _EXPAND1), the method building its
        node, the nesting it adds, whether it is a layer, and which children it keeps (None: all)."""
        plans = []
        for rule in self.rules:
            method = _none if rule.splice else getattr(methods, rule.name, None)
            how = _SPLICE if rule.splice else _EXPAND1 if rule.expand1 else _CALL
            nests = int(rule.name in nesting_rules)
            plans.append(
                (rule.size, rule.origin, how, method or _missing(rule.name), nests, rule.name in layer_rules, rule.plan)
            )
        return plans


_CALL, _SPLICE, _EXPAND1 = 0, 1, 2


def run(
    tables: Tables,
    text: str,
    methods: object,
    *,
    max_nodes: int,
    max_layers: int,
    layer_rules: frozenset[str],
    nesting_rules: frozenset[str],
    max_nesting: int,
) -> object:
    """Parse ``text``, calling ``methods``'s method named after each rule (or alias) with the node's
    extent and its children as the rule reduces; the start rule's value is returned."""
    rules = tables.reductions(methods, layer_rules, nesting_rules)
    actions, scanners, patterns = tables.actions, tables.scanner_of_state, tables.patterns
    match, newline, ignore, end_state = tables.master.match, tables.newline, tables.ignore, tables.end
    new = tuple.__new__
    state = tables.start
    below: list[int] = []  # the state each value was pushed in (the one to go back to when it is reduced)
    values: list[Any] = []
    extents: list[Tok | None] = []  # (lark's "container" positions, which parents take their spans from)
    depths: list[int] = []  # nesting below each node as lark's check counts it; -1 for a token
    pos, line, line_start, length = 0, 1, 0, len(text)
    nodes = layers = 0
    token: Tok | None
    result: Any
    while True:
        if pos < length:
            m = match(text, pos)
            if m is None:
                raise Unsupported
            kind = m.lastgroup
            scanner = scanners[state]
            if kind not in scanner.allowed:
                m = scanner.regex(patterns).match(text, pos)
                if m is None:
                    raise Unsupported
                kind = m.lastgroup
            value = m.group()
            start, token_line = pos, line
            pos = m.end()
            if kind in newline:
                count = value.count("\n")
                if count:
                    line += count
                    line_start = start + value.rindex("\n") + 1
                if kind in ignore:
                    continue
            elif kind in ignore:
                continue
            unless = scanner.unless.get(kind)
            if unless is not None:
                kind = unless.get(value, kind)
            if kind == "INT":
                nodes += 1
                if nodes > max_nodes:
                    raise Unsupported
            token = new(Tok, (value, kind, token_line, start - line_start + 1, start, line, pos - line_start + 1, pos))
        else:
            token, kind = None, "$END"
        while True:
            action = actions[state].get(kind)  # type: ignore[arg-type]
            if action is None:
                raise Unsupported
            if action >= 0:  # shift
                if token is None:
                    raise Unsupported
                below.append(state)
                values.append(token)
                extents.append(token)
                depths.append(-1)
                state = action
                break
            size, origin, how, method, nests, layer, plan = rules[~action]
            if size == 1:  # (most reductions: in place; the node spans its one child, nested as deep)
                children = [values[-1]]
                extent = extents[-1]
                depth = depths[-1]
                state = below[-1]
            elif size:
                children = values[-size:]
                first, extent = extents[-size], extents[-1]
                depth = max(depths[-size:])
                state = below[-size]
                del values[1 - size :], extents[1 - size :], depths[1 - size :], below[1 - size :]
                assert first is not None and extent is not None
                extent = new(Tok, ("", "", first[2], first[3], first[4], extent[5], extent[6], extent[7]))
            else:  # (the start rule of an empty text)
                children, extent, depth = [], None, -1
                below.append(state)
                values.append(None)
                extents.append(None)
                depths.append(-1)
            if plan is not None:
                filtered: list[Any] = []
                for i, expand in plan:
                    if not expand:
                        filtered.append(children[i])
                    elif filtered:
                        filtered += children[i]
                    else:  # (left recursion: the list grows in place)
                        filtered = children[i]
                children = filtered
            if how == _SPLICE:
                result = children
            elif how == _EXPAND1 and len(children) == 1:
                result = children[0]
            else:
                nodes += 1
                if nodes > max_nodes:
                    raise Unsupported
                if layer:
                    layers += 1
                    if layers > max_layers:
                        raise Unsupported
                depth = depth + nests if depth >= 0 else 0
                if depth > max_nesting:
                    raise Unsupported
                result = method(extent, children)
            goto = actions[state][origin]
            if goto < 0:  # (through a rule that splices its one child into its parent)
                goto = ~goto
                result = [result]
            values[-1] = result
            extents[-1] = extent
            depths[-1] = depth
            state = goto
            if token is None and goto == end_state:
                return result
