"""``normdsl lsp``: the language server (stdio), on pygls and lsprotocol's types.

Diagnostics on open and change (debounced, checked in a worker thread, a stale result never published),
hover with a layer's resolved call and figures, inlay hints with output shapes, definition and references
of blocks and used files, completion from the registry, document symbols, formatting (``normdsl.fmt``)
and rename of a block. What the answers are comes from ``normdsl.editor``; this module only speaks the
protocol: positions (UTF-16 by default, as the client negotiates), ranges, and the server's settings.
Imported only by ``normdsl lsp`` (pygls is the ``[lsp]`` extra); it never imports TensorFlow.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import os
import re
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import unquote, urlparse

from lsprotocol import types
from pygls.exceptions import JsonRpcException, JsonRpcInvalidParams
from pygls.lsp.server import LanguageServer
from pygls.protocol import LanguageServerProtocol

from normdsl import editor
from normdsl._version import __version__
from normdsl.ast import IDENTIFIER, BlockDef
from normdsl.diagnostics import MAX_SHOWN, Diagnostic, Span, SpecError
from normdsl.fmt import DEFAULT_WIDTH, format_spec
from normdsl.layers import COMPOSITES, KINDS


@dataclass
class Settings:
    """The server's settings: ``initializationOptions`` or ``workspace/didChangeConfiguration``
    (``{"normdsl": {...}}``): ``inlayHints`` (true), ``lineLength`` (120), ``debounceMs`` (150)."""

    inlay_hints: bool = True
    line_length: int = DEFAULT_WIDTH
    debounce: float = 0.15

    def update(self, options: object) -> None:
        if isinstance(options, dict) and isinstance(options.get("normdsl"), dict):
            options = options["normdsl"]
        if not isinstance(options, dict):
            return
        if isinstance(hints := options.get("inlayHints"), bool):
            self.inlay_hints = hints
        length = options.get("lineLength")
        if isinstance(length, int) and not isinstance(length, bool) and 1 <= length <= 10_000:
            self.line_length = length
        delay = options.get("debounceMs")
        if isinstance(delay, int | float) and not isinstance(delay, bool) and 0 <= delay <= 10_000:
            self.debounce = delay / 1000


class Lines:
    """Offsets in a text ↔ LSP positions: lines end at \\n, \\r\\n or \\r (as the protocol counts them; the
    parser's spans are offsets, so both agree on places), characters are counted in the negotiated encoding's
    units (UTF-16 unless the client chose UTF-8 or UTF-32)."""

    def __init__(self, text: str, encoding: str = "utf-16"):
        self.text = text
        self.starts = [0]
        self.ends = []
        for found in _LINE_BREAK.finditer(text):
            self.ends.append(found.start())
            self.starts.append(found.end())
        self.ends.append(len(text))
        self.encoding = encoding

    def units(self, piece: str) -> int:
        if piece.isascii() or self.encoding == "utf-32":
            return len(piece)
        codec = "utf-8" if self.encoding == "utf-8" else "utf-16-le"
        return len(piece.encode(codec, "surrogatepass")) // (1 if codec == "utf-8" else 2)

    def line_of(self, offset: int) -> int:
        return bisect.bisect_right(self.starts, max(0, offset)) - 1

    def position(self, offset: int) -> types.Position:
        offset = max(0, min(offset, len(self.text)))
        line = bisect.bisect_right(self.starts, offset) - 1
        return types.Position(line, self.units(self.text[self.starts[line] : min(offset, self.ends[line])]))

    def range(self, span: Span) -> types.Range:
        return types.Range(self.position(span.start), self.position(span.end))

    def line_end(self, line: int) -> int:
        return self.ends[line]

    def offset(self, position: types.Position) -> int:
        if position.line >= len(self.starts):
            return len(self.text)
        start = self.starts[max(0, position.line)]
        end = self.line_end(max(0, position.line))
        line = self.text[start:end]
        if line.isascii() or self.encoding == "utf-32":
            return start + min(max(0, position.character), len(line))
        count = 0
        for i, char in enumerate(line):
            if count >= position.character:
                return start + i
            count += self.units(char)
        return end


_LINE_BREAK = re.compile(r"\r\n|\r|\n")


@dataclass
class Document:
    uri: str
    text: str
    version: int | None
    filename: str
    analysis: editor.Analysis | None = None
    blocks: dict[str, BlockDef] = field(default_factory=dict)  # of the last text that parsed: for completion
    changes: int = 0


def filename_of(uri: str) -> str:
    """A document's name for diagnostics and relative ``use``: its path for a file, else ``<uri>``."""
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return unquote(parsed.path)
    return f"<{uri}>"


class _Protocol(LanguageServerProtocol):
    """pygls's protocol, but a request whose parameters do not fit its method gets an error response (pygls
    alone only shows a message, and the client would wait for the answer for ever)."""

    def structure_message(self, data: dict[str, Any]) -> Any:
        try:
            return super().structure_message(data)
        except JsonRpcException as exc:
            msg_id, method = data.get("id"), data.get("method")
            if not isinstance(method, str) or not isinstance(msg_id, int | str) or isinstance(msg_id, bool):
                raise
            self._send_response(msg_id, error=types.ResponseError(exc.code, f"invalid parameters for {method:.100}"))
            return _ANSWERED


_ANSWERED = SimpleNamespace(jsonrpc="answered")  # (handle_message ignores a message of another version)


class NormdslServer(LanguageServer):
    def __init__(self) -> None:
        kind = types.TextDocumentSyncKind.Full
        super().__init__("normdsl", __version__, text_document_sync_kind=kind, protocol_cls=_Protocol)
        self.settings = Settings()
        self.documents: dict[str, Document] = {}
        self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="normdsl-check")

    @property
    def encoding(self) -> str:
        try:
            return str(self.workspace.position_encoding or "utf-16")
        except RuntimeError:  # (no workspace before initialize)
            return "utf-16"

    def document(self, uri: str) -> Document:
        found = self.documents.get(uri)
        if found is None:
            raise JsonRpcInvalidParams(f"{uri[:200]} is not open")
        return found

    def analysis(self, doc: Document) -> editor.Analysis:
        """The document's analysis for its current text (made now if a check is still pending)."""
        if doc.analysis is None or doc.analysis.text != doc.text:
            self.analysed(doc, editor.analyze(doc.text, doc.filename))
        assert doc.analysis is not None
        return doc.analysis

    def analysed(self, doc: Document, analysis: editor.Analysis) -> None:
        doc.analysis = analysis
        if analysis.spec is not None:
            doc.blocks = {b.name: b for b in analysis.spec.blocks}

    def publish(self, doc: Document) -> None:
        found = diagnostics(self.analysis(doc), doc.uri, self.encoding)
        self.text_document_publish_diagnostics(
            types.PublishDiagnosticsParams(uri=doc.uri, diagnostics=found, version=doc.version)
        )

    async def check_later(self, doc: Document) -> None:
        """Diagnostics for the document once it has stopped changing for the debounce time; the check runs
        in the worker thread (the server keeps answering), and a result for older text is dropped."""
        doc.changes += 1
        mine = doc.changes
        if self.settings.debounce:
            await asyncio.sleep(self.settings.debounce)
        if doc.changes != mine or self.documents.get(doc.uri) is not doc:
            return
        text = doc.text
        analysis = await asyncio.get_running_loop().run_in_executor(self.worker, editor.analyze, text, doc.filename)
        if doc.changes != mine or doc.text != text:
            return
        self.analysed(doc, analysis)
        self.publish(doc)


def diagnostics(analysis: editor.Analysis, uri: str, encoding: str = "utf-16") -> list[types.Diagnostic]:
    """The analysis's diagnostics as the protocol's (the first MAX_SHOWN, as the CLI shows)."""
    lines = Lines(analysis.text, encoding)
    return [lsp_diagnostic(d, analysis, uri, lines) for d in analysis.diagnostics[:MAX_SHOWN]]


def lsp_diagnostic(d: Diagnostic, analysis: editor.Analysis, uri: str, lines: Lines) -> types.Diagnostic:
    """A diagnostic as the CLI says it: the message, its hint, and its notes (such as a block's use sites) as
    related locations. A problem in a used file is shown at the ``use`` that brings it in, and located in
    that file."""
    message = d.message + (f"\nhint: {d.hint}" if d.hint else "")
    severity = types.DiagnosticSeverity.Error if d.severity == "error" else types.DiagnosticSeverity.Warning
    here = d.elsewhere is None or d.elsewhere == (analysis.filename, analysis.text)
    if here:
        notes = [types.DiagnosticRelatedInformation(types.Location(uri, lines.range(s)), label) for label, s in d.notes]
        return types.Diagnostic(lines.range(d.span), message, severity, source="normdsl", related_information=notes)
    assert d.elsewhere is not None
    name, text = d.elsewhere
    path = editor.file_of(name, analysis.filename)
    related = []
    if path is not None:
        other = Lines(text, lines.encoding)
        location = types.Location(path.as_uri(), other.range(d.span))
        related.append(types.DiagnosticRelatedInformation(location, d.message))
        related += [
            types.DiagnosticRelatedInformation(types.Location(path.as_uri(), other.range(s)), label)
            for label, s in d.notes
        ]
    at = Span.at(analysis.text, 0)
    if analysis.spec is not None and analysis.spec.uses:
        stem = os.path.basename(name)
        uses = analysis.spec.uses
        at = next((u.span for u in uses if os.path.basename(u.path) == stem or f"{u.path}.nd" == stem), uses[0].span)
    message = f"{name}:{d.span.line}:{d.span.column}: {message}"
    return types.Diagnostic(lines.range(at), message, severity, source="normdsl", related_information=related)


SERVER = NormdslServer()


@SERVER.feature(types.INITIALIZE)
def initialize(ls: NormdslServer, params: types.InitializeParams) -> None:
    ls.settings.update(params.initialization_options)


@SERVER.feature(types.WORKSPACE_DID_CHANGE_CONFIGURATION)
def did_change_configuration(ls: NormdslServer, params: types.DidChangeConfigurationParams) -> None:
    ls.settings.update(params.settings)


@SERVER.feature(types.TEXT_DOCUMENT_DID_OPEN)
async def did_open(ls: NormdslServer, params: types.DidOpenTextDocumentParams) -> None:
    item = params.text_document
    doc = Document(item.uri, item.text, item.version, filename_of(item.uri))
    ls.documents[item.uri] = doc
    await ls.check_later(doc)


@SERVER.feature(types.TEXT_DOCUMENT_DID_CHANGE)
async def did_change(ls: NormdslServer, params: types.DidChangeTextDocumentParams) -> None:
    doc = ls.documents.get(params.text_document.uri)
    if doc is None or not params.content_changes:
        return
    change = params.content_changes[-1]  # full sync: each change is the whole text
    if not isinstance(change, types.TextDocumentContentChangeWholeDocument):
        raise JsonRpcInvalidParams("normdsl's server takes whole documents (TextDocumentSyncKind.Full)")
    doc.text, doc.version = change.text, params.text_document.version
    await ls.check_later(doc)


@SERVER.feature(types.TEXT_DOCUMENT_DID_SAVE)
async def did_save(ls: NormdslServer, params: types.DidSaveTextDocumentParams) -> None:
    """A saved file may be one that other open specs use: they are checked again."""
    others = [doc for uri, doc in ls.documents.items() if uri != params.text_document.uri]
    await asyncio.gather(*(ls.check_later(doc) for doc in others))


@SERVER.feature(types.TEXT_DOCUMENT_DID_CLOSE)
def did_close(ls: NormdslServer, params: types.DidCloseTextDocumentParams) -> None:
    if ls.documents.pop(params.text_document.uri, None) is not None:
        ls.text_document_publish_diagnostics(types.PublishDiagnosticsParams(params.text_document.uri, []))


@SERVER.feature(types.TEXT_DOCUMENT_HOVER)
def hover(ls: NormdslServer, params: types.HoverParams) -> types.Hover | None:
    doc = ls.document(params.text_document.uri)
    analysis = ls.analysis(doc)
    lines = Lines(analysis.text, ls.encoding)
    found = editor.hover(analysis, lines.offset(params.position))
    if found is None:
        return None
    text, span = found
    return types.Hover(types.MarkupContent(types.MarkupKind.Markdown, text), lines.range(span))


@SERVER.feature(types.TEXT_DOCUMENT_INLAY_HINT, types.InlayHintOptions(resolve_provider=False))
def inlay_hints(ls: NormdslServer, params: types.InlayHintParams) -> list[types.InlayHint]:
    if not ls.settings.inlay_hints:
        return []
    analysis = ls.analysis(ls.document(params.text_document.uri))
    lines = Lines(analysis.text, ls.encoding)
    first, last = params.range.start.line, params.range.end.line
    return [
        types.InlayHint(lines.position(lines.line_end(line)), label, types.InlayHintKind.Type, padding_left=True)
        for line, label in sorted(editor.line_shapes(analysis, lines.line_of).items())
        if first <= line <= last and line < len(lines.starts)
    ]


def _location(path: Path, span: Span, text: str | None, encoding: str) -> types.Location:
    if text is None:
        return types.Location(path.as_uri(), types.Range(types.Position(0, 0), types.Position(0, 0)))
    return types.Location(path.as_uri(), Lines(text, encoding).range(span))


@SERVER.feature(types.TEXT_DOCUMENT_DEFINITION)
def definition(ls: NormdslServer, params: types.DefinitionParams) -> list[types.Location]:
    doc = ls.document(params.text_document.uri)
    analysis = ls.analysis(doc)
    lines = Lines(analysis.text, ls.encoding)
    target = editor.target_at(analysis, lines.offset(params.position))
    if target is None:
        return []
    if target.used_file is not None:
        return [_location(target.used_file, target.span, None, ls.encoding)] if target.used_file.is_file() else []
    if target.kind is not None or target.block is None:
        return []
    if analysis.spec is not None and any(b is target.block for b in analysis.spec.blocks):
        return [types.Location(doc.uri, lines.range(target.block.name_span))]
    home = editor.home_of(analysis, target.name)
    if home is None:
        return []
    path, text = home
    return [_location(path, target.block.name_span, text, ls.encoding)]


@SERVER.feature(types.TEXT_DOCUMENT_REFERENCES)
def references(ls: NormdslServer, params: types.ReferenceParams) -> list[types.Location]:
    doc = ls.document(params.text_document.uri)
    analysis = ls.analysis(doc)
    lines = Lines(analysis.text, ls.encoding)
    target = editor.target_at(analysis, lines.offset(params.position))
    if target is None or analysis.spec is None:
        return []
    if target.used_file is not None:  # the uses of that file
        return [types.Location(doc.uri, lines.range(u.span)) for u in analysis.spec.uses if u.path == target.name]
    if target.block is None:
        return []
    spans = editor.references(analysis.spec, target.name)
    local = any(b is target.block for b in analysis.spec.blocks)
    if params.context.include_declaration and local:
        spans.insert(0, target.block.name_span)
    return [types.Location(doc.uri, lines.range(span)) for span in spans]


_COMPLETION_KINDS = {
    "layer": types.CompletionItemKind.Class,
    "block": types.CompletionItemKind.Function,
    "argument": types.CompletionItemKind.Property,
    "parameter": types.CompletionItemKind.Variable,
    "value": types.CompletionItemKind.EnumMember,
    "keyword": types.CompletionItemKind.Keyword,
}


@SERVER.feature(types.TEXT_DOCUMENT_COMPLETION, types.CompletionOptions(trigger_characters=["(", ",", "="]))
def completion(ls: NormdslServer, params: types.CompletionParams) -> types.CompletionList:
    doc = ls.document(params.text_document.uri)
    lines = Lines(doc.text, ls.encoding)
    offset = lines.offset(params.position)
    analysis = doc.analysis if doc.analysis is not None and doc.analysis.text == doc.text else None
    if analysis is not None and analysis.spec is not None:
        blocks = editor.blocks_in_scope(analysis)
    else:  # (completion needs no check: the text, and the blocks known)
        analysis = editor.Analysis(doc.text, doc.filename, None, None, ())
        blocks = editor.known_blocks(doc.text, doc.filename, offset, doc.blocks)
    found = editor.completions(analysis, offset, blocks)
    items = [
        types.CompletionItem(
            c.label,
            kind=_COMPLETION_KINDS[c.kind],
            detail=c.detail or None,
            documentation=types.MarkupContent(types.MarkupKind.Markdown, c.doc) if c.doc else None,
            insert_text=c.insert,
        )
        for c in found
    ]
    return types.CompletionList(is_incomplete=False, items=items)


@SERVER.feature(types.TEXT_DOCUMENT_DOCUMENT_SYMBOL)
def document_symbols(ls: NormdslServer, params: types.DocumentSymbolParams) -> list[types.DocumentSymbol]:
    analysis = ls.analysis(ls.document(params.text_document.uri))
    spec = analysis.spec
    if spec is None:
        return []
    lines = Lines(analysis.text, ls.encoding)
    kind = types.SymbolKind
    found = [
        types.DocumentSymbol(u.path, kind.Module, lines.range(u.span), lines.range(u.span), detail="use")
        for u in spec.uses
    ]
    found += [
        types.DocumentSymbol(
            editor.signature(b), kind.Function, lines.range(b.span), lines.range(b.name_span), detail="block"
        )
        for b in spec.blocks
    ]
    found += [
        types.DocumentSymbol(
            f"input{i.shape}", kind.Variable, lines.range(i.span), lines.range(i.span), detail="the model's input"
        )
        for i in spec.inputs
    ]
    found += [
        types.DocumentSymbol(s.name or "scaling", kind.Constant, lines.range(s.span), lines.range(s.span))
        for s in spec.scalings
    ]
    return found


@SERVER.feature(types.TEXT_DOCUMENT_FORMATTING)
def formatting(ls: NormdslServer, params: types.DocumentFormattingParams) -> list[types.TextEdit]:
    doc = ls.document(params.text_document.uri)
    try:
        formatted = format_spec(doc.text, width=ls.settings.line_length, filename=doc.filename)
    except SpecError:
        return []  # (the diagnostics say why)
    if formatted == doc.text:
        return []
    lines = Lines(doc.text, ls.encoding)
    return [types.TextEdit(types.Range(types.Position(0, 0), lines.position(len(doc.text))), formatted)]


def _local_block(ls: NormdslServer, uri: str, position: types.Position) -> tuple[editor.Analysis, Lines, BlockDef]:
    doc = ls.document(uri)
    analysis = ls.analysis(doc)
    lines = Lines(analysis.text, ls.encoding)
    target = editor.target_at(analysis, lines.offset(position))
    if target is None or target.block is None or analysis.spec is None:
        raise JsonRpcInvalidParams("only a block can be renamed: put the cursor on its name or a use")
    if not any(b is target.block for b in analysis.spec.blocks):
        raise JsonRpcInvalidParams(f"block '{target.name}' is defined in a used file: rename it there")
    return analysis, lines, target.block


@SERVER.feature(types.TEXT_DOCUMENT_PREPARE_RENAME)
def prepare_rename(ls: NormdslServer, params: types.PrepareRenameParams) -> types.Range | None:
    try:
        analysis, lines, block = _local_block(ls, params.text_document.uri, params.position)
    except JsonRpcInvalidParams:
        return None
    offset = lines.offset(params.position)
    assert analysis.spec is not None
    spans = [block.name_span, *editor.references(analysis.spec, block.name)]
    return next((lines.range(s) for s in spans if s.start <= offset <= s.end), lines.range(block.name_span))


@SERVER.feature(types.TEXT_DOCUMENT_RENAME, types.RenameOptions(prepare_provider=True))
def rename(ls: NormdslServer, params: types.RenameParams) -> types.WorkspaceEdit:
    analysis, lines, block = _local_block(ls, params.text_document.uri, params.position)
    new = params.new_name
    taken = set(KINDS) | set(COMPOSITES) | set(editor.KEYWORDS) | {"id", "w", "d", "max", "min"}
    if not IDENTIFIER.fullmatch(new) or new[-1].isdigit():
        raise JsonRpcInvalidParams(f"{new[:80]!r} is not a block name: letters, digits and _, not ending in a digit")
    if new in taken:
        raise JsonRpcInvalidParams(f"'{new}' is a word of the language, not a free block name")
    if new != block.name and new in editor.blocks_in_scope(analysis):
        raise JsonRpcInvalidParams(f"a block named '{new}' exists already")
    assert analysis.spec is not None
    spans = [block.name_span, *editor.references(analysis.spec, block.name)]
    edits = [types.TextEdit(lines.range(span), new) for span in spans]
    return types.WorkspaceEdit(changes={params.text_document.uri: edits})


def _one_line(record: logging.LogRecord) -> bool:
    """pygls's log records on standard error (the editor's output panel) as one line each, no traceback."""
    if record.getMessage().startswith("Unknown message"):
        return False  # (a request answered with an error already)
    message = record.getMessage().split("\n")[0][:300]
    if record.exc_info and record.exc_info[1] is not None:
        message = f"{message}: {record.exc_info[1]!r:.300}"
    record.msg, record.args, record.exc_info, record.exc_text = message, (), None, None
    return True


def main(options: dict[str, Any] | None = None) -> int:
    """Serve over standard input and output until the client says exit."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("normdsl lsp: %(levelname)s: %(message)s"))
    handler.addFilter(_one_line)
    logging.getLogger("pygls").addHandler(handler)
    logging.getLogger("pygls").propagate = False
    SERVER.settings.update(options)
    SERVER.start_io()
    if sys.stdout.closed:  # (pygls closes it on exit: nothing more is written)
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115
    return 0
