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

import operator
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from lark import Lark

FORMAT = 2  # of the exported tables; part of the cache's key


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
    first = {t.name: first_characters(t.pattern.to_regexp()) for t in root.terminals}
    end = table.end_states["start"]
    return {
        "format": FORMAT,
        "terminals": [[t.name, t.pattern.to_regexp()] for t in root.terminals],  # lark's order
        "buckets": _buckets([t.name for t in root.terminals], first),
        "newline": sorted(root.newline_types),
        "ignore": sorted(root.ignore_types),
        "states": _chained(states, [_Rule(*r) for r in exported_rules], end),
        "rules": exported_rules,
        "scanners": scanners,
        "scanner_of_state": of_state,
        "start": table.start_states["start"],
        "end": end,
    }


def _buckets(names: list[str], first: dict[str, str | None]) -> list[list[Any]]:
    """The terminals to try at a character: terminals that share a first character go together (all
    that start with a letter, all that start with a digit or '-', ...), each group in lark's order with
    the terminals that may start anywhere; the last group (no characters) is for any other character."""
    anywhere = {n for n in names if first[n] is None}
    groups: list[tuple[set[str], set[str]]] = []  # (characters, terminals)
    for name in names:
        chars = set(first[name] or "")
        if name in anywhere:
            continue
        joined = [g for g in groups if g[0] & chars]
        groups = [g for g in groups if not g[0] & chars]
        groups.append((chars.union(*(g[0] for g in joined)), {name}.union(*(g[1] for g in joined))))
    buckets = [["".join(sorted(chars)), [n for n in names if n in terms or n in anywhere]] for chars, terms in groups]
    return [*buckets, ["", [n for n in names if n in anywhere]]]


def _chained(states: list[dict[str, int]], rules: list[_Rule], end: int) -> list[dict[str, int]]:
    """The states' actions, each goto on a nonterminal taken on through the states that only reduce
    one rule (whatever comes next) of one child that builds nothing: ``_item: layer`` (a spliced rule:
    its value is ``[child]``), ``_statement: _item`` (``child`` itself), ``?expr: product``. Such a
    goto is stored as ``~state`` when the value is to be put in a list. Reducing in these states
    before looking at the next token is LALR's default reduction: the same tree for the same text,
    and an error still found before the token that makes it is shifted."""
    origins = {rule.origin for rule in rules}
    passing: dict[int, tuple[str, bool]] = {}  # state → (what it reduces to, whether it wraps in a list)
    for number, row in enumerate(states):
        reduces = {action for symbol, action in row.items() if symbol not in origins}
        if number == end or len(reduces) != 1 or any(symbol in origins for symbol in row):
            continue
        (action,) = reduces
        if action >= 0:
            continue
        rule = rules[~action]
        if rule.size == 1 and rule.splice and rule.plan is None:
            passing[number] = (rule.origin, True)
        elif rule.size == 1 and ((rule.splice and rule.plan == ((0, True),)) or (rule.expand1 and rule.plan is None)):
            passing[number] = (rule.origin, False)
    actions = []
    for row in states:
        chained = dict(row)
        for symbol, target in row.items():
            if symbol not in origins:
                continue
            wrap = False
            for _ in range(len(states)):  # (a chain of unit rules visits a state at most once)
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


def first_characters(pattern: str) -> str | None:
    """The characters a match of ``pattern`` can start with, or None if that is not plain from its parsed
    form (any character, a negated set, a category, a flag, a lookaround, or a match of nothing)."""
    try:
        from re import _parser  # (sre's own parse of the pattern)

        parsed = _parser.parse(pattern)
        if parsed.state.flags & (re.IGNORECASE | re.LOCALE):
            return None
        chars, empty = _first(parsed.data, _parser)
    except Exception:  # another Python's parse: then every terminal is tried at every character
        return None
    return None if chars is None or empty else "".join(sorted(chars))


def _first(items: Any, sre: Any) -> tuple[set[str] | None, bool]:
    """(first characters or None for any, whether it can match nothing) of a sequence of sre items."""
    c = sre  # (its opcodes)
    chars: set[str] = set()
    for op, av in items:
        empty = False
        if op is c.LITERAL:
            found: set[str] | None = {chr(av)}
        elif op is c.IN:
            found = set()
            for kind, arg in av:
                if kind is c.LITERAL:
                    found.add(chr(arg))
                elif kind is c.RANGE and arg[1] - arg[0] < 256:
                    found.update(chr(i) for i in range(arg[0], arg[1] + 1))
                else:
                    found = None
                    break
        elif op is c.BRANCH:
            found = set()
            for branch in av[1]:
                more, may = _first(branch, sre)
                found = None if found is None or more is None else found | more
                empty = empty or may
        elif op is c.SUBPATTERN and not av[1] and not av[2]:
            found, empty = _first(av[3], sre)
        elif op is c.ATOMIC_GROUP:
            found, empty = _first(av, sre)
        elif op in (c.MAX_REPEAT, c.MIN_REPEAT, c.POSSESSIVE_REPEAT):
            found, empty = _first(av[2], sre)
            empty = empty or av[0] == 0
        elif op is c.AT:  # (an anchor takes no character: what follows it comes first)
            found, empty = set(), True
        else:
            found = None
        if found is None:
            return None, False
        chars |= found
        if not empty:
            return chars, False
    return chars, True


class _Rule:
    __slots__ = ("expand1", "keep", "name", "origin", "plan", "size", "splice")

    def __init__(self, origin: str, name: str, size: int, expand1: bool, plan: list[list[Any]] | None) -> None:
        self.origin, self.name, self.size, self.expand1 = origin, name, size, expand1
        self.plan = None if plan is None else tuple((int(i), bool(e)) for i, e in plan)
        self.splice = name.startswith("_")
        self.keep = None if self.plan is None else _keeper(self.plan)


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


class _ByFirst(dict[str, Callable[[str, int], "re.Match[str] | None"]]):
    """The pattern to match at a character: the terminals that can start with it (and a few more), in
    lark's order (the same first match as all of them), compiled on first need."""

    def __init__(self, patterns: dict[str, str], buckets: list[list[Any]]) -> None:
        super().__init__()
        self.patterns = patterns
        self.buckets = [tuple(str(n) for n in names) for _, names in buckets]
        self.bucket_of = {c: i for i, (chars, _) in enumerate(buckets) for c in chars}
        self.compiled: dict[int, Callable[[str, int], re.Match[str] | None]] = {}
        if not self.buckets or any(n not in patterns for names in self.buckets for n in names):
            raise ValueError("tables: buckets of unknown terminals")

    def __missing__(self, char: str) -> Callable[[str, int], re.Match[str] | None]:
        bucket = self.bucket_of.get(char, len(self.buckets) - 1)
        if bucket not in self.compiled:
            alternatives = "|".join(f"(?P<{n}>{self.patterns[n]})" for n in self.buckets[bucket])
            self.compiled[bucket] = re.compile(alternatives or "(?!)").match
        self[char] = self.compiled[bucket]
        return self[char]


class Tables:
    """Exported tables made ready to run: per character, one pattern of the terminals that can start with
    it in lark's order (the first terminal it matches is the contextual lexer's choice whenever the state
    accepts that terminal), and the states' actions with gotos chained (see :func:`_chained`)."""

    def __init__(self, data: dict[str, Any]) -> None:
        if data.get("format") != FORMAT:
            raise ValueError("tables of another format")
        self.patterns: dict[str, str] = {str(n): str(r) for n, r in data["terminals"]}
        self.by_first = _ByFirst(self.patterns, data["buckets"])
        self.newline = frozenset(data["newline"])
        self.ignore = frozenset(data["ignore"])
        self.states: list[dict[str, int]] = data["states"]  # the actions, gotos chained when exported
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
        self.allowed = [scanner.allowed for scanner in self.scanner_of_state]
        self.unless = [scanner.unless for scanner in self.scanner_of_state]
        self.special = {kind: (kind in self.newline, kind in self.ignore) for kind in self.newline | self.ignore}
        self.plain = [  # per state, the tokens taken as they are matched
            allowed - self.newline - self.ignore - set(unless) - {"INT"}
            for allowed, unless in zip(self.allowed, self.unless, strict=True)
        ]

    def reductions(self, methods: object, layer_rules: frozenset[str], nesting_rules: frozenset[str]) -> list[_Reduce]:
        """Per rule: its size, origin, what it makes (_CALL, _SPLICE or _EXPAND1), the method building its
        node, the nesting it adds, whether it is a layer, and which children it keeps (None: all)."""
        plans = []
        for rule in self.rules:
            method = _none if rule.splice else getattr(methods, rule.name, None)
            how = _SPLICE if rule.splice else _EXPAND1 if rule.expand1 else _CALL
            nests = int(rule.name in nesting_rules)
            keep = rule.keep
            shape = _GENERAL
            if rule.size == 1 and keep is None:
                shape = _WRAP if how == _SPLICE else _PASS if how == _EXPAND1 else _UNIT
            method = method or _missing(rule.name)
            plans.append((shape, rule.origin, rule.size, how, method, nests, rule.name in layer_rules, keep))
        return plans


_CALL, _SPLICE, _EXPAND1 = 0, 1, 2  # what a rule makes: a node (its method's), its children spliced, its one child
_WRAP, _PASS, _UNIT, _GENERAL = 0, 1, 2, 3  # the shapes of reduction the driver does in fewer steps
_Reduce = tuple[
    int, str, int, int, Callable[[Any, list[Any]], object], int, bool, Callable[[list[Any]], list[Any]] | None
]


def _keeper(plan: tuple[tuple[int, bool], ...]) -> Callable[[list[Any]], list[Any]]:
    """A rule's children as its node takes them: the kept ones, those of a spliced child in its place (a
    left-recursive list grows in place)."""
    if not any(expand for _, expand in plan):
        indices = [i for i, _ in plan]
        if len(indices) == 1:
            (only,) = indices
            return lambda children: [children[only]]
        if len(indices) == 2:
            one, two = indices
            return lambda children: [children[one], children[two]]
        pick = operator.itemgetter(*indices)
        return lambda children: list(pick(children))
    if len(plan) == 2 and not plan[0][1]:  # an item and a list: CALL _args of call_layer
        (head, _), (rest, _) = plan
        return lambda children: [children[head], *children[rest]]
    if len(plan) == 2 and plan[0][1]:  # a list and one more item, or a list and another list
        (first, _), (then, expand) = plan
        if expand:

            def extended(children: list[Any]) -> list[Any]:
                grown: list[Any] = children[first]
                grown += children[then]
                return grown

            return extended

        def appended(children: list[Any]) -> list[Any]:
            grown: list[Any] = children[first]
            grown.append(children[then])
            return grown

        return appended

    def kept(children: list[Any]) -> list[Any]:
        filtered: list[Any] = []
        for i, expand in plan:
            if not expand:
                filtered.append(children[i])
            elif filtered:
                filtered += children[i]
            else:  # (left recursion: the list grows in place)
                filtered = children[i]
        return filtered

    return kept


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
    actions, by_first, end_state = tables.states, tables.by_first, tables.end
    allowed, unless, special, plain = tables.allowed, tables.unless, tables.special, tables.plain
    new = tuple.__new__
    state = tables.start
    below: list[int] = []  # the state each value was pushed in (the one to go back to when it is reduced)
    values: list[Any] = []
    extents: list[Tok | None] = []  # (lark's "container" positions, which parents take their spans from)
    depths: list[int] = []  # nesting below each node as lark's check counts it; -1 for a token
    pos, line, line_start, length = 0, 1, 0, len(text)
    nodes = layers = 0
    token: Tok | None
    kind: str
    result: Any
    while True:
        if pos < length:
            m = by_first[text[pos]](text, pos)
            if m is None:
                raise Unsupported
            kind = m.lastgroup  # type: ignore[assignment]  # (never None: every alternative is a named group)
            if kind in plain[state]:  # (most tokens: in the state's choice, on one line, not counted or retyped)
                start = pos
                pos = m.end()
                token = new(Tok, (m[0], kind, line, start - line_start + 1, start, line, pos - line_start + 1, pos))
            else:
                if kind not in allowed[state]:  # (the contextual lexer's own choice in this state)
                    m = tables.scanner_of_state[state].regex(tables.patterns).match(text, pos)
                    if m is None:
                        raise Unsupported
                    kind = m.lastgroup
                assert kind is not None
                value = m.group()
                start, token_line, token_line_start = pos, line, line_start
                pos = m.end()
                newline_or_ignored = special.get(kind)
                if newline_or_ignored is not None:
                    if newline_or_ignored[0]:
                        count = value.count("\n")
                        if count:
                            line += count
                            line_start = start + value.rindex("\n") + 1
                    if newline_or_ignored[1]:
                        continue
                retype = unless[state].get(kind)
                if retype is not None:
                    kind = retype.get(value, kind)
                if kind == "INT":
                    nodes += 1
                    if nodes > max_nodes:
                        raise Unsupported
                token = new(
                    Tok, (value, kind, token_line, start - token_line_start + 1, start, line, pos - line_start + 1, pos)
                )
        else:
            token, kind = None, "$END"
        while True:
            action = actions[state].get(kind)
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
            shape, origin, size, how, method, nests, layer, keep = rules[~action]
            if shape == _WRAP:  # (a spliced rule of one child, in place: _args: arg)
                state = below[-1]
                result = [values[-1]]
            elif shape == _UNIT:  # (a node of one child, in place: a name, a number, a bare layer)
                nodes += 1
                if nodes > max_nodes:
                    raise Unsupported
                if layer:
                    layers += 1
                    if layers > max_layers:
                        raise Unsupported
                depth = depths[-1]
                depth = depths[-1] = depth + nests if depth >= 0 else 0
                if depth > max_nesting:
                    raise Unsupported
                state = below[-1]
                result = method(extents[-1], [values[-1]])
            elif shape == _PASS:  # (?rule of one child)
                state = below[-1]
                result = values[-1]
            else:
                if size == 1:
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
                    extents[-1] = extent
                else:  # (the start rule of an empty text)
                    children, extent, depth = [], None, -1
                    below.append(state)
                    values.append(None)
                    extents.append(None)
                    depths.append(-1)
                if keep is not None:
                    children = keep(children)
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
                depths[-1] = depth
            goto = actions[state][origin]
            if goto < 0:  # (through a rule that splices its one child into its parent)
                goto = ~goto
                result = [result]
            values[-1] = result
            state = goto
            if token is None and goto == end_state:
                return result
