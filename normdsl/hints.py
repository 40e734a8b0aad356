"""Hints in the user's words: readable names of the grammar's tokens, the spellings Keras and PyTorch
give layers, and rewrites of common mistakes as the user typed them."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from normdsl.diagnostics import did_you_mean

# ---- tokens ------------------------------------------------------------------------------------

# Readable names of the tokens a pattern cannot name; a token of plain text is named by its text
# ("res(" is res(...), "=" is '='), so a token added to the grammar needs no entry here.
TOKEN_WORDS = {
    "NAME": "a name",
    "CALL": "a layer with arguments",
    "WIDTH_OPEN": "a layer with a computed width, e.g. conv{f}",
    "INT": "an integer",
    "FLOAT": "a number",
    "STRING": 'a "string"',
    "COMMENT": "a comment",
    "$END": "the end of the spec",
}
_LAYER_START = frozenset({"NAME", "CALL", "WIDTH_OPEN"})  # expected together: any layer may come
_OPENING = r"[a-z_]+\("  # (patterns are compiled on first use, by re's cache: only errors need them)


def token_word(name: str, text: str | None) -> str:
    """How a token is named in a message: from the table, else by its ``text`` (a call's opening
    "res(" as res(...), other text quoted), else in lower-case words, never the grammar's name."""
    if name in TOKEN_WORDS:
        return TOKEN_WORDS[name]
    if text is not None:
        return text + "...)" if re.fullmatch(_OPENING, text) else repr(text)
    return name.strip("_").lower().replace("_", " ")


def expected(names: Iterable[str], texts: Mapping[str, str | None]) -> str | None:
    """``expected ')' or ','`` for the token names a parser would have accepted; ``texts`` gives the
    text of each token of plain text (None for a pattern)."""
    wanted = {n for n in names if not n.startswith("__IGNORE")}
    if not wanted:
        return None
    words = {token_word(n, texts.get(n)) for n in wanted - _LAYER_START}
    if "CALL" in wanted and "NAME" in wanted:
        words.add("a layer")
    else:
        words |= {token_word(n, texts.get(n)) for n in wanted & _LAYER_START}
    listed = sorted(words, key=lambda w: (w[0].isalpha(), w))  # punctuation first, then words
    return "expected " + (listed[0] if len(listed) == 1 else ", ".join(listed[:-1]) + " or " + listed[-1])


# ---- layer names -------------------------------------------------------------------------------

# Other libraries' names for normdsl's layers, lower-case and without underscores: Keras's class
# names, PyTorch's module names and common abbreviations.
LAYER_ALIASES = {
    **dict.fromkeys(["batchnorm", "batchnormalization", "batchnorm1d", "batchnorm2d", "batchnorm3d"], "bn"),
    **dict.fromkeys(["groupnorm", "groupnormalization"], "gn"),
    **dict.fromkeys(["layernorm", "layernormalization"], "ln"),
    **dict.fromkeys(["instancenorm", "instancenormalization", "instancenorm1d", "instancenorm2d"], "in"),
    **dict.fromkeys(["conv2d", "convolution", "convolution2d"], "conv"),
    **dict.fromkeys(["depthwiseconv2d", "depthwiseconv", "dwconv2d"], "dwconv"),
    **dict.fromkeys(["separableconv2d", "separableconv", "sepconv2d", "separableconvolution2d"], "sepconv"),
    **dict.fromkeys(["linear", "fc", "fullyconnected", "lazylinear"], "dense"),
    **dict.fromkeys(["swish"], "silu"),
    **dict.fromkeys(["maxpool2d", "maxpooling2d", "maxpooling"], "maxpool"),
    **dict.fromkeys(["avgpool2d", "averagepooling2d", "averagepooling", "avgpooling2d"], "avgpool"),
    **dict.fromkeys(
        ["adaptiveavgpool2d", "globalaveragepooling2d", "globalavgpool2d", "globalavgpool", "globalaveragepooling"],
        "gap",
    ),
    **dict.fromkeys(["adaptivemaxpool2d", "globalmaxpooling2d", "globalmaxpool2d", "globalmaxpool"], "gmp"),
    **dict.fromkeys(["dropout2d", "spatialdropout2d"], "dropout"),
    **dict.fromkeys(["zeropadding2d", "zeropad2d"], "zeropad"),
    **dict.fromkeys(["upsampling2d", "upsample2d"], "upsample"),
    **dict.fromkeys(["stochasticdepth", "droppath", "drop_path"], "droppath"),
    **dict.fromkeys(["rescaling"], "rescale"),
    **dict.fromkeys(["normalization"], "normalize"),
}


def layer_hint(name: str, choices: Iterable[str]) -> str | None:
    """``did you mean 'bn'?`` for an unknown layer: the same name in other letter case, another
    library's name for it (BatchNorm2d, Dense, GlobalAveragePooling2D), or a close spelling."""
    choices = list(choices)
    folded = {c.lower(): c for c in choices}
    key = name.lower().replace("_", "")
    alias = LAYER_ALIASES.get(key, key)
    if alias in folded:
        return f"did you mean '{folded[alias]}'?"
    return did_you_mean(name, choices)


# ---- mistakes as typed -------------------------------------------------------------------------

_PAIR = r"(?:[xX][0-9]+)+"
_SPACED = r"(?<![A-Za-z0-9_])([A-Za-z_][A-Za-z0-9_]*)[ \t]+(\(?)[ \t]*([^()\s]*)$"
_MAX_SHOWN = 60  # a rewrite longer than this is not shown


def _line_around(text: str, pos: int) -> tuple[str, str]:
    """The text of ``pos``'s line before and from ``pos`` (at most 200 characters each way)."""
    start = max(text.rfind("\n", 0, pos) + 1, pos - 200)
    end = text.find("\n", pos)
    end = min(len(text) if end < 0 else end, pos + 200)
    return text[start:pos], text[pos:end]


def pair_rewrite(text: str, pos: int, word: str) -> str | None:
    """``write k=(3, 3)`` for ``k=3x3``: ``word`` (x3) was found at ``pos`` right after a number."""
    if not re.fullmatch(_PAIR, word):
        return None
    before, _ = _line_around(text, pos)
    found = re.search(r"(?:([A-Za-z_][A-Za-z0-9_]*)[ \t]*=[ \t]*)?(-?[0-9]+)$", before)
    if found is None:
        return None
    numbers = [found[2], *re.findall(r"[0-9]+", word)]
    rewrite = (f"{found[1]}=" if found[1] else "") + "(" + ", ".join(numbers) + ")"
    return f"write {rewrite}" if len(rewrite) <= _MAX_SHOWN else None


def spaced_call_rewrite(text: str, pos: int) -> str | None:
    """``write gn(16)`` for ``gn 16`` or ``gn (16)``, the error found at ``pos`` in its arguments."""
    before, after = _line_around(text, pos)
    found = re.search(_SPACED, before)  # a name, a space, then only arguments up to the error
    if found is None or found[1] == "let":
        return None
    if found[2]:  # gn (16): the arguments up to ')'
        close = after.find(")")
        args = found[3] + (after[:close] if close >= 0 else after.rstrip())
    else:  # gn 16: the argument written
        args = found[3] + re.split(r"[\s()]", after, maxsplit=1)[0]
    args = args.strip().rstrip(",")
    if not re.fullmatch(r"[A-Za-z0-9_\"'.+-][^(]*", args) or args.endswith("=") or len(args) > _MAX_SHOWN:
        return None
    return f"write {found[1]}({args})"
