"""The language server end to end: a real client (pytest-lsp) talking to ``normdsl lsp`` over stdio."""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
import urllib.parse
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_lsp
from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities

import normdsl
from normdsl.modules import STD

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.nd"))
RESNET = ROOT / "examples" / "resnet50.nd"
SERVER = [sys.executable, "-m", "normdsl", "lsp"]

on_the_client = pytest.mark.asyncio(loop_scope="module")  # one server and client for the module's tests


@pytest_lsp.fixture(scope="module", config=ClientServerConfig(server_command=SERVER))
async def client(lsp_client: LanguageClient) -> AsyncIterator[None]:
    params = types.InitializeParams(
        capabilities=client_capabilities("visual-studio-code"),
        root_uri=ROOT.as_uri(),
        initialization_options={"debounceMs": 0},
    )
    await lsp_client.initialize_session(params)
    yield
    await lsp_client.shutdown_session()


_versions = iter(range(1, 1_000_000))


async def published(client: LanguageClient, uri: str, timeout: float = 60) -> list[types.Diagnostic]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while uri not in client.diagnostics:
        assert loop.time() < deadline, f"no diagnostics for {uri}"
        await asyncio.sleep(0.005)
    return list(client.diagnostics[uri])


async def opened(client: LanguageClient, text: str, uri: str = "untitled:spec.nd") -> list[types.Diagnostic]:
    """``text`` open in the editor (opened, or changed if it is open) and the diagnostics published for it."""
    client.diagnostics.pop(uri, None)
    item = types.TextDocumentItem(uri=uri, language_id="normdsl", version=next(_versions), text=text)
    client.text_document_did_open(types.DidOpenTextDocumentParams(item))
    return await published(client, uri)


async def changed(client: LanguageClient, text: str, uri: str) -> list[types.Diagnostic]:
    client.diagnostics.pop(uri, None)
    document = types.VersionedTextDocumentIdentifier(version=next(_versions), uri=uri)
    change = types.TextDocumentContentChangeWholeDocument(text)
    client.text_document_did_change(types.DidChangeTextDocumentParams(document, [change]))
    return await published(client, uri)


def at(text: str, needle: str, plus: int = 0) -> types.Position:
    offset = text.index(needle) + plus
    line = text.count("\n", 0, offset)
    return types.Position(line, offset - (text.rfind("\n", 0, offset) + 1))


def doc(uri: str) -> types.TextDocumentIdentifier:
    return types.TextDocumentIdentifier(uri)


@on_the_client
async def test_every_example_checks_clean_as_the_cli_says(client: LanguageClient) -> None:
    for path in EXAMPLES:
        found = await opened(client, path.read_text(), path.as_uri())
        expected = normdsl.check(normdsl.parse(path.read_text(), filename=str(path))).warnings
        assert [d.message.split("\nhint: ")[0] for d in found] == [w.message for w in expected], path


@on_the_client
async def test_a_broken_spec_gets_the_clis_message_hint_and_place(client: LanguageClient) -> None:
    text = "input(32, 32, 3)\nconv64 gn(12)\n"
    with pytest.raises(normdsl.SpecError) as raised:
        normdsl.check(text)
    [expected] = raised.value.diagnostics
    [found] = await opened(client, text)
    assert found.message == f"{expected.message}\nhint: {expected.hint}"
    assert "64 channels cannot be split into 12 groups" in found.message
    assert found.severity == types.DiagnosticSeverity.Error
    assert found.range == types.Range(types.Position(1, 7), types.Position(1, 13))
    [syntax] = await changed(client, "input(32, 32, 3)\nconv64 gn (12)\n", "untitled:spec.nd")
    assert syntax.range.start.line == 1 and "gn(12)" in syntax.message
    assert await changed(client, "input(32, 32, 3)\nconv64 gn(16)\n", "untitled:spec.nd") == []


@on_the_client
async def test_a_problem_inside_a_block_names_its_use_sites_as_related_locations(client: LanguageClient) -> None:
    text = "let b(f) = (conv{f} gn(12))\ninput(8, 8, 3)\nb(64)\nb(16)\n"
    found = await opened(client, text)
    assert found and all(d.range.start.line == 0 for d in found)
    related = [r.location.range.start.line for d in found for r in d.related_information or ()]
    assert 2 in related


@on_the_client
async def test_a_problem_in_a_used_file_is_shown_at_the_use_and_located_in_that_file(
    client: LanguageClient, tmp_path: Path
) -> None:
    (tmp_path / "lib.nd").write_text("let b(f) = (conv{f} gn(\n")
    spec = tmp_path / "spec.nd"
    text = 'use "lib.nd"\ninput(8, 8, 3)\nb(16)\n'
    [found] = await opened(client, text, spec.as_uri())
    assert found.range.start.line == 0 and "lib.nd:1:" in found.message
    (tmp_path / "lib.nd").write_text("let b(f) = (conv{f} gn(3))\n")  # mended on disk, then saved
    client.diagnostics.pop(spec.as_uri(), None)
    client.text_document_did_save(types.DidSaveTextDocumentParams(doc((tmp_path / "lib.nd").as_uri())))
    [again] = await published(client, spec.as_uri())
    assert "16 channels cannot be split into 3 groups" in again.message and again.range.start.line == 0
    where, opened_at = found.related_information or []
    assert where.location.uri == opened_at.location.uri == (tmp_path / "lib.nd").as_uri()
    assert where.location.range.start == types.Position(0, 23) and opened_at.message == "'(' opened here"


@on_the_client
async def test_changes_in_quick_succession_are_checked_once_for_the_last_text(client: LanguageClient) -> None:
    uri = "untitled:typing.nd"
    await opened(client, "relu\n", uri)
    versions: list[int | None] = []
    handle = client.protocol._handle_notification

    def spy(method: str, params: Any) -> Any:
        if method == types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS and params.uri == uri:
            versions.append(params.version)
        return handle(method, params)

    client.protocol._handle_notification = spy  # type: ignore[method-assign]
    client.workspace_did_change_configuration(types.DidChangeConfigurationParams({"normdsl": {"debounceMs": 300}}))
    try:
        client.diagnostics.pop(uri, None)
        typed = [
            "input(8, 8, 3) conv",
            "input(8, 8, 3) conv1",
            "input(8, 8, 3) conv16 gn(",
            "input(8, 8, 3) conv16 gn(3)",
        ]
        for text in typed:
            document = types.VersionedTextDocumentIdentifier(version=next(_versions), uri=uri)
            client.text_document_did_change(
                types.DidChangeTextDocumentParams(document, [types.TextDocumentContentChangeWholeDocument(text)])
            )
        [last] = await published(client, uri)
        assert "16 channels cannot be split into 3 groups" in last.message
        await asyncio.sleep(0.5)
        assert versions == [document.version]  # one check, of the last text
    finally:
        client.protocol._handle_notification = handle  # type: ignore[method-assign]
        client.workspace_did_change_configuration(types.DidChangeConfigurationParams({"normdsl": {"debounceMs": 0}}))


@on_the_client
async def test_hover_shows_the_resolved_call_shapes_params_and_macs_at_each_use(client: LanguageClient) -> None:
    text = RESNET.read_text()
    await opened(client, text, RESNET.as_uri())
    network = normdsl.check(normdsl.parse(text, filename=str(RESNET)))
    position = at(text, "conv{4*f}(k=1) norm,", 2)  # the last 1×1 conv of the projected bottleneck
    hover = await client.text_document_hover_async(types.HoverParams(doc(RESNET.as_uri()), position))
    assert hover is not None and isinstance(hover.contents, types.MarkupContent)
    shown = hover.contents.value
    layers = [layer for layer in network.layers if layer.span.start == text.index("conv{4*f}(k=1) norm,")]
    assert len(layers) == 4  # bottleneck is used once per stage
    assert f"**{layers[0].call}**" in shown and 'layers.Conv2D(256, 1, padding="valid")' in shown
    assert f"{layers[0].params:,} params" in shown and f"{layers[0].macs:,} MACs" in shown
    for layer in layers:
        assert "(7, 7, 512) → (7, 7, 2048)" in shown
        assert f"{layer.input_shape} → {layer.output_shape}".replace(",)", ")") in shown.replace(",)", ")")
    readme = (ROOT / "README.md").read_text().split("<!-- lsp-hover", 1)[1].split("\n", 1)[1]
    assert shown == "\n".join(line[4:] for line in readme.split("<!-- /lsp-hover -->")[0].rstrip("\n").split("\n"))
    stage = await client.text_document_hover_async(types.HoverParams(doc(RESNET.as_uri()), at(text, "stage(256", 1)))
    assert stage is not None and isinstance(stage.contents, types.MarkupContent)
    assert "**stage** block" in stage.contents.value and "(28, 28, 512) → (14, 14, 1024)" in stage.contents.value


@on_the_client
async def test_inlay_hints_show_output_shapes_at_line_ends_and_a_setting_turns_them_off(
    client: LanguageClient,
) -> None:
    text = RESNET.read_text()
    await opened(client, text, RESNET.as_uri())
    lines = text.split("\n")
    whole = types.Range(types.Position(0, 0), types.Position(len(lines), 0))
    hints = await client.text_document_inlay_hint_async(types.InlayHintParams(doc(RESNET.as_uri()), whole))
    by_line = {h.position.line: h for h in hints or []}
    last = lines.index("gap dense1000(act=softmax)")
    assert by_line[last].label == "→ (1000,)" and by_line[last].position.character == len(lines[last])
    assert by_line[lines.index("zeropad(1) maxpool(3, s=2)")].label == "→ (56, 56, 64)"
    client.workspace_did_change_configuration(types.DidChangeConfigurationParams({"normdsl": {"inlayHints": False}}))
    try:
        assert not await client.text_document_inlay_hint_async(types.InlayHintParams(doc(RESNET.as_uri()), whole))
    finally:
        client.workspace_did_change_configuration(types.DidChangeConfigurationParams({"normdsl": {"inlayHints": True}}))


def the_std_file(uri: str, name: str) -> bool:
    """Whether `uri` is normdsl's std/NAME: the server's own copy (installed, or this checkout) of the test's."""
    path = Path(urllib.parse.unquote(urllib.parse.urlparse(uri).path))
    return path.parts[-3:] == ("normdsl", "std", name) and path.read_bytes() == (STD / name).read_bytes()


@on_the_client
async def test_definition_and_references_of_blocks_and_used_files(client: LanguageClient) -> None:
    text = RESNET.read_text()
    uri = RESNET.as_uri()
    await opened(client, text, uri)
    [found] = await client.text_document_definition_async(types.DefinitionParams(doc(uri), at(text, "identity(f)*", 3)))
    assert isinstance(found, types.Location) and found.range.start == at(text, "identity(f) =")
    context = types.ReferenceContext(include_declaration=True)
    refs = await client.text_document_references_async(
        types.ReferenceParams(context=context, text_document=doc(uri), position=at(text, "stage(64"))
    )
    assert refs is not None and len(refs) == 5 and refs[0].range.start == at(text, "stage(f,")
    efficientnet = ROOT / "examples" / "efficientnet.nd"
    source = efficientnet.read_text()
    await opened(client, source, efficientnet.as_uri())
    [used] = await client.text_document_definition_async(
        types.DefinitionParams(doc(efficientnet.as_uri()), at(source, "use std/mbconv", 5))
    )
    assert isinstance(used, types.Location) and the_std_file(used.uri, "mbconv.nd")
    context = types.ReferenceContext(include_declaration=True)
    where = at(source, "use std/mbconv", 5)
    [use] = await client.text_document_references_async(
        types.ReferenceParams(context=context, text_document=doc(efficientnet.as_uri()), position=where)
    )
    assert use.range.start == at(source, "use std/mbconv")
    block = next(word for word in ("mbconv(", "stage(") if word in source.split("use std/mbconv")[1])
    [there] = await client.text_document_definition_async(
        types.DefinitionParams(doc(efficientnet.as_uri()), at(source, block, 1))
    )
    assert isinstance(there, types.Location)
    if the_std_file(there.uri, "mbconv.nd"):
        line = (STD / "mbconv.nd").read_text().split("\n")[there.range.start.line]
        assert line[there.range.start.character :].startswith(block[:-1])


@on_the_client
async def test_completion_of_kinds_blocks_argument_keys_and_allowed_values(client: LanguageClient) -> None:
    text = "let stem(f, s=2) = (conv{f}(k=3, s=s) bn relu)\ninput(32, 32, 3)\nstem(16) conv64(k=3, act=\n"
    uri = "untitled:complete.nd"
    await opened(client, text, uri)

    async def labels(position: types.Position) -> set[str]:
        found = await client.text_document_completion_async(types.CompletionParams(doc(uri), position))
        assert isinstance(found, types.CompletionList)
        return {item.label for item in found.items}

    values = await labels(at(text, "act=", 4))
    assert {"relu", "gelu", "softmax"} <= values and "conv" not in values
    keys = await labels(at(text, "k=3, act", 5))
    assert {"k", "s", "pad", "dilation", "groups", "act"} <= keys
    assert {"stem", "conv", "bn", "gn", "se", "input", "let"} <= await labels(at(text, "stem(16)"))
    assert await labels(at(text, "stem(16)", 5)) == {"f", "s"}
    pad = "conv8(pad="
    await changed(client, pad, uri)
    assert await labels(types.Position(0, len(pad))) == {"valid", "same"}


@on_the_client
async def test_formatting_is_normdsl_fmt_and_a_spec_that_does_not_parse_is_left(client: LanguageClient) -> None:
    text = "input( 32,32,3 )\nconv64( k = 3 ,s=2)   bn relu  # keep\n"
    uri = "untitled:fmt.nd"
    await opened(client, text, uri)
    options = types.FormattingOptions(tab_size=4, insert_spaces=True)
    [edit] = await client.text_document_formatting_async(types.DocumentFormattingParams(doc(uri), options))
    assert edit.new_text == normdsl.format(text) and edit.range.start == types.Position(0, 0)
    assert edit.range.end == types.Position(2, 0)
    await changed(client, "conv64(", uri)
    assert not await client.text_document_formatting_async(types.DocumentFormattingParams(doc(uri), options))


def applied(text: str, edits: list[types.TextEdit]) -> str:
    lines = text.split("\n")
    offsets = [sum(len(line) + 1 for line in lines[:i]) for i in range(len(lines))]
    for edit in sorted(edits, key=lambda e: (e.range.start.line, e.range.start.character), reverse=True):
        start = offsets[edit.range.start.line] + edit.range.start.character
        end = offsets[edit.range.end.line] + edit.range.end.character
        text = text[:start] + edit.new_text + text[end:]
    return text


@on_the_client
async def test_rename_of_a_block_changes_its_definition_and_every_use(client: LanguageClient) -> None:
    text = RESNET.read_text()
    uri = RESNET.as_uri()
    await opened(client, text, uri)
    position = at(text, "identity(f)*", 2)
    ready = await client.text_document_prepare_rename_async(types.PrepareRenameParams(doc(uri), position))
    assert ready == types.Range(at(text, "identity(f)*"), at(text, "identity(f)*", len("identity")))
    edit = await client.text_document_rename_async(types.RenameParams(doc(uri), position, "plain"))
    assert edit is not None and edit.changes is not None
    renamed = applied(text, list(edit.changes[uri]))
    assert "identity" not in renamed and renamed.count("plain(f)") == 2
    before, after = normdsl.check(text), normdsl.check(renamed)
    assert [(x.output_shape, x.params) for x in before.layers] == [(x.output_shape, x.params) for x in after.layers]
    for bad in ("conv", "stage", "2x", "let", "b2"):
        with pytest.raises(JsonRpcException):
            await client.text_document_rename_async(types.RenameParams(doc(uri), position, bad))
    on_a_kind = await client.text_document_prepare_rename_async(types.PrepareRenameParams(doc(uri), at(text, "gap")))
    assert on_a_kind is None


@on_the_client
async def test_document_symbols_are_blocks_and_the_input(client: LanguageClient) -> None:
    text = RESNET.read_text()
    await opened(client, text, RESNET.as_uri())
    symbols = await client.text_document_document_symbol_async(types.DocumentSymbolParams(doc(RESNET.as_uri())))
    names = [s.name for s in symbols or [] if isinstance(s, types.DocumentSymbol)]
    assert names == ["norm", "bottleneck(f, s=1)", "identity(f)", "stage(f, blocks, s=2)", "input(224, 224, 3)"]


@on_the_client
async def test_requests_for_unknown_documents_fail_and_far_positions_are_clamped(client: LanguageClient) -> None:
    with pytest.raises(JsonRpcException):
        await client.text_document_hover_async(types.HoverParams(doc("file:///nowhere.nd"), types.Position(0, 0)))
    await opened(client, "relu\n", "untitled:far.nd")
    far = types.Position(10**6, 10**6)
    assert await client.text_document_hover_async(types.HoverParams(doc("untitled:far.nd"), far)) is None
    found = await client.text_document_completion_async(types.CompletionParams(doc("untitled:far.nd"), far))
    assert isinstance(found, types.CompletionList) and found.items
    assert await opened(client, "relu\n") == []  # and it still works


@on_the_client
async def test_documents_of_any_characters_get_diagnostics_or_none_and_every_request_an_answer(
    client: LanguageClient,
) -> None:
    r = random.Random(18)
    pieces = [
        "conv64(",
        "k=",
        ")",
        "(",
        "{",
        "}",
        "res(",
        "let b(f) = ",
        "\n",
        "\r",
        "\0",
        "é",
        "😀",
        "\ud800",
        '"',
        "#",
        " ",
    ]
    for i in range(40):
        text = "".join(
            r.choice(pieces) if r.random() < 0.7 else chr(r.randrange(1, 0x3000)) for _ in range(r.randrange(60))
        )
        uri = f"untitled:fuzz{i}.nd"
        await opened(client, text, uri)
        lines = text.split("\n")
        position = types.Position(r.randrange(len(lines) + 1), r.randrange(30))
        await client.text_document_hover_async(types.HoverParams(doc(uri), position))
        await client.text_document_completion_async(types.CompletionParams(doc(uri), position))
        whole = types.Range(types.Position(0, 0), types.Position(len(lines), 0))
        await client.text_document_inlay_hint_async(types.InlayHintParams(doc(uri), whole))
        await client.text_document_document_symbol_async(types.DocumentSymbolParams(doc(uri)))
        options = types.FormattingOptions(tab_size=4, insert_spaces=True)
        await client.text_document_formatting_async(types.DocumentFormattingParams(doc(uri), options))
        client.text_document_did_close(types.DidCloseTextDocumentParams(doc(uri)))


@on_the_client
async def test_very_large_documents_get_the_clis_limits(client: LanguageClient) -> None:
    [too_large] = await opened(client, "relu " * (2 * 1024 * 1024 + 1), "untitled:huge.nd")
    assert too_large.message == "more than 10,485,760 bytes is too large for a spec"
    [too_many] = await opened(client, "input(8)\n" + "relu " * 150_000, "untitled:many.nd")
    assert "100,000" in too_many.message
    nested = "(" * 5000 + "relu" + ")" * 5000
    [deep] = await opened(client, nested, "untitled:deep.nd")
    assert "nests" in deep.message


def framed(message: object) -> bytes:
    body = message if isinstance(message, bytes) else json.dumps(message).encode()
    return b"Content-Length: %d\r\n\r\n" % len(body) + body


def responses(stdout: bytes) -> dict[int, dict[str, object]]:
    found = {}
    while b"\r\n\r\n" in stdout:
        head, _, rest = stdout.partition(b"\r\n\r\n")
        length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
        message, stdout = json.loads(rest[:length]), rest[length:]
        if "id" in message and "method" not in message:
            found[message["id"]] = message
    return found


def test_garbage_and_malformed_requests_get_errors_and_the_server_goes_on() -> None:
    uri = "untitled:raw.nd"
    position = {"line": 0, "character": 1}
    messages = [
        b"{{{{",
        b"\xff\xfe\x00",
        b"[]",
        {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"capabilities": {}}},
        {"jsonrpc": "2.0", "method": "initialized", "params": {}},
        {"jsonrpc": "2.0", "id": 2, "method": "textDocument/hover", "params": {"nonsense": 1}},
        {"jsonrpc": "2.0", "id": 3, "method": "textDocument/completion", "params": {"textDocument": {"uri": 5}}},
        {
            "jsonrpc": "2.0",
            "id": 4,
            "method": "textDocument/rename",
            "params": {"textDocument": {"uri": uri}, "position": {"line": -5, "character": 2**40}, "newName": 7},
        },
        {"jsonrpc": "2.0", "id": 5, "method": "normdsl/nothing", "params": [1, 2, 3]},
        {
            "jsonrpc": "2.0",
            "method": "textDocument/didOpen",
            "params": {"textDocument": {"uri": uri, "languageId": "normdsl", "version": 1, "text": "gn(16)\n"}},
        },
        {"jsonrpc": "2.0", "method": "textDocument/didOpen", "params": {"textDocument": None}},
        {
            "jsonrpc": "2.0",
            "id": 6,
            "method": "textDocument/hover",
            "params": {"textDocument": {"uri": uri}, "position": position},
        },
        {
            "jsonrpc": "2.0",
            "id": 8,
            "method": "textDocument/formatting",
            "params": {"textDocument": {"uri": uri}, "options": {"tabSize": 4, "insertSpaces": True}},
        },
        {"jsonrpc": "2.0", "id": 7, "method": "shutdown"},
        {"jsonrpc": "2.0", "method": "exit"},
    ]
    frameworks = "{'tensorflow', 'keras', 'jax', 'torch', 'numpy', 'jinja2', 'black'}"
    code = f"import sys; from normdsl.cli import main; main(['lsp']); print(sorted({frameworks} & set(sys.modules)), file=sys.stderr)"
    server = [sys.executable, "-c", code]  # (what the server imported is printed as it exits)
    done = subprocess.run(server, input=b"".join(map(framed, messages)), capture_output=True, timeout=60)
    answered = responses(done.stdout)
    assert "capabilities" in answered[1]["result"]  # type: ignore[operator]
    assert all("error" in answered[i] for i in (2, 3, 4, 5)), answered
    assert "GroupNormalization" in json.dumps(answered[6]["result"])
    assert 7 in answered and 8 in answered and done.returncode == 0
    assert b"Traceback" not in done.stderr
    assert done.stderr.endswith(b"[]\n")  # no framework, no jinja2, no black in the server


def test_the_other_commands_never_import_pygls() -> None:
    code = "import sys; from normdsl import cli; cli.main(['check', sys.argv[1]]); assert 'pygls' not in sys.modules"
    subprocess.run([sys.executable, "-c", code, str(RESNET)], check=True, capture_output=True)


# ---- in the server's process: many more documents than over the wire ------------------------------


def test_positions_and_offsets_convert_both_ways_in_every_encoding() -> None:
    from normdsl.lsp import Lines

    text = "input(8, 8, 3)  # é\nconv8 😀 gn(2)\r\n\n\ud800 relu\x0c \u2028 x\r# a lone CR ends a line\r\rrelu"
    for encoding in ("utf-16", "utf-8", "utf-32"):
        lines = Lines(text, encoding)
        for offset in range(len(text) + 1):
            if text[offset - 1 : offset] == "\r" and text[offset : offset + 1] == "\n":
                continue  # (between \r and \n: the end of the line's text, as a client sees it)
            assert lines.offset(lines.position(offset)) == offset, (encoding, offset)
    assert Lines(text).position(len(text)) == types.Position(6, 4)  # \n, \r\n and \r end lines; \x0c, U+2028 do not
    from normdsl import editor

    crlf = "input(8)\rdense4 relu\r\ndense2\n"  # (lines as the client counts them: the hints' places)
    assert editor.line_shapes(editor.analyze(crlf, "<crlf>"), Lines(crlf).line_of) == {1: "→ (4,)", 2: "→ (2,)"}
    emoji = Lines("😀x", "utf-16")
    assert emoji.position(1) == types.Position(0, 2) and Lines("😀x", "utf-8").position(1) == types.Position(0, 4)


def test_a_thousand_random_documents_get_answers_to_every_question_in_bounded_time() -> None:
    import time

    from normdsl import editor, lsp

    r = random.Random(20)
    words = [
        *(ex.read_text() for ex in EXAMPLES[:4]),
        "conv64(",
        "k=",
        "act=",
        ")",
        "(",
        "{",
        "}",
        "let b(f) = ",
        "b(",
        ",",
    ]
    words += [
        "\n",
        "é",
        "😀",
        "\ud800",
        '"',
        "#",
        " ",
        "use std/mbconv\n",
        'use "x.nd"\n',
        "\0",
        "res(",
        "*",
        "{f - 1}",
    ]
    start = time.perf_counter()
    for i in range(1000):
        pieces = [r.choice(words) for _ in range(r.randrange(12))]
        text = "".join(piece if len(piece) < 40 else piece[: r.randrange(len(piece))] for piece in pieces)
        analysis = editor.analyze(text, f"<fuzz{i}>")
        lsp.diagnostics(analysis, "untitled:x")
        editor.line_shapes(analysis)
        for offset in {0, len(text), r.randrange(len(text) + 1)}:
            editor.hover(analysis, offset)
            editor.target_at(analysis, offset)
            editor.completions(analysis, offset, editor.known_blocks(text, "<fuzz>", offset, {}))
    assert time.perf_counter() - start < 120
