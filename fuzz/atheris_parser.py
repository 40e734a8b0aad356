"""Coverage-guided fuzzing of the parser and checker with atheris (optional; not part of CI).

    pip install atheris && python fuzz/atheris_parser.py -atheris_runs=200000 fuzz/corpus

Any exception other than SpecError, or a SpecError whose diagnostic lies outside the input, is a crash.
"""

import sys

import atheris

with atheris.instrument_imports():
    import normdsl


def one_input(data: bytes) -> None:
    text = atheris.FuzzedDataProvider(data).ConsumeUnicodeNoSurrogates(len(data))
    try:
        normdsl.check(normdsl.parse(text))
    except normdsl.SpecError as exc:
        if not exc.errors or any(not 0 <= d.span.start <= d.span.end <= len(text) for d in exc.diagnostics):
            raise AssertionError(f"malformed SpecError for {text!r}") from exc


if __name__ == "__main__":
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
